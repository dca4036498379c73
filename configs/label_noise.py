"""[Z] §6 label noise: a seeded fraction q of training labels replaced by uniform random classes.

    python launch.py --config=configs/label_noise.py:q=0.4,method=shrink_perturb,stages=5
    python launch.py --config=configs/label_noise.py:q=0.2,method=standard --config.seeds='(0,1,2)'

Fashion-MNIST (CPU-sized scnn at 1/4 width) with setting DC; validation/test labels stay clean and
every method of a seed sees the same noisy labels. Writes test accuracy at best (clean) validation.
"""

from reinit_jax.train.defaults import base_config, parse_overrides


def get_config(arg=None):
  c = base_config()
  c.name = "label_noise"
  c.dataset = "fashion_mnist"
  c.model = "scnn"
  c.model_kwargs = {"width": 0.25}
  c.q = 0.2
  c.batch_size = 128
  c.epochs = 20
  c.stages = 5
  c.learning_rate = 0.01
  c.setting = "DC"
  c.method = "shrink_perturb"
  c.eval_every_epochs = 1
  c = parse_overrides(c, arg)
  c.label_noise = float(c.q)
  return c
