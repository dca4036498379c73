"""Online learning ([AA], [Z] A.2): data in C = 5 chunks, stage t trains on chunks 1..t.

    python launch.py --config=configs/online.py:method=standard    # warm start
    python launch.py --config=configs/online.py:method=full        # from scratch each stage
    python launch.py --config=configs/online.py:method=shrink_perturb

Fashion-MNIST, scnn at 1/4 width, 5 stages of 4 epochs, SGD lr 0.01; writes per-stage test accuracy
(summary.json "stages") and test accuracy at best validation. The training-set size changes every
stage, so the train step compiles once per stage here.
"""

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
  return parse_overrides(c, arg)
