"""[LW]'s main study: twelve TFDS data sets × the re-initialization methods, scnn at 224×224.

    python launch.py --config=configs/lw_datasets.py:dataset=cifar10,method=layerwise
    python launch.py --config='configs/lw_datasets.py:seeds=(0;1;2)' --sweep=list     # 12 × 6 points
    python launch.py --config='configs/lw_datasets.py:grid=full,seeds=(0;1;2)' --sweep=list

[LW] §3: images resized to 224×224, training augmentation flip + resize to 248 + random 224 crop
(`lw224`), SGD lr 0.003 momentum 0.9, batch 256, weight decay 1e-5, 10% of the training split held
out for validation, test accuracy at best validation. Rounds: T = 4 stages (scnn's K = 4 blocks,
M = 1 for layerwise; every other method re-initializes after each of the same rounds; standard
trains once). Not implemented from [LW]: halving the lr when validation error stalls for 20 epochs
(a constant lr is used) and the 100k-step cap per round (set `epochs=` instead).
Sweeps: `grid=main` data sets × {standard, random_subset, magnitude, fixed_subset, head, layerwise};
`grid=full` adds dropout {0, 0.25} × initializer {he_normal, xavier_uniform} (the inputs of [LW]
Fig. 3's decision tree).
"""

from reinit_jax.train import sweep
from reinit_jax.train.defaults import base_config, parse_overrides

DATASETS = ("oxford_iiit_pet", "stanford_dogs", "fashion_mnist", "cars196", "mnist_corrupted",
            "cifar10_corrupted", "cifar10", "caltech101", "cassava", "cmaterdb",
            "caltech_birds2010", "cifar100")
METHODS = ("standard", "random_subset", "magnitude", "fixed_subset", "head", "layerwise")


def get_config(arg=None):
  c = base_config()
  c.name = "lw_datasets"
  c.dataset = "cifar10"
  c.model = "scnn"
  c.image_size = 224
  c.augmentation = "lw224"
  c.validation_fraction = 0.1
  c.batch_size = 256
  c.epochs = 100
  c.stages = 4
  c.learning_rate = 0.003
  c.weight_decay = 1e-5
  c.method = "layerwise"
  c.eval_every_epochs = 1
  c.eval_batch_size = 256
  c.dropout = 0.0
  c.initializer = "he_normal"
  c.grid = "main"  # which get_sweep grid (main | full)
  c = parse_overrides(c, arg)
  c.model_kwargs = {"input_shape": (224, 224, 3), "dropout": float(c.dropout),
                    "initializer": c.initializer}
  return c


def get_sweep(arg=None):
  """Data sets × methods (``grid=full``: × dropout × initializer)."""
  grid = get_config(arg).grid
  if grid == "main":
    return sweep.product(dataset=DATASETS, method=METHODS)
  if grid == "full":
    return sweep.product(dataset=DATASETS, method=METHODS, dropout=(0.0, 0.25),
                         initializer=("he_normal", "xavier_uniform"))
  raise ValueError(f"config.grid must be main or full, got {grid!r}")
