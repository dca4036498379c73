"""[Z] §6 label noise: a seeded fraction q of training labels replaced by uniform random classes.

    python launch.py --config=configs/label_noise.py:q=0.4,method=shrink_perturb,stages=5
    python launch.py --config=configs/label_noise.py:q=0.2,method=standard --config.run.seeds='(0,1,2)'

Fashion-MNIST (CPU-sized scnn at 1/4 width) with setting DC; validation/test labels stay clean and
every method of a seed sees the same noisy labels. Writes test accuracy at best (clean) validation.

Sweep: q ∈ {0, 0.2, 0.4} × {standard, shrink_perturb, layerwise} × distillation off/on (β = 2, cached
teacher); layerwise uses K = min(T, 4) block groups of scnn's four blocks, M = T / K:

    python launch.py --config=configs/label_noise.py --sweep=all
    python launch.py --config=configs/label_noise.py:train_subset=1500,epochs=6,stages=3,model.options.width=0.125 --sweep=all   # CPU size
"""

from reinit_jax import launch


def get_config(arg=None):
  c = launch.base_config()
  c.name = "label_noise"
  c.data.dataset = "fashion_mnist"
  c.data.batch_size = 128
  c.model.name = "scnn"
  c.model.options = {"width": 0.25}
  c.optim.epochs = 20
  c.optim.learning_rate = 0.01
  c.optim.setting = "DC"
  c.reinit.stages = 4
  c.reinit.method = "shrink_perturb"
  c.run.eval_every_epochs = 1
  k = launch.apply(c, arg, q=0.2)
  c.data.label_noise = float(k["q"])
  if c.reinit.method == "layerwise" and c.model.num_blocks is None:
    c.model.num_blocks = min(c.reinit.stages, 4)  # K ≤ scnn's 4 blocks; M = T / K per group
    if not c.reinit.hparams and c.reinit.stages % c.model.num_blocks == 0:
      c.reinit.hparams = {"events_per_block": c.reinit.stages // c.model.num_blocks}
  return c


def get_sweep(arg=None):
  """q ∈ {0, 0.2, 0.4} × standard / S&P / layerwise × distillation off/on."""
  del arg
  return launch.product(q=(0.0, 0.2, 0.4), method=("standard", "shrink_perturb", "layerwise"),
                        distill=(False, True))
