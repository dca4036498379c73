"""``data.build(cfg) -> Data``: the one entry point of reinit_jax.data (docs/CONTRACTS.md, Data).

Order of operations (all seeded by ``cfg.seed``, so every method of a seed sees the same data):
the TFDS training split → validation hold-out (in memory: a seeded random ``validation_fraction``;
streaming: its last ``validation_fraction``, as a TFDS slice) → ``train_subset`` (the first n of the
remaining, shuffled, examples) → label noise on those training examples ([Z] §6) → C contiguous
chunks, stage t seeing chunks 1..t ([AA]; [Z] A.2). Validation and test labels stay clean.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import numpy as np

from reinit_jax.data import augment as aug
from reinit_jax.data import cache, fashion_mnist, registry, splits, synthetic


class Meta(NamedTuple):
  """Static facts of a built data set; ``input_shape`` is the model's input (after the preset)."""

  name: str
  num_classes: int
  input_shape: tuple[int, ...]
  num_train: int
  num_validation: int
  num_test: int
  in_memory: bool


@dataclasses.dataclass(frozen=True)
class Split:
  """In memory: ``x`` (uint8 images ``(n, H, W, C)`` or float32 features ``(n, D)``), ``y`` int32."""

  x: np.ndarray
  y: np.ndarray

  def __len__(self) -> int:
    return len(self.y)


@dataclasses.dataclass(frozen=True)
class StreamSplit:
  """Streaming: examples ``[lo, hi)`` of a TFDS split, read with tf.data (``batches``)."""

  builder: object
  split: str
  lo: int
  hi: int
  labels: np.ndarray | None  # absolute-index label table (noisy labels) or None
  train: bool
  preset: str
  image_size: int | None
  channels: int

  def __len__(self) -> int:
    return self.hi - self.lo

  def batches(self, seed: int, epoch: int, batch_size: int, start_step: int = 0,
              process_index: int | None = None, process_count: int | None = None):
    """Yields this process's ``(x float32 (b, H', W', C), y int32 (b,))`` batches, prefetched.

    ``batch_size`` is the global batch; each of ``process_count`` processes reads its share of
    the examples (``splits.process_share``) and yields ``b = batch_size // process_count`` rows.
    Starting at ``start_step`` yields exactly the batches a run from 0 yields after that many.
    """
    from reinit_jax.data import tfds_io
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    if batch_size % pc:
      raise ValueError(f"batch_size={batch_size} must be a multiple of process_count={pc}")
    start, stop = splits.process_share(self.hi - self.lo, pi, pc)
    start, stop = self.lo + start, self.lo + stop
    return tfds_io.stream(
      self.builder, f"{self.split}[{start}:{stop}]", start=start, labels=self.labels, seed=seed,
      epoch=epoch, batch_size=batch_size // pc, start_step=start_step, train=self.train,
      preset=self.preset, image_size=self.image_size, channels=self.channels)


@dataclasses.dataclass(frozen=True)
class Data:
  """A built data set (docs/CONTRACTS.md, Data).

  ``train(stage)`` is the stage-``stage`` view (chunks 1..stage, all of them once stage ≥ C);
  ``noisy_indices`` index the full training view; ``train_clean_y`` holds its labels before noise.
  ``augment(key, x, train)`` is pure jax (jit it in the step).
  """

  meta: Meta
  validation: Split | StreamSplit
  test: Split | StreamSplit
  augment: Callable
  noisy_indices: np.ndarray
  train_clean_y: np.ndarray | None
  chunk_ends: np.ndarray
  _train: Split | StreamSplit

  def train(self, stage: int = 1) -> Split | StreamSplit:
    """Training view of online stage ``stage`` ≥ 1: chunks 1..min(stage, C)."""
    if int(stage) < 1:
      raise ValueError(f"stage={stage} must be >= 1")
    end = int(self.chunk_ends[min(int(stage), len(self.chunk_ends)) - 1])
    t = self._train
    if isinstance(t, Split):
      return Split(t.x[:end], t.y[:end])
    return dataclasses.replace(t, hi=t.lo + end)


def build(cfg) -> Data:
  """Builds the data of ``cfg`` (fields in docs/CONTRACTS.md); one-line ValueError on bad input.

  In-memory data sets come from the array cache (``cache``, numpy only); a split not cached yet is
  read from its source (:func:`_source`) and cached. Streaming needs TensorFlow and TFDS.
  """
  opts = registry.options(cfg)
  if opts.dataset == registry.SYNTHETIC:
    (x, y), test = synthetic.generate(opts.seed, opts.synthetic.alpha, opts.synthetic.train,
                                      opts.synthetic.test)
    return _in_memory(opts, x, y, test, synthetic.NUM_CLASSES, image=False)
  spec = registry.DATASETS[opts.dataset]
  if registry.in_memory(opts):
    root, read = cache.data_root(opts.source.data_dir), _source(opts, spec)
    x, y = cache.load(root, opts.dataset, spec.train_split, lambda: read(spec.train_split))
    test = cache.load(root, opts.dataset, spec.test_split, lambda: read(spec.test_split))
    return _in_memory(opts, x, y, test, spec.num_classes, image=True)
  tfds_io = _tfds_io(opts.dataset, "streaming (in_memory=False) reads TFDS with tf.data and")
  builder = tfds_io.get_builder(opts.dataset, spec, opts.source.data_dir)
  tfds_io.prepare(opts.dataset, builder, opts.source.manual_dir, opts.source.download)
  return _streaming(opts, spec, builder)


def _tfds_io(dataset: str, what: str):
  """``reinit_jax.data.tfds_io``, or a one-line ValueError when TFDS cannot be imported."""
  try:
    from reinit_jax.data import tfds_io
  except ImportError as e:
    raise ValueError(f"{dataset}: {what} needs tensorflow and tensorflow_datasets, which cannot be "
                     f"imported ({type(e).__name__}: {e}); `pip install tensorflow-cpu "
                     "tensorflow-datasets`") from None
  return tfds_io


def _source(opts, spec) -> Callable:
  """``read(split) -> (x, y, source)`` from the data set's source, for splits not cached yet.

  fashion_mnist: Debian's files read with numpy (the same arrays as TFDS's, see ``fashion_mnist``)
  when they are installed, or when TFDS is missing (then the error names the Debian package).
  Otherwise the TFDS builder, made and prepared once on first use.
  """
  made = {}

  def read(split):
    if opts.dataset == "fashion_mnist" and fashion_mnist.has_files(opts.source.manual_dir):
      x, y = fashion_mnist.read_split(split, opts.source.manual_dir)
      where = opts.source.manual_dir or fashion_mnist.DEFAULT_MANUAL_DIR
      return x, y, f"Debian dataset-fashion-mnist ({where})"
    try:
      tfds_io = _tfds_io(opts.dataset, f"reading it (no array cache in "
                         f"{cache.directory(cache.data_root(opts.source.data_dir), opts.dataset)} yet)")
    except ValueError:
      if opts.dataset == "fashion_mnist":
        fashion_mnist.check_manual_dir(opts.source.manual_dir)  # raises the line naming the Debian package
      raise
    if "builder" not in made:
      builder = tfds_io.get_builder(opts.dataset, spec, opts.source.data_dir)
      tfds_io.prepare(opts.dataset, builder, opts.source.manual_dir, opts.source.download)
      made["builder"] = builder
    return tfds_io.read_split(made["builder"], split)

  return read


def _check_subset(opts, n):
  if opts.train_subset is not None and int(opts.train_subset) > n:
    raise ValueError(f"train_subset={opts.train_subset} exceeds the {n} training examples")
  return n if opts.train_subset is None else int(opts.train_subset)


def _in_memory(opts, x, y, test, num_classes, image: bool) -> Data:
  train_idx, val_idx = splits.holdout(opts.seed, len(y), opts.validation_fraction)
  train_idx = train_idx[: _check_subset(opts, len(train_idx))]
  x_train, y_clean = x[train_idx], np.asarray(y[train_idx], np.int32)
  y_train, noisy = splits.label_noise(opts.seed, y_clean, opts.label_noise, num_classes)
  ends = splits.chunk_ends(len(y_train), opts.chunks)
  shape = (registry.output_shape(opts.augmentation, x.shape[1:], opts.image_size) if image
           else x.shape[1:])
  meta = Meta(opts.dataset, num_classes, tuple(shape), len(y_train), len(val_idx), len(test[1]), True)
  return Data(
    meta=meta, validation=Split(x[val_idx], np.asarray(y[val_idx], np.int32)),
    test=Split(test[0], np.asarray(test[1], np.int32)),
    augment=aug.make_augment(opts.augmentation, opts.image_size, image),
    noisy_indices=noisy, train_clean_y=y_clean, chunk_ends=ends, _train=Split(x_train, y_train))


def _streaming(opts, spec, builder) -> Data:
  if not all(s.isidentifier() for s in (spec.train_split, spec.test_split)):
    raise ValueError(f"{opts.dataset}: streaming needs whole TFDS splits, got {spec.train_split}")
  n = builder.info.splits[spec.train_split].num_examples
  n_val = int(round(opts.validation_fraction * n))
  n_train = _check_subset(opts, n - n_val)
  idx, new = splits.noise_draw(opts.seed, n_train, opts.label_noise, spec.num_classes)
  labels = None
  if len(idx):  # -1: keep the stored label (see tfds_io.stream).
    labels = np.full(n_train, -1, np.int32)
    labels[idx] = new
  ends = splits.chunk_ends(n_train, opts.chunks)
  shape = registry.example_shape(opts)[1]
  channels = shape[-1]
  n_test = builder.info.splits[spec.test_split].num_examples
  common = dict(builder=builder, labels=None, preset=opts.augmentation,
                image_size=opts.image_size, channels=channels)
  meta = Meta(opts.dataset, spec.num_classes, tuple(shape), n_train, n_val, n_test, False)
  return Data(
    meta=meta,
    validation=StreamSplit(split=spec.train_split, lo=n - n_val, hi=n, train=False, **common),
    test=StreamSplit(split=spec.test_split, lo=0, hi=n_test, train=False, **common),
    augment=aug.make_augment(opts.augmentation, opts.image_size, True),
    noisy_indices=idx, train_clean_y=None, chunk_ends=ends,
    _train=StreamSplit(split=spec.train_split, lo=0, hi=n_train, train=True,
                       **{**common, "labels": labels}))


def local_rows(batch_indices: np.ndarray, process_index: int | None = None,
               process_count: int | None = None) -> np.ndarray:
  """This process's contiguous share of a global batch's indices ``(B,)`` → ``(B / P,)``."""
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  if len(batch_indices) % pc:
    raise ValueError(f"batch_size={len(batch_indices)} must be a multiple of process_count={pc}")
  start, stop = splits.process_share(len(batch_indices), pi, pc)
  return batch_indices[start:stop]


def global_batch(local, sharding, global_batch_size: int | None = None, axis: int = 0):
  """Assembles per-process batches into one global jax.Array (batch axis ``axis`` sharded).

  ``local`` is an array or pytree of arrays ``(B / P, ...)`` (batch axis ``axis``, e.g. 1 for a
  stack of steps ``(k, B / P, ...)``); with one process it is the whole batch.
  """
  def one(a):
    a = np.asarray(a)
    b = global_batch_size or a.shape[axis] * jax.process_count()
    shape = a.shape[:axis] + (b,) + a.shape[axis + 1:]
    return jax.make_array_from_process_local_data(sharding, a, shape)
  return jax.tree.map(one, local)
