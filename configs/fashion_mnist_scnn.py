"""[LW]-style study: scnn (LayerNorm, K = 4) on Fashion-MNIST, any method, offline.

    python launch.py --config=configs/fashion_mnist_scnn.py:method=layerwise,stages=4
    python launch.py --config=configs/fashion_mnist_scnn.py:method=random_subset,width=0.25

SGD lr 0.003 momentum 0.9, batch 256, weight decay 1e-5 ([LW] §3), 10% validation, test accuracy at
best validation (evaluated every epoch). `width=` scales the channels (1.0 is [LW]'s scnn; CPU: 0.25),
`train_subset=` caps the training set. Writes the usual outputs; layerwise needs stages = 4·M.
"""

from reinit_jax.train.defaults import base_config, parse_overrides


def get_config(arg=None):
  c = base_config()
  c.name = "fashion_mnist_scnn"
  c.dataset = "fashion_mnist"
  c.model = "scnn"
  c.width = 1.0
  c.batch_size = 256
  c.epochs = 40
  c.stages = 4
  c.learning_rate = 0.003
  c.weight_decay = 1e-5
  c.method = "layerwise"
  c.eval_every_epochs = 1
  c = parse_overrides(c, arg)
  c.model_kwargs = {"width": float(c.width)}
  return c
