"""Augmentation presets and normalization, on the device (jax) and in tf.data ([Z], [LW] §3).

Presets: ``none``; ``cifar`` ([Z]: random horizontal flip, then a random crop of the original size
after zero-padding 4 pixels); ``flip`` (the flip alone: a small network that flattens its 28×28
feature maps into a dense layer fits the ±4-pixel shifts of ``cifar`` too slowly for a CPU budget,
results/README.md (f)); ``lw224`` ([LW]: evaluation resizes to 224×224; training flips, resizes
to 248×248 and takes a random 224×224 crop). Then ``(x/255 − μ)/σ`` with μ = (0.485, 0.456, 0.406),
σ = (0.229, 0.224, 0.225). For 1-channel images μ and σ are the means of those triples (0.449,
0.226): a grey pixel is normalized like the RGB pixel with three equal channels would be on average.

Both paths split augmentation into *decisions* and their *application*. Decisions are per example:
``flip`` (bool) and a crop ``offset`` (dy, dx), uniform in ``{0..8}`` for cifar (2·pad) and in
``{0..24}`` for lw224 (248 − 224). The device path draws them with ``jax.random`` from the step key;
the tf.data path draws them with stateless TF ops from (seed, epoch, example index). Given the same
decisions both paths produce the same pixels (tested); the draws have the same distribution.

Resizing is bilinear with antialiasing when shrinking (``jax.image.resize``,
``tf.image.resize(antialias=True)``), on [0, 1] floats, before the flip/crop.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax.data.registry import CIFAR_PAD, LW_RESIZE, LW_SIZE

MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)


def mean_std(channels: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel μ, σ for ``channels`` ∈ {1, 3}; float32 ``(channels,)`` each."""
  if channels == 3:
    return np.asarray(MEAN_RGB, np.float32), np.asarray(STD_RGB, np.float32)
  if channels == 1:
    return (np.asarray([np.mean(MEAN_RGB)], np.float32),
            np.asarray([np.mean(STD_RGB)], np.float32))
  raise ValueError(f"channels={channels}; normalization supports 1 or 3")


def max_offset(preset: str) -> int:
  """Largest crop offset (inclusive) of a preset: 8 for cifar, 24 for lw224, 0 for none and flip."""
  return {"none": 0, "flip": 0, "cifar": 2 * CIFAR_PAD, "lw224": LW_RESIZE - LW_SIZE}[preset]


def draw(key, batch: int, preset: str):
  """Per-example decisions: ``flip`` bool ``(B,)``, ``offset`` int32 ``(B, 2)`` (see module doc).

  ``key`` is split once into (flip key, crop key); flips are Bernoulli(1/2), offsets uniform.
  """
  k_flip, k_crop = jax.random.split(key)
  flip = jax.random.bernoulli(k_flip, 0.5, (batch,))
  offset = jax.random.randint(k_crop, (batch, 2), 0, max_offset(preset) + 1, dtype=jnp.int32)
  return flip, offset


def _resize(x, size):
  b, _, _, c = x.shape
  if x.shape[1:3] == (size, size):
    return x
  return jax.image.resize(x, (b, size, size, c), "bilinear", antialias=True)


def _crop(x, offset, size):
  def one(img, off):
    return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (size, size, img.shape[-1]))
  return jax.vmap(one)(x, offset)


def apply(x, flip, offset, *, preset: str, train: bool, image_size: int | None = None):
  """Applies given decisions to a raw batch and normalizes (pure jax, jit-able).

  Shapes: ``x`` uint8 or float in [0, 255], ``(B, H, W, C)``; ``flip`` ``(B,)``; ``offset``
  ``(B, 2)``. Returns float32 ``(B, *registry.output_shape(preset, (H, W, C), image_size))``.
  """
  x = jnp.asarray(x).astype(jnp.float32) / 255.0
  if preset == "lw224":
    size = LW_RESIZE if train else LW_SIZE
    x = _resize(x, size)
  elif image_size:
    x = _resize(x, int(image_size))
  if train and preset != "none":
    x = jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
    if preset == "cifar":
      size = x.shape[1]
      x = jnp.pad(x, ((0, 0), (CIFAR_PAD, CIFAR_PAD), (CIFAR_PAD, CIFAR_PAD), (0, 0)))
      x = _crop(x, offset, size)
    elif preset == "lw224":
      x = _crop(x, offset, LW_SIZE)
  mean, std = mean_std(x.shape[-1])
  return (x - mean) / std


def augment(key, x, train: bool, *, preset: str, image_size: int | None = None, image: bool = True):
  """``Data.augment``: draw decisions from ``key`` and apply them (module docstring); jit-able.

  For feature data (``image=False``, the synthetic task) it is the identity cast to float32.
  Shapes: ``x`` ``(B, H, W, C)`` → float32 ``(B, H', W', C)``.
  """
  if not image:
    return jnp.asarray(x, jnp.float32)
  flip, offset = draw(key, x.shape[0], preset)
  return apply(x, flip, offset, preset=preset, train=train, image_size=image_size)


def make_augment(preset: str, image_size: int | None, image: bool):
  """``augment`` with the data set's static settings bound: ``fn(key, x, train)``."""
  return functools.partial(augment, preset=preset, image_size=image_size, image=image)


# --- tf.data path -------------------------------------------------------------------------------


def tf_draw(seed, preset: str):
  """Per-example decisions from a stateless TF seed (int32/64 ``(2,)``): ``(flip, offset)``."""
  import tensorflow as tf
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
  flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
  offset = tf.random.stateless_uniform(
    [2], seeds[1], minval=0, maxval=max_offset(preset) + 1, dtype=tf.int32)
  return flip, offset


def tf_apply(img, flip, offset, *, preset: str, train: bool, image_size: int | None = None):
  """tf.data counterpart of :func:`apply` for one image ``(H, W, C)`` → float32 ``(H', W', C)``."""
  import tensorflow as tf
  channels = int(img.shape[-1])
  x = tf.cast(img, tf.float32) / 255.0
  size = None
  if preset == "lw224":
    size = LW_RESIZE if train else LW_SIZE
  elif image_size:
    size = int(image_size)
  if size is not None:
    x = tf.image.resize(x, (size, size), "bilinear", antialias=True)
  if train and preset != "none":
    x = tf.cond(flip, lambda: x[:, ::-1, :], lambda: x)
    if preset in ("cifar", "lw224"):
      if preset == "cifar":
        size = tf.shape(x)[0]
        x = tf.pad(x, [[CIFAR_PAD, CIFAR_PAD], [CIFAR_PAD, CIFAR_PAD], [0, 0]])
      else:
        size = LW_SIZE
      x = x[offset[0]:offset[0] + size, offset[1]:offset[1] + size, :]
  mean, std = mean_std(channels)
  return (x - mean) / std
