"""Reading TFDS data sets: preparation with one-line errors, numpy loading, tf.data streaming.

The in-memory path reads a whole split once into uint8/int32 numpy arrays and caches them as
``.npy`` files inside the prepared data set's folder, so later runs skip image decoding. The
streaming path (ImageNet-sized data, SPEC §5) reads encoded examples with tf.data, decodes and
augments them per example (decisions from (seed, epoch, example index), see ``augment``), and
prefetches; each process reads only its share of the split (``splits.process_share``).
"""

from __future__ import annotations

import os
import re

import numpy as np
import tensorflow_datasets as tfds

from reinit_jax.data import augment as aug
from reinit_jax.data import fashion_mnist, tiny_imagenet
from reinit_jax.data.registry import Spec


def _one_line(err: BaseException) -> str:
  text = str(err).strip().splitlines()
  return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def get_builder(name: str, spec: Spec, data_dir: str | None):
  """The TFDS builder for a registry entry (Debian fashion_mnist and Tiny ImageNet are ours)."""
  tfds.disable_progress_bar()
  try:
    if name == "fashion_mnist":
      return fashion_mnist.builder(data_dir)
    if name == "tiny_imagenet":
      return tiny_imagenet.TinyImagenet(data_dir=data_dir)
    return tfds.builder(spec.tfds_name, data_dir=data_dir)
  except Exception as err:  # TFDS raises many types; the user needs one line.
    raise ValueError(f"{name}: cannot create the TFDS builder ({_one_line(err)})") from None


def prepare(name: str, builder, manual_dir: str | None) -> None:
  """Prepares ``builder`` unless already prepared; raises a one-line ValueError on failure.

  fashion_mnist prepares from Debian's files (``apt-get install dataset-fashion-mnist``); other
  data sets use TFDS's own download/manual-dir logic, which fails offline unless prepared data or
  the manual files are present.
  """
  if builder.is_prepared():
    return
  if name == "fashion_mnist":
    config = fashion_mnist.download_config(manual_dir)
  else:
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
  try:
    builder.download_and_prepare(download_config=config)
  except Exception as err:
    hint = (" (fashion_mnist files corrupt? reinstall dataset-fashion-mnist)"
            if name == "fashion_mnist" else
            f" (no network here: put prepared data under data_dir or the manual files in "
            f"{manual_dir or 'the manual dir'})")
    raise ValueError(f"{name}: TFDS preparation failed{hint}: {_one_line(err)}") from None


def load_numpy(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
  """A whole split as ``(x uint8 (n, H, W, C), y int32 (n,))``, cached next to the TFDS data."""
  tag = re.sub(r"[^A-Za-z0-9_]+", "_", split)
  cache = os.path.join(os.fspath(builder.data_path), f"reinit_jax_{tag}")
  if os.path.exists(cache + "_x.npy") and os.path.exists(cache + "_y.npy"):
    return np.load(cache + "_x.npy"), np.load(cache + "_y.npy")
  try:
    ds = builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
    x, y = tfds.as_numpy(ds)
  except Exception as err:
    raise ValueError(f"{builder.name}: reading split {split!r} failed: {_one_line(err)}") from None
  x, y = np.asarray(x, np.uint8), np.asarray(y, np.int32)
  try:  # A read-only data dir just means no cache.
    for suffix, arr in (("_x.npy", x), ("_y.npy", y)):
      np.save(cache + suffix + ".tmp.npy", arr)
      os.replace(cache + suffix + ".tmp.npy", cache + suffix)
  except OSError:
    pass
  return x, y


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
