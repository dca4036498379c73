"""Online learning ([AA], [Z] A.2): data in C = 5 chunks, stage t trains on chunks 1..t.

    python launch.py --config=configs/online.py:method=standard    # warm start
    python launch.py --config=configs/online.py:method=full        # from scratch each stage
    python launch.py --config=configs/online.py:method=shrink_perturb

Fashion-MNIST, scnn at 1/4 width, 5 stages of 4 epochs, SGD lr 0.01; writes per-stage test accuracy
(summary.json "stages") and test accuracy at best validation. The training set grows every stage;
the train step still compiles once (rows padded to the largest stage, bench/README.md, section 3).

`reg=1` adds regularization (weight decay 5e-4 and flip + pad-4 crop augmentation, [Z] A.2's
regularized variant); `reg=0` has none. Sweep (scratch vs warm start vs S&P, without and with
regularization; seeds vmapped inside every point):

    python launch.py --config=configs/online.py --sweep=list
    python launch.py --config=configs/online.py:train_subset=2000,epochs=10,model_kwargs.width=0.125,seeds=2 --sweep=list   # CPU size
"""

from reinit_jax.train import sweep
from reinit_jax.train.defaults import base_config, parse_overrides


def get_config(arg=None):
  c = base_config()
  c.name = "online"
  c.dataset = "fashion_mnist"
  c.model = "scnn"
  c.model_kwargs = {"width": 0.25}
  c.chunks = 5
  c.stages = 5
  c.epochs = 20
  c.batch_size = 128
  c.learning_rate = 0.01
  c.method = "shrink_perturb"
  c.methods = ()
  c.reg = 0  # 1: weight decay 5e-4 + augmentation
  c.eval_every_epochs = 1
  c = parse_overrides(c, arg)
  if c.reg:
    c.weight_decay = 5e-4
    c.augmentation = "cifar"
  return c


def get_sweep(arg=None):
  """Without and with regularization × scratch (full), warm start (standard), S&P."""
  del arg
  return sweep.product(reg=(0, 1), method=("full", "standard", "shrink_perturb"))
