"""Online learning ([AA], [Z] A.2): data in C = 5 chunks, stage t trains on chunks 1..t.

    python launch.py --config=configs/online.py:method=standard    # warm start
    python launch.py --config=configs/online.py:method=full        # from scratch each stage
    python launch.py --config=configs/online.py:method=shrink_perturb

Fashion-MNIST, scnn at 1/4 width, 5 stages of 4 epochs, SGD lr 0.01; writes per-stage test accuracy
(summary.json "stages") and test accuracy at best validation. The training-set size changes every
stage; the train step is padded to the largest stage, so it compiles once per run.

`reg=1` adds regularization (weight decay 5e-4 and flip + pad-4 crop augmentation, [Z] A.2's
regularized variant); `reg=2` weight decay 5e-4 alone (a regularized variant that the `cpu=1` MLP
can still fit); `reg=0` has none. Sweep (scratch vs warm start vs S&P, × reg 0, 1, 2; seeds
vmapped inside every point):

    python launch.py --config=configs/online.py --sweep=all
    python launch.py --config=configs/online.py:cpu=1,seeds=6 --sweep=all   # CPU size (below)

Fitting ([AA] §4 trains every stage to 99% training accuracy): `run.eval_train='eval'` evaluates the
stage's training view (chunks 1..t, eval mode) at every evaluation (split train_fit; `'call'`: after
every train call, validation and test only at the regular evaluations); summary.json
gains epochs_to_fit (per stage and seed, the first epoch with train_fit accuracy ≥ run.fit_threshold
= 0.99, null if never) and fit_reached (the fraction of stages × seeds that reached it). The budget
is fixed (no early stopping), so a config must show that it reaches the threshold: read
fit_reached (report: "Epochs to fit each stage"). An evaluation ends a call, so a call of several
epochs (run.max_steps_per_call) only shows the fit at its end.

`cpu=1`: a CPU budget that fits every stage without regularization: 10,000 Fashion-MNIST images
(`train_subset`, 9,000 for training after the 10% hold-out, chunks of 1,800), an MLP (512,) on
28×28, Adam lr 1e-3, cosine restarted every stage, batch 64, 30 epochs a stage (one epoch a call),
`run.eval_train='call'` (the stage's training set after every epoch, validation and test at stage
ends). A 2-seed pilot of `method=full` at 40 epochs a stage reached 99% training accuracy at
epochs 13–16 (stage 1) to 23–24 (stage 5). With `reg=1` (weight decay 5e-4 and flip + pad-4 crop)
this MLP does not fit: 81% after 40 epochs of stage 1 in the same pilot; the study reports it as
not fitting, and `reg=2` (the weight decay without the augmentation) is the regularized half that
trains to fit. Explicit fields given with `cpu=1` override its values.
"""

from reinit_jax import launch

REGS = (0, 1, 2)


def get_config(arg=None):
  c = launch.base_config()
  c.name = "online"
  c.data.dataset = "fashion_mnist"
  c.data.chunks = 5
  c.data.batch_size = 128
  c.model.name = "scnn"
  c.model.options = {"width": 0.25}
  c.optim.epochs = 20
  c.optim.learning_rate = 0.01
  c.reinit.stages = 5
  c.reinit.method = "shrink_perturb"
  c.run.eval_every_epochs = 1
  c.run.eval_train = "eval"
  k = launch.apply(c, arg, reg=0, cpu=0)  # reg=1: weight decay 5e-4 + augmentation; 2: decay alone
  if k["cpu"]:
    _cpu(c)
    k = launch.apply(c, arg, reg=0, cpu=0)  # explicit fields override the knob's values
  if k["reg"] not in REGS:
    raise ValueError(f"config override reg={k['reg']!r} is invalid; allowed: 0 (none), 1 (weight "
                     "decay 5e-4 + flip and crop), 2 (weight decay 5e-4 alone)")
  if k["reg"]:
    c.optim.weight_decay = 5e-4
  if k["reg"] == 1:
    c.data.augmentation = "cifar"
  return c


def _cpu(c):
  """The `cpu=1` size (module docstring): a subset every stage of which the MLP fits."""
  c.data.train_subset = 10000
  c.data.batch_size = 64
  c.model.name = "mlp"
  c.model.options = {"widths": (512,)}
  c.optim.optimizer = "adam"
  c.optim.learning_rate = 1e-3
  c.optim.schedule = "cosine_per_stage"
  c.optim.epochs = 150
  c.run.eval_train = "call"
  c.run.eval_every_epochs = 0
  c.run.max_steps_per_call = 16  # below stage 1's 28 steps an epoch: one epoch a call


def get_sweep(arg=None):
  """Regularization none / decay + augmentation / decay alone × scratch (full), warm start
  (standard), S&P."""
  del arg
  return launch.product(reg=REGS, method=("full", "standard", "shrink_perturb"))
