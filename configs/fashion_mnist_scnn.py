"""[LW]-style study: scnn (LayerNorm, K = 4) on Fashion-MNIST, any method, offline.

    python launch.py --config=configs/fashion_mnist_scnn.py:method=layerwise,stages=4
    python launch.py --config=configs/fashion_mnist_scnn.py:method=random_subset,width=0.25

SGD lr 0.003 momentum 0.9, batch 256, weight decay 1e-5 ([LW] §3), 10% validation, test accuracy at
best validation (evaluated every epoch). `width=` scales the channels (1.0 is [LW]'s scnn; CPU: 0.25),
`train_subset=` caps the training set. Writes the usual outputs; layerwise needs stages = 4·M.
"""

from reinit_jax import launch


def get_config(arg=None):
  c = launch.base_config()
  c.name = "fashion_mnist_scnn"
  c.data.dataset = "fashion_mnist"
  c.data.batch_size = 256
  c.model.name = "scnn"
  c.optim.epochs = 40
  c.optim.learning_rate = 0.003
  c.optim.weight_decay = 1e-5
  c.reinit.stages = 4
  c.reinit.method = "layerwise"
  c.run.eval_every_epochs = 1
  k = launch.apply(c, arg, width=1.0)
  c.model.options.width = float(k["width"])
  return c
