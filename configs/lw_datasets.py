"""[LW]'s main study: twelve TFDS data sets × the re-initialization methods, scnn at 224×224.

    python launch.py --config=configs/lw_datasets.py:dataset=cifar10,method=layerwise
    python launch.py --config='configs/lw_datasets.py:seeds=3' --sweep=all              # 12 × 6 points
    python launch.py --config='configs/lw_datasets.py:grid=full,seeds=3' --sweep=list

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

from reinit_jax import launch

DATASETS = ("oxford_iiit_pet", "stanford_dogs", "fashion_mnist", "cars196", "mnist_corrupted",
            "cifar10_corrupted", "cifar10", "caltech101", "cassava", "cmaterdb",
            "caltech_birds2010", "cifar100")
METHODS = ("standard", "random_subset", "magnitude", "fixed_subset", "head", "layerwise")


def _config(arg):
  c = launch.base_config()
  c.name = "lw_datasets"
  c.data.dataset = "cifar10"
  c.data.image_size = 224
  c.data.augmentation = "lw224"
  c.data.validation_fraction = 0.1
  c.data.batch_size = 256
  c.model.name = "scnn"
  c.optim.epochs = 100
  c.optim.learning_rate = 0.003
  c.optim.weight_decay = 1e-5
  c.reinit.stages = 4
  c.reinit.method = "layerwise"
  c.run.eval_every_epochs = 1
  c.run.eval_batch_size = 256
  k = launch.apply(c, arg, dropout=0.0, initializer="he_normal", grid="main")
  # The input shape is the data's after lw224: 224 × 224 × 3, or × 1 for the grey data sets.
  c.model.options = {"dropout": float(k["dropout"]), "initializer": k["initializer"]}
  return c, k


def get_config(arg=None):
  return _config(arg)[0]


def get_sweep(arg=None):
  """Data sets × methods (``grid=full``: × dropout × initializer)."""
  grid = _config(arg)[1]["grid"]
  if grid == "main":
    return launch.product(dataset=DATASETS, method=METHODS)
  if grid == "full":
    return launch.product(dataset=DATASETS, method=METHODS, dropout=(0.0, 0.25),
                          initializer=("he_normal", "xavier_uniform"))
  raise ValueError(f"config override grid={grid!r} is invalid; allowed: main, full")
