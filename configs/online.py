"""Online learning ([AA], [Z] A.2): data in C = 5 chunks, stage t trains on chunks 1..t.

    python launch.py --config=configs/online.py:method=standard    # warm start
    python launch.py --config=configs/online.py:method=full        # from scratch each stage
    python launch.py --config=configs/online.py:method=shrink_perturb

Fashion-MNIST, scnn at 1/4 width, 5 stages of 4 epochs, SGD lr 0.01; writes per-stage test accuracy
(summary.json "stages") and test accuracy at best validation. The training-set size changes every
stage; the train step is padded to the largest stage, so it compiles once per run.

`reg=1` adds regularization (weight decay 5e-4 and flip + pad-4 crop augmentation, [Z] A.2's
regularized variant); `reg=0` has none. Sweep (scratch vs warm start vs S&P, without and with
regularization; seeds vmapped inside every point):

    python launch.py --config=configs/online.py --sweep=all
    python launch.py --config=configs/online.py:cpu=1,seeds=2 --sweep=all   # CPU size, all the data

Fitting ([AA] §4 trains every stage to 99% training accuracy): `run.eval_train='eval'` evaluates the
stage's training view (chunks 1..t, eval mode) at every evaluation (split train_fit); summary.json
gains epochs_to_fit (per stage and seed, the first epoch with train_fit accuracy ≥ run.fit_threshold
= 0.99, null if never) and fit_reached (the fraction of stages × seeds that reached it). The budget
is fixed (no early stopping), so a config must show that it reaches the threshold: read
fit_reached (report: "Epochs to fit each stage"). An evaluation ends a call, so a call of several
epochs (run.max_steps_per_call) only shows the fit at its end.

`cpu=1`: every one of the 54,000 Fashion-MNIST training images (no subset) in 5 chunks, an MLP
(512, 512) on 28×28, Adam lr 1e-3, cosine restarted every stage, batch 128, 24 epochs a stage, one
epoch per call. Measured on 2 shared CPU cores (noisy), from scratch (`full`): 99% training
accuracy at epoch 15 of stage 1, 17 of stage 2, and 20 on all 54,000 images (stage 5, the
hardest); an epoch of all the data costs 7–8 s per seed, an evaluation of train + validation + test
about 3 s, so a seed-run costs about 14 min (72 epochs of all the data, 120 evaluations) and the
6-point grid about 85 min per seed. The budget is measured for reg=0; with reg=1 (augmentation, weight decay)
the 99% is not shown. Explicit fields given with `cpu=1` override its values.
"""

from reinit_jax import launch


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
  k = launch.apply(c, arg, reg=0, cpu=0)  # reg=1: weight decay 5e-4 + augmentation
  if k["cpu"]:
    _cpu(c)
    k = launch.apply(c, arg, reg=0, cpu=0)  # explicit fields override the knob's values
  if k["reg"]:
    c.optim.weight_decay = 5e-4
    c.data.augmentation = "cifar"
  return c


def _cpu(c):
  """The `cpu=1` size (module docstring): all the training data, an MLP fitting every stage."""
  c.model.name = "mlp"
  c.model.options = {"widths": (512, 512)}
  c.optim.optimizer = "adam"
  c.optim.learning_rate = 1e-3
  c.optim.schedule = "cosine_per_stage"
  c.optim.epochs = 120
  c.run.max_steps_per_call = 64  # below stage 1's 84 steps an epoch: one epoch a call


def get_sweep(arg=None):
  """Without and with regularization × scratch (full), warm start (standard), S&P."""
  del arg
  return launch.product(reg=(0, 1), method=("full", "standard", "shrink_perturb"))
