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

from reinit_jax import schema
from reinit_jax.data import synthetic

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


# The data set's config fields, defined once: ``options`` reads a partial dict with these defaults
# and checks, and the training config's ``data`` section is these fields (train/config.py).
FIELDS: dict[str, schema.Field] = {
  "dataset": schema.one_of("synthetic", names(), "data set name (reinit_jax.data.names())"),
  "data_dir": schema.host(schema.optional(str, lambda v: isinstance(v, str), "a path",
                                          "TFDS data_dir")),
  "manual_dir": schema.host(schema.optional(str, lambda v: isinstance(v, str), "a path",
                                            "TFDS manual_dir")),
  "validation_fraction": schema.host(schema.optional(
    float, lambda v: schema.is_number(v) and 0 <= v < 1, "a number in [0, 1)",
    "held out of train for model selection (None: 0 for the synthetic task, else 0.1)")),
  "augmentation": schema.one_of("none", AUGMENTATIONS, "'flip': horizontal flips; 'cifar': flip "
                                "+ pad-4 crop ([Z]); 'lw224': [LW]'s resize and crop"),
  "image_size": schema.optional(int, lambda v: schema.is_int(v) and v >= 1, "an integer >= 1",
                                "resize images to this side"),
  "label_noise": schema.host(schema.Field(
    0.0, lambda v: schema.is_number(v) and 0 <= v < 1, "a number in [0, 1)",
    "fraction q of training labels redrawn uniformly ([Z] §6)")),
  "chunks": schema.host(schema.integer(
    1, 1, "online learning when > 1: stage t trains on chunks 1..t ([AA] §3)")),
  "train_subset": schema.host(schema.optional(
    int, lambda v: schema.is_int(v) and v >= 1, "an integer >= 1",
    "use the first n training examples (after the hold-out)")),
  "in_memory": schema.host(schema.optional(
    bool, lambda v: isinstance(v, bool), "True or False",
    "None: per data set; False streams through tf.data")),
  "download": schema.host(schema.flag(
    False, f"let TFDS download a data set that is not prepared (or set {DOWNLOAD_ENV}=1); "
    "offline, an unprepared data set fails in seconds")),
  "seed": schema.host(schema.optional(
    int, lambda v: schema.is_int(v) and v >= 0, "an integer >= 0",
    "seed of the shared data set (hold-out, subset, noise); None: the training config's first "
    "run seed (0 for data.build alone)")),
  "synthetic_alpha": schema.host(schema.Field(1.0, schema.is_number, "a finite number",
                                              "signal strength α ([LW] §1.1)")),
  "synthetic_train": schema.host(schema.integer(256, 1, "synthetic training examples")),
  "synthetic_test": schema.host(schema.integer(10000, 1, "synthetic test examples")),
}


class Source(NamedTuple):
  """Where TFDS reads and prepares a data set: ``data_dir``, ``manual_dir``, ``download``."""

  data_dir: str | None
  manual_dir: str | None
  download: bool


class Synthetic(NamedTuple):
  """The synthetic task's signal strength α and its training and test sizes ([LW] §1.1)."""

  alpha: float
  train: int
  test: int


class Options(NamedTuple):
  """The validated data config: :data:`FIELDS`, with ``validation_fraction`` and ``seed`` resolved,
  ``download`` also set by the environment; the TFDS paths in ``source``, the synthetic task's
  sizes in ``synthetic``."""

  dataset: str
  validation_fraction: float
  augmentation: str
  image_size: int | None
  label_noise: float
  chunks: int
  train_subset: int | None
  in_memory: bool | None  # None: per data set (Spec.in_memory); False forces streaming.
  seed: int
  source: Source
  synthetic: Synthetic


def in_memory(opts: Options) -> bool:
  """Whether ``opts``' data set is held in memory (the synthetic task always; a TFDS data set per
  its :class:`Spec` unless ``in_memory`` says otherwise) or streamed with tf.data. Known from the
  config alone, so the checks that depend on it run before any data is read."""
  if opts.dataset == SYNTHETIC:
    return True
  return DATASETS[opts.dataset].in_memory if opts.in_memory is None else bool(opts.in_memory)


def output_shape(preset: str, shape: tuple[int, int, int], image_size: int | None):
  """Image shape after the preset: ``(H, W, C)``; lw224 → ``(224, 224, C)`` whatever the input."""
  if preset == "lw224":
    return (LW_SIZE, LW_SIZE, shape[-1])
  if image_size:
    return (int(image_size), int(image_size), shape[-1])
  return tuple(shape)


def example_shape(opts: Options) -> tuple[int, tuple[int, ...]]:
  """``(classes, input shape)``: the class count and one example's shape as the model sees it
  (after the augmentation preset), known from the config alone, so validation builds the model
  before any data is read (a streamed data set's ``Meta`` takes it; an in-memory one's, read from
  its arrays, must agree: train/build.py checks). A data set of varying image size is resized
  (``options`` requires image_size or lw224); its channels are 3."""
  if opts.dataset == SYNTHETIC:
    return synthetic.NUM_CLASSES, (synthetic.DIM,)
  spec = DATASETS[opts.dataset]
  native = spec.shape or (0, 0, 3)
  return spec.num_classes, tuple(output_shape(opts.augmentation, native, opts.image_size))


def options(cfg) -> Options:
  """Reads ``cfg`` (a dict or an attribute object; absent fields take :data:`FIELDS`' defaults,
  other keys are ignored) and checks it; raises one-line ValueErrors naming the field."""
  read = cfg.get if isinstance(cfg, dict) else lambda k, d: getattr(cfg, k, d)
  values = {name: read(name, field.default) for name, field in FIELDS.items()}
  for name, field in FIELDS.items():
    if not schema.check(field, values[name]):
      schema.fail(f"data.{name}", values[name], field.allowed)
  if values["validation_fraction"] is None:
    values["validation_fraction"] = 0.0 if values["dataset"] == SYNTHETIC else 0.1
  values["seed"] = values["seed"] or 0
  values["download"] = (values["download"]
                        or os.environ.get(DOWNLOAD_ENV, "").lower() in ("1", "true", "yes"))
  source = Source(*(values.pop(k) for k in ("data_dir", "manual_dir", "download")))
  synthetic = Synthetic(*(values.pop(f"synthetic_{k}") for k in ("alpha", "train", "test")))
  opts = Options(**values, source=source, synthetic=synthetic)
  if opts.dataset == SYNTHETIC and opts.augmentation != "none":
    raise ValueError(f"config.data.augmentation={opts.augmentation!r} is invalid with "
                     "dataset='synthetic'; allowed: 'none'")
  if (opts.dataset != SYNTHETIC and DATASETS[opts.dataset].shape is None
      and opts.augmentation != "lw224" and not opts.image_size):
    raise ValueError(
      f"config.data.augmentation={opts.augmentation!r} on {opts.dataset} (images of varying size) "
      "needs data.image_size; or use augmentation='lw224'")
  return opts
