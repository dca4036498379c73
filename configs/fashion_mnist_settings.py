"""[Z] §4–5 on Fashion-MNIST: settings Ø/D/DC/DCW and the learning-rate × weight-decay grid.

    python launch.py --config=configs/fashion_mnist_settings.py:setting=none,method=shrink_perturb
    python launch.py --config=configs/fashion_mnist_settings.py:setting=DCW,method=full,distill=True

A CPU-sized counterpart of configs/cifar_resnet18.py: scnn_tiny (1/8 of [LW]'s scnn, four blocks,
LayerNorm) on the first `train_subset` Fashion-MNIST training images (default 2,000, after the 10%
validation hold-out), SGD lr 0.05 momentum 0.9, batch 128, 64 epochs in T = 4 stages, 5 seeds,
validation and test at the end of every stage, fitting records per stage (`eval_train='stage'`).
Writes test accuracy at best validation and at the final epoch.

Settings ([Z] §4, `setting=`): none (Ø: no augmentation, constant lr, no weight decay) | D (+ random
horizontal flip) | DC (+ cosine restarted every stage) | DCW (+ weight decay 5e-4). D is the flip
alone (`setting_augmentation=flip`): with [Z]'s flip + pad-4 crop (`setting_augmentation=cifar`)
this network, which flattens its feature maps into a dense layer, fits only 83% of 2,000 images in
DCW after 64 epochs (91% at width 0.25 on 1,000 images in 128 epochs; resnet18_tiny 86%), so
re-initialization would be measured on an underfitting network; with the flip alone standard
training fits 98.7% in DCW. Methods: standard; Shrink & Perturb (λ = 0.4, γ = 0.1 every stage); layer-wise (K = 4 blocks,
M = 1: after stage t the blocks above t are re-initialized); BAN = `full` + distillation (β = 2,
teacher cached per stage).

Sweeps (`grid=`):

    python launch.py --config=configs/fashion_mnist_settings.py:grid=settings --sweep=all \\
        --workdir=runs/fmnist_settings          # [Z] Tables 1–2: 4 settings × 4 methods
    python launch.py --config=configs/fashion_mnist_settings.py:grid=hparams --sweep=all \\
        --workdir=runs/fmnist_hparams           # [Z] Fig. 4: lr × wd × 3 methods in DCW

`hparams`: lr ∈ {0.01, 0.03, 0.1} × weight decay ∈ {0, 5e-4, 5e-3} × standard / S&P / layer-wise
in setting DCW (the axis is `setting_weight_decay`), 3 seeds; [Z]'s grid is 5 × 5 (cifar_resnet18).
"""

from reinit_jax import launch

SETTINGS = ("none", "D", "DC", "DCW")
METHODS = ("standard", "shrink_perturb", "layerwise", "full")  # full + distill = BAN


def _config(arg):
  c = launch.base_config()
  c.name = "fashion_mnist_settings"
  c.data.dataset = "fashion_mnist"
  c.data.batch_size = 128
  c.data.train_subset = 2000
  c.model.name = "scnn_tiny"
  c.optim.epochs = 64
  c.optim.learning_rate = 0.05
  c.optim.momentum = 0.9
  c.optim.setting = "none"
  c.optim.setting_augmentation = "flip"  # see the module docstring
  c.optim.setting_weight_decay = 5e-4
  c.reinit.stages = 4
  c.reinit.method = "shrink_perturb"
  c.reinit.distill_beta = 2.0
  c.run.seeds = (0, 1, 2, 3, 4)
  c.run.eval_every_epochs = 0  # stage ends: the 16,000 held-out images cost more than an epoch
  c.run.eval_train = "stage"
  k = launch.apply(c, arg, grid="settings")
  if k["grid"] not in ("settings", "hparams"):
    raise ValueError(f"config override grid={k['grid']!r} is invalid; allowed: settings, hparams")
  if k["grid"] == "hparams":  # [Z] Fig. 4 is measured in DCW; 3 seeds a point
    c.optim.setting = "DCW"
    c.run.seeds = (0, 1, 2)
    launch.apply(c, arg, grid="settings")  # explicit fields override the grid's values
  if c.reinit.method == "layerwise" and c.model.num_blocks is None:
    c.model.num_blocks = min(c.reinit.stages, 4)  # K ≤ scnn's four blocks; M = T / K
    if not c.reinit.hparams and c.reinit.stages % c.model.num_blocks == 0:
      c.reinit.hparams = {"events_per_block": c.reinit.stages // c.model.num_blocks}
  return c, k


def get_config(arg=None):
  return _config(arg)[0]


def get_sweep(arg=None):
  """The grid named by ``grid=`` (module docstring)."""
  if _config(arg)[1]["grid"] == "settings":
    return [{**p, "distill": p["method"] == "full"}
            for p in launch.product(setting=SETTINGS, method=METHODS)]
  return launch.product(method=METHODS[:3], learning_rate=(0.01, 0.03, 0.1),
                        setting_weight_decay=(0.0, 5e-4, 5e-3))
