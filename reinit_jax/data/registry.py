"""The data sets reinit_jax knows and validation of the data config (docs/CONTRACTS.md, Data).

The data sets are those of the papers: [LW] §3's twelve TFDS image data sets and its synthetic task
([LW] §1.1, ``synthetic``), CIFAR-10/100 and Tiny ImageNet of [Z] Tables 1–3, and ImageNet.

Each entry names the TFDS builder, the TFDS splits used as "train" and "test", the class count, the
native image shape (None: images of varying size, which are resized), and whether the data set fits
in host/device memory (the in-memory fast path) or is streamed with tf.data.

Split choices that are ours: imagenet2012 and tiny_imagenet have no labelled test split, so their
``validation`` split is our test set; cifar10_corrupted ships only a ``test`` split, so its first
80% is our training split and the last 20% our test set. Validation is always held out of "train".

Downloads: TFDS data sets are prepared from prepared data or the manual directory only; TFDS may
download them when ``download=True`` (config field) or ``REINIT_JAX_DOWNLOAD=1`` is set (an offline
machine would otherwise spend minutes on network retries before failing).
"""

from __future__ import annotations

import os
from typing import NamedTuple

AUGMENTATIONS = ("none", "flip", "cifar", "lw224")
LW_SIZE, LW_RESIZE = 224, 248  # [LW]: resize to 224; train: resize 248, random 224 crop.
CIFAR_PAD = 4  # [Z]: pad 4, random crop back to the original size.
DOWNLOAD_ENV = "REINIT_JAX_DOWNLOAD"


class Spec(NamedTuple):
  """How one data set is read: TFDS name (with config), splits, classes, native shape, path."""

  tfds_name: str
  train_split: str
  test_split: str
  num_classes: int
  shape: tuple[int, int, int] | None
  in_memory: bool


DATASETS: dict[str, Spec] = {
  "fashion_mnist": Spec("fashion_mnist", "train", "test", 10, (28, 28, 1), True),
  "cifar10": Spec("cifar10", "train", "test", 10, (32, 32, 3), True),
  "cifar100": Spec("cifar100", "train", "test", 100, (32, 32, 3), True),
  "tiny_imagenet": Spec("tiny_imagenet", "train", "validation", 200, (64, 64, 3), True),
  "imagenet2012": Spec("imagenet2012", "train", "validation", 1000, None, False),
  # [LW]'s twelve (fashion_mnist, cifar10, cifar100 above).
  "oxford_iiit_pet": Spec("oxford_iiit_pet", "train", "test", 37, None, False),
  "stanford_dogs": Spec("stanford_dogs", "train", "test", 120, None, False),
  "cars196": Spec("cars196", "train", "test", 196, None, False),
  "mnist_corrupted": Spec("mnist_corrupted", "train", "test", 10, (28, 28, 1), True),
  "cifar10_corrupted": Spec("cifar10_corrupted", "test[:80%]", "test[80%:]", 10, (32, 32, 3), True),
  "caltech101": Spec("caltech101", "train", "test", 102, None, False),
  "cassava": Spec("cassava", "train", "test", 5, None, False),
  "cmaterdb": Spec("cmaterdb", "train", "test", 10, (32, 32, 3), True),
  "caltech_birds2010": Spec("caltech_birds2010", "train", "test", 200, None, False),
}
SYNTHETIC = "synthetic"


def names() -> tuple[str, ...]:
  """All valid values of ``cfg.dataset``."""
  return tuple(sorted(DATASETS)) + (SYNTHETIC,)


def _get(cfg, field, default):
  value = getattr(cfg, field, default) if not isinstance(cfg, dict) else cfg.get(field, default)
  return default if value is None and default is not None else value


class Options(NamedTuple):
  """The validated data config; field meanings in docs/CONTRACTS.md (Data)."""

  dataset: str
  data_dir: str | None
  manual_dir: str | None
  validation_fraction: float
  batch_size: int
  augmentation: str
  image_size: int | None
  label_noise: float
  chunks: int
  seed: int
  train_subset: int | None
  synthetic_alpha: float
  synthetic_train: int
  synthetic_test: int
  in_memory: bool | None  # None: per data set (Spec.in_memory); False forces streaming.
  download: bool = False  # let TFDS download a data set that is not prepared (module docstring)


def options(cfg) -> Options:
  """Reads and validates ``cfg`` (attribute object or dict); raises one-line ValueErrors."""
  dataset = str(_get(cfg, "dataset", "fashion_mnist"))
  if dataset not in names():
    raise ValueError(f"dataset={dataset!r} is unknown; valid: {', '.join(names())}")
  default_vf = 0.0 if dataset == SYNTHETIC else 0.1
  opts = Options(
    dataset=dataset,
    data_dir=_get(cfg, "data_dir", None),
    manual_dir=_get(cfg, "manual_dir", None),
    validation_fraction=float(_get(cfg, "validation_fraction", default_vf)),
    batch_size=int(_get(cfg, "batch_size", 128)),
    augmentation=str(_get(cfg, "augmentation", "none")),
    image_size=_get(cfg, "image_size", None),
    label_noise=float(_get(cfg, "label_noise", 0.0)),
    chunks=int(_get(cfg, "chunks", 1)),
    seed=int(_get(cfg, "seed", 0)),
    train_subset=_get(cfg, "train_subset", None),
    synthetic_alpha=float(_get(cfg, "synthetic_alpha", 1.0)),
    synthetic_train=int(_get(cfg, "synthetic_train", 256)),
    synthetic_test=int(_get(cfg, "synthetic_test", 10000)),
    in_memory=_get(cfg, "in_memory", None),
    download=bool(_get(cfg, "download", False))
    or os.environ.get(DOWNLOAD_ENV, "").lower() in ("1", "true", "yes"),
  )
  if not 0.0 <= opts.label_noise < 1.0:
    raise ValueError(f"label_noise={opts.label_noise} must be in [0, 1)")
  if not 0.0 <= opts.validation_fraction < 1.0:
    raise ValueError(f"validation_fraction={opts.validation_fraction} must be in [0, 1)")
  if opts.chunks < 1:
    raise ValueError(f"chunks={opts.chunks} must be an integer >= 1")
  if opts.batch_size < 1:
    raise ValueError(f"batch_size={opts.batch_size} must be an integer >= 1")
  if opts.augmentation not in AUGMENTATIONS:
    raise ValueError(
      f"augmentation={opts.augmentation!r} is unknown; valid: {', '.join(AUGMENTATIONS)}")
  if opts.image_size is not None and int(opts.image_size) < 1:
    raise ValueError(f"image_size={opts.image_size} must be None or an integer >= 1")
  if opts.train_subset is not None and int(opts.train_subset) < 1:
    raise ValueError(f"train_subset={opts.train_subset} must be None or an integer >= 1")
  if dataset == SYNTHETIC:
    if opts.augmentation != "none":
      raise ValueError(f"augmentation={opts.augmentation!r} with dataset='synthetic'; valid: none")
    if opts.synthetic_train < 1 or opts.synthetic_test < 1:
      raise ValueError(
        f"synthetic_train={opts.synthetic_train}, synthetic_test={opts.synthetic_test} must be >= 1")
  elif DATASETS[dataset].shape is None and opts.augmentation != "lw224" and not opts.image_size:
    raise ValueError(
      f"augmentation={opts.augmentation!r} on {dataset} (images of varying size) needs "
      "image_size; or use augmentation='lw224'")
  return opts
