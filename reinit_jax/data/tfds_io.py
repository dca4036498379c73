"""TFDS: preparation that fails fast offline, reading whole splits, tf.data streaming.

The one module of reinit_jax.data that imports TensorFlow Datasets (and, when it reads, TensorFlow).
It is imported only to prepare or read a TFDS data set whose arrays are not cached yet
(``cache``), and for streaming; a prepared in-memory data set needs neither.

Preparation never downloads unless asked (``config.data.download=True`` or ``REINIT_JAX_DOWNLOAD=1``): a
data set that is neither prepared nor has its files in the manual directory fails at once with
one line naming the files and the folder to put them in, where TFDS would retry the network for
minutes. Failed preparations leave no empty folders in the data directory or the temp directory.

The streaming path (ImageNet-sized data, [LW] §3 data sets) reads encoded examples with tf.data,
decodes and augments them per example (decisions from (seed, epoch, example index), see
``augment``), and prefetches; each process reads only its share of the split
(``splits.process_share``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from reinit_jax.data import augment as aug
from reinit_jax.data import cache
from reinit_jax.data import fashion_mnist, tiny_imagenet
from reinit_jax.data.registry import DOWNLOAD_ENV, Spec


class DebianFashionMnist(tfds_mnist.FashionMNIST, skip_registration=True):
  """TFDS ``fashion_mnist`` 3.0.1 whose registered checksums are those of Debian's files.

  TFDS's download manager finds each file in the manual directory by its registered file name,
  verifies it, and prepares the usual ``fashion_mnist`` data (same features, splits and example
  order) with no network access. The class keeps the TFDS name (prepared data is shared with the
  stock builder) and is therefore not registered.
  """

  name = "fashion_mnist"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"`{fashion_mnist.INSTALL_HINT}` puts the files in {fashion_mnist.DEFAULT_MANUAL_DIR}.")

  @tfds.core.utils.classproperty
  @classmethod
  def url_infos(cls):
    # The stock builder downloads URL + file name; registering these URLs with the Debian
    # checksums and file names makes the download manager take the files from manual_dir.
    return {
      cls.URL + fname: tfds.core.download.checksums.UrlInfo(size=size, checksum=sha, filename=fname)
      for fname, (size, sha) in fashion_mnist.DEBIAN_FILES.items()
    }


def _one_line(err: BaseException) -> str:
  text = str(err).strip().splitlines()
  return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _dirs(root: str) -> set[str]:
  return {d for d, _, _ in os.walk(root)} if os.path.isdir(root) else set()


@contextlib.contextmanager
def _tidy(root: str):
  """Runs a TFDS call leaving no new empty folder behind.

  TFDS makes an empty ``tmp*tfds`` folder in the temp directory for every builder of an unprepared
  data set (``DatasetInfo.initialize_from_bucket``); the call gets a private temp directory,
  removed afterwards. On failure, the folders it created under the data directory ``root`` that
  are still empty are removed (``downloads/``, ``<name>/``...).
  """
  before = _dirs(root)
  old, scratch = tempfile.tempdir, tempfile.mkdtemp(prefix="reinit_jax_tfds_")
  tempfile.tempdir = scratch
  try:
    yield
  except BaseException:
    for d, _, _ in os.walk(root, topdown=False):
      if d not in before:
        with contextlib.suppress(OSError):
          os.rmdir(d)  # only succeeds on an empty folder
    raise
  finally:
    tempfile.tempdir = old
    shutil.rmtree(scratch, ignore_errors=True)


def get_builder(name: str, spec: Spec, data_dir: str | None):
  """The TFDS builder for a registry entry (Debian fashion_mnist and Tiny ImageNet are ours)."""
  tfds.disable_progress_bar()
  root = cache.data_root(data_dir)
  try:
    with _tidy(root):
      if name == "fashion_mnist":
        return DebianFashionMnist(data_dir=data_dir)
      if name == "tiny_imagenet":
        return tiny_imagenet.TinyImagenet(data_dir=data_dir)
      return tfds.builder(spec.tfds_name, data_dir=data_dir)
  except Exception as err:  # TFDS raises many types; the user needs one line.
    raise ValueError(f"{name}: cannot create the TFDS builder ({_one_line(err)})") from None


class _DropVariantWarning(logging.Filter):
  """TFDS warns that an unprepared data set's folder "has no dataset_info.json" while it looks for
  a prepared version; the one line that follows (not prepared, what to place where) says it all."""

  def filter(self, record):
    return "has no dataset_info.json" not in record.getMessage()


@contextlib.contextmanager
def _no_variant_warning():
  absl_logger, drop = logging.getLogger("absl"), _DropVariantWarning()
  absl_logger.addFilter(drop)
  try:
    yield
  finally:
    absl_logger.removeFilter(drop)


def _check_offline(name: str, builder, manual: str, root: str) -> None:
  """Raises one line naming what to place where unless the manual files for ``builder`` exist."""
  where = f"{name}: not prepared in {builder.data_path}"
  allow = f"or let TFDS download it with {DOWNLOAD_ENV}=1 (config.data.download=True)"
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    if os.path.isdir(manual) and os.listdir(manual):
      return
    how = " ".join(str(builder.MANUAL_DOWNLOAD_INSTRUCTIONS).split())[:200]
    raise ValueError(f"{where} and the manual directory {manual} is empty; place its files there "
                     f"({how})")
  try:
    files = [u.filename for u in (builder.url_infos or {}).values()]
  except Exception:  # noqa: BLE001 (no checksums registered: no file names to ask for)
    files = []
  if files and all(files):
    missing = sorted({f for f in files if not os.path.isfile(os.path.join(manual, f))})
    if not missing:
      return
    raise ValueError(f"{where} and downloads are off: place {', '.join(missing)} in {manual} "
                     f"(or a prepared {name}/ folder in {root}), {allow}")
  raise ValueError(f"{where} and downloads are off: copy a prepared {name}/ folder into {root} "
                   f"(`tfds build {name}` on a machine with network), {allow}")


def prepare(name: str, builder, manual_dir: str | None, download: bool = False) -> None:
  """Prepares ``builder`` unless already prepared; raises a one-line ValueError on failure.

  fashion_mnist prepares from Debian's files (``apt-get install dataset-fashion-mnist``). Other
  data sets prepare from the files in the manual directory (``manual_dir``, default
  ``<data_dir>/downloads/manual``); without them, and unless ``download``, it fails at once.
  """
  with _no_variant_warning():
    if builder.is_prepared():
      return
  root = os.fspath(builder.data_dir_root)
  if name == "fashion_mnist":
    manual = fashion_mnist.check_manual_dir(manual_dir)
  else:
    manual = os.path.expanduser(manual_dir or os.path.join(root, "downloads", "manual"))
    if not download:
      _check_offline(name, builder, manual, root)
  try:
    with _tidy(root):
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
  except Exception as err:
    hint = (" (fashion_mnist files corrupt? reinstall dataset-fashion-mnist)"
            if name == "fashion_mnist" else
            f" (offline? put prepared data under {root} or the manual files in {manual})")
    raise ValueError(f"{name}: TFDS preparation failed{hint}: {_one_line(err)}") from None


def read_split(builder, split: str) -> tuple[np.ndarray, np.ndarray, str]:
  """A whole split of a prepared builder: ``(x uint8 (n, H, W, C), y int32 (n,), source)``."""
  try:
    ds = builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
    x, y = tfds.as_numpy(ds)
  except Exception as err:
    raise ValueError(f"{builder.name}: reading split {split!r} failed: {_one_line(err)}") from None
  return (np.asarray(x, np.uint8), np.asarray(y, np.int32),
          f"TFDS {builder.name} {builder.version} in {builder.data_path}")


def stream(builder, split: str, *, start: int, labels: np.ndarray | None, seed: int, epoch: int,
           batch_size: int, start_step: int, train: bool, preset: str, image_size: int | None,
           channels: int, shuffle_buffer: int = 10000):
  """Yields ``(x float32 (B, H', W', C), y int32 (B,))`` numpy batches of ``split`` (tf.data).

  ``split`` is a TFDS slice (e.g. ``train[a:b]``) starting at absolute example ``start``; ``labels``
  (or None) replaces the stored labels, indexed by absolute example (label noise). Training
  batches are shuffled with a seed of (seed, epoch), augmented per example, and full (the remainder
  is dropped); evaluation batches are in order, unaugmented and keep the final partial batch.
  ``start_step`` skips whole batches before decoding, so resuming costs no image decoding.
  """
  import tensorflow as tf
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={"image": tfds.decode.SkipDecoding()})
  ds = ds.enumerate(start=start)
  table = None if labels is None else tf.constant(np.asarray(labels, np.int32))
  if train:
    ds = ds.shuffle(shuffle_buffer, seed=int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] % 2**31),
                    reshuffle_each_iteration=False)
  ds = ds.skip(start_step * batch_size)

  def decode(index, ex):
    img = tf.io.decode_image(ex["image"], channels=channels, expand_animations=False)
    img.set_shape([None, None, channels])  # decode_image leaves the channel count unknown
    label = tf.cast(ex["label"], tf.int32)
    if table is not None:  # Noisy labels; -1 marks examples that keep their stored label.
      new = tf.gather(table, index)
      label = tf.where(new >= 0, new, label)
    flip, offset = aug.tf_draw(tf.stack([tf.cast(seed * 100003 + epoch, tf.int64), index]), preset)
    x = aug.tf_apply(img, flip, offset, preset=preset, train=train, image_size=image_size)
    return x, label

  ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=train).prefetch(tf.data.AUTOTUNE)
  return ds.as_numpy_iterator()
