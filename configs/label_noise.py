"""[Z] §6 label noise: a seeded fraction q of training labels replaced by uniform random classes.

    python launch.py --config=configs/label_noise.py:q=0.4,method=shrink_perturb,stages=5
    python launch.py --config=configs/label_noise.py:q=0.2,method=standard --config.run.seeds='(0,1,2)'

Fashion-MNIST (CPU-sized scnn at 1/4 width) with setting DC; validation/test labels stay clean and
every method of a seed sees the same noisy labels. Writes test accuracy at best (clean) validation.

Sweep: q ∈ {0, 0.2, 0.4} × {standard, shrink_perturb, layerwise} × distillation off/on (β = 2, cached
teacher); layerwise uses K = min(T, 4) block groups of scnn's four blocks, M = T / K:

    python launch.py --config=configs/label_noise.py --sweep=all
    python launch.py --config=configs/label_noise.py:cpu=1,seeds=6 --sweep=all   # CPU size, all the data

Fitting ([Z] §6): `run.eval_train='stage'` evaluates the stage's training set at the end of every
stage: metrics.jsonl and summary.json's stage records gain train_fit, train_noisy (relabelled
examples against their noisy labels: memorization), train_noisy_clean (the same against their
original labels) and train_clean; the report tabulates them per stage and states the test accuracy
at the final epoch next to the one at best validation.

`cpu=1`: every one of the 54,000 Fashion-MNIST training images (no subset), as 14×14 images, an
MLP (512,), Adam lr 1e-3, setting Ø, batch 128, 4 epochs in 4 stages. Measured on 2 shared CPU
cores with 6 seeds (q=0.4): 1.3 s of training per epoch per seed; a point takes 66 s (standard) to
97 s (layerwise + distillation) including start-up and compilation, so the 18-point grid takes
about 20 min. At this budget standard training does NOT memorize the noise (train_noisy stays at
10%, chance; train_noisy_clean 85%): the CPU grid exercises the machinery, not [Z] §6's effect.
Memorizing is far slower: an MLP (512, 512) on 28×28 with Adam fitted 22% of the relabelled
examples after 20 epochs (7 s an epoch per seed), an MLP (1024,) on 14×14 16% after 40. Explicit
fields given with `cpu=1` override its values.
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
  c.run.eval_train = "stage"
  k = launch.apply(c, arg, q=0.2, cpu=0)
  if k["cpu"]:
    _cpu(c)
    k = launch.apply(c, arg, q=0.2, cpu=0)  # explicit fields override the knob's values
  c.data.label_noise = float(k["q"])
  if c.reinit.method == "layerwise" and c.model.num_blocks is None:
    # K ≤ the model's blocks (scnn: 4; an MLP: every layer); M = T / K per group.
    blocks = len(c.model.options.get("widths", (32, 32))) + 1 if c.model.name == "mlp" else 4
    c.model.num_blocks = min(c.reinit.stages, blocks)
    if not c.reinit.hparams and c.reinit.stages % c.model.num_blocks == 0:
      c.reinit.hparams = {"events_per_block": c.reinit.stages // c.model.num_blocks}
  return c


def _cpu(c):
  """The `cpu=1` size (module docstring): all the training data, a small MLP on 14×14 images."""
  c.model.name = "mlp"
  c.model.options = {"widths": (512,)}
  c.data.image_size = 14
  c.optim.setting = "none"
  c.optim.optimizer = "adam"
  c.optim.learning_rate = 1e-3
  c.optim.epochs = 4
  c.reinit.stages = 4


def get_sweep(arg=None):
  """q ∈ {0, 0.2, 0.4} × standard / S&P / layerwise × distillation off/on."""
  del arg
  return launch.product(q=(0.0, 0.2, 0.4), method=("standard", "shrink_perturb", "layerwise"),
                        distill=(False, True))
