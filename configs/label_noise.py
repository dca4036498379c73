"""[Z] §6 label noise: a seeded fraction q of training labels replaced by uniform random classes.

    python launch.py --config=configs/label_noise.py:q=0.4,method=shrink_perturb,stages=5
    python launch.py --config=configs/label_noise.py:q=0.2,method=standard --config.seeds='(0,1,2)'

Fashion-MNIST (CPU-sized scnn at 1/4 width) with setting DC; validation/test labels stay clean and
every method of a seed sees the same noisy labels. Writes test accuracy at best (clean) validation.

Sweep: q ∈ {0, 0.4} × {standard, shrink_perturb, layerwise} × distillation off/on (β = 2, cached
teacher); layerwise uses K = min(T, 4) block groups of scnn's four blocks, M = T / K:

    python launch.py --config=configs/label_noise.py --sweep=list
    python launch.py --config=configs/label_noise.py:train_subset=1500,epochs=6,stages=3,model_kwargs.width=0.125 --sweep=list   # CPU size
"""

from reinit_jax.train import sweep
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
  c.stages = 4
  c.learning_rate = 0.01
  c.setting = "DC"
  c.method = "shrink_perturb"
  c.eval_every_epochs = 1
  c = parse_overrides(c, arg)
  c.label_noise = float(c.q)
  if c.method == "layerwise" and c.num_blocks is None:
    c.num_blocks = min(c.stages, 4)  # K ≤ scnn's 4 blocks; M = T / K events per block group
    if not c.method_kwargs and c.stages % c.num_blocks == 0:
      c.method_kwargs = {"events_per_block": c.stages // c.num_blocks}
  return c


def get_sweep(arg=None):
  """q ∈ {0, 0.4} × standard / S&P / layerwise × distillation off/on."""
  del arg
  return sweep.product(q=(0.0, 0.4), method=("standard", "shrink_perturb", "layerwise"),
                       distill=(False, True))
