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
    python launch.py --config=configs/online.py:train_subset=2000,epochs=10,model.options.width=0.125,seeds=2 --sweep=all   # CPU size
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
  k = launch.apply(c, arg, reg=0)  # reg=1: weight decay 5e-4 + augmentation
  if k["reg"]:
    c.optim.weight_decay = 5e-4
    c.data.augmentation = "cifar"
  return c


def get_sweep(arg=None):
  """Without and with regularization × scratch (full), warm start (standard), S&P."""
  del arg
  return launch.product(reg=(0, 1), method=("full", "standard", "shrink_perturb"))
