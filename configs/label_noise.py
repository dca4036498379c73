"""[Z] §6 label noise: a seeded fraction q of training labels replaced by uniform random classes.

    python launch.py --config=configs/label_noise.py:q=0.4,method=shrink_perturb,stages=5
    python launch.py --config=configs/label_noise.py:q=0.2,method=standard --config.run.seeds='(0,1,2)'

Fashion-MNIST (CPU-sized scnn at 1/4 width) with setting DC; validation/test labels stay clean and
every method of a seed sees the same noisy labels. Writes test accuracy at best (clean) validation.

Sweep: reg ∈ {1, 2} (below) × q ∈ {0, 0.2, 0.4} × {standard, shrink_perturb, layerwise} ×
distillation off/on (β = 2, cached teacher); layerwise uses K = min(T, 4) block groups of scnn's
four blocks, M = T / K:

    python launch.py --config=configs/label_noise.py --sweep=all                # GPU size

Fitting ([Z] §6): `run.eval_train='stage'` evaluates the stage's training set at the end of every
stage: metrics.jsonl and summary.json's stage records gain train_fit, train_noisy (relabelled
examples against their noisy labels: memorization), train_noisy_clean (the same against their
original labels) and train_clean; the report tabulates them per stage and states the test accuracy
at the final epoch next to the one at best validation.

`reg` (both sizes): 0 keeps the fields above (DC for the scnn); 1 is [Z] §6's regularized setting
without augmentation: weight decay 5e-4 and the cosine restarted at every stage; 2 is setting Ø (no
weight decay, constant learning rate, no augmentation). The sweep covers `reg` ∈ {1, 2}.

`cpu=1`: a size where standard training memorizes the noisy labels on 2 CPU cores, the regime of
[Z] §6: 3,000 Fashion-MNIST training images (the first after the 10% validation hold-out), an MLP
784-256-256-10, SGD lr 0.01 with momentum 0.9, batch 128, 60 epochs in 4 stages, 5 seeds,
validation and test every 5 epochs, layer-wise with K = 2 groups (M = 2 events each). At q = 0.4
standard training fits 96% of the relabelled examples to their noisy label by the last stage
(configs/default.py is this size's q = 0.4, reg = 0 column). The whole grid (36 points × 5 seeds,
q packed):

    python launch.py --config=configs/label_noise.py:cpu=1 --sweep=all --workdir=runs/label_noise_cpu

Explicit fields given with `cpu=1` override its values.
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
  k = launch.apply(c, arg, q=0.2, cpu=0, reg=0)
  if k["cpu"]:
    _cpu(c)
    k = launch.apply(c, arg, q=0.2, cpu=0, reg=0)  # explicit fields override the knob's values
  if k["reg"] not in (0, 1, 2):
    raise ValueError(f"config override reg={k['reg']!r} is invalid; allowed: 0 (the fields as "
                     "set), 1 (weight decay 5e-4 + cosine restarted per stage), 2 (setting Ø)")
  if k["reg"] == 1:
    c.optim.setting = ""
    c.optim.weight_decay = 5e-4
    c.optim.schedule = "cosine_per_stage"
  elif k["reg"] == 2:
    c.optim.setting = "none"
  c.data.label_noise = float(k["q"])
  if c.reinit.method == "layerwise" and c.model.num_blocks is None:
    # K ≤ the model's blocks (scnn: 4; an MLP: every layer); M = T / K per group.
    blocks = len(c.model.options.get("widths", (32, 32))) + 1 if c.model.name == "mlp" else 4
    c.model.num_blocks = min(c.reinit.stages, blocks)
    if not c.reinit.hparams and c.reinit.stages % c.model.num_blocks == 0:
      c.reinit.hparams = {"events_per_block": c.reinit.stages // c.model.num_blocks}
  return c


def _cpu(c):
  """The `cpu=1` size (module docstring): a subset that standard training memorizes."""
  c.data.train_subset = 3000
  c.model.name = "mlp"
  c.model.options = {"widths": (256, 256)}
  c.model.num_blocks = 2
  c.optim.setting = ""
  c.optim.optimizer = "sgd"
  c.optim.momentum = 0.9
  c.optim.schedule = "cosine_per_stage"
  c.optim.epochs = 60
  c.reinit.stages = 4
  c.run.seeds = (0, 1, 2, 3, 4)
  c.run.eval_every_epochs = 5


def get_sweep(arg=None):
  """q ∈ {0, 0.2, 0.4} × standard / S&P / layerwise × distillation off/on × reg 1 / 2."""
  del arg
  return launch.product(reg=(1, 2), q=(0.0, 0.2, 0.4),
                        method=("standard", "shrink_perturb", "layerwise"), distill=(False, True))
