"""Threefry-2x32 emitted unrolled: the bits of ``jax.random``'s threefry, 3× faster on XLA:CPU.

XLA:CPU lowers jax's threefry hash as a loop of five steps, which it runs about 3× slower than the
same twenty rounds written out; every fresh θ_init, every random subset and S&P's noise is made of
these hashes. :func:`fast_key` wraps a threefry key's data in a PRNG implementation whose
``split`` and ``random_bits`` are the unrolled hash and whose ``seed`` and ``fold_in`` are
threefry's own, so every draw equals ``jax.random``'s with the key it wraps (tests/test_backends.py
and tests/test_continual.py compare them). ``backends.draw_key`` applies it on the CPU backend only.
"""

from __future__ import annotations

import functools

import jax
import jax.extend  # noqa: F401  (jax.extend.random: not loaded by `import jax`)
import jax.numpy as jnp
import numpy as np


def _rotate_left(v, d: int):
  return (v << jnp.uint32(d)) | (v >> jnp.uint32(32 - d))


def _threefry2x32(k1, k2, x1, x2):
  """Threefry-2x32 with 20 rounds (Salmon et al. 2011), as jax's threefry computes it, unrolled."""
  rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
  ks = (k1, k2, k1 ^ k2 ^ jnp.uint32(0x1BD11BDA))
  x1, x2 = x1 + ks[0], x2 + ks[1]
  for i in range(5):
    for r in rotations[i % 2]:
      x1 = x1 + x2
      x2 = x1 ^ _rotate_left(x2, r)
    x1, x2 = x1 + ks[(i + 1) % 3], x2 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
  return x1, x2


def _counts(shape):
  """The 64-bit iota over ``shape`` as (high, low) uint32 words (jax's partitionable counters)."""
  size = int(np.prod(shape, dtype=np.int64))
  if size >= 2**32:
    raise NotImplementedError(f"{size} counters: more than 2**32")
  lo = jax.lax.iota(jnp.uint32, max(size, 1))[:size].reshape(shape)
  return jnp.zeros_like(lo), lo


def _split(key, shape):
  hi, lo = _counts(shape)
  a, b = _threefry2x32(key[0], key[1], hi, lo)
  return jnp.stack([a, b], axis=a.ndim)


def _random_bits(key, bit_width, shape):
  if bit_width != 32:
    return jax.extend.random.threefry_prng_impl.random_bits(key, bit_width, shape)
  hi, lo = _counts(shape)
  a, b = _threefry2x32(key[0], key[1], hi, lo)
  return a ^ b


@functools.cache
def _unrolled_threefry():
  base = jax.extend.random.threefry_prng_impl
  return jax.extend.random.define_prng_impl(
    key_shape=(2,), seed=base.seed, split=_split, random_bits=_random_bits,
    fold_in=base.fold_in, name="threefry2x32_unrolled", tag="fry_u")


def fast_key(key: jax.Array) -> jax.Array:
  """``key`` (a threefry key: raw uint32 (..., 2) or typed) as a typed key of the same bits whose
  split and random bits are emitted unrolled. With ``jax_threefry_partitionable`` off (jax's
  older counter layout, which the unrolled counters do not follow) ``key`` is returned unchanged."""
  if not jax.config.jax_threefry_partitionable:
    return key
  data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
  return jax.random.wrap_key_data(data, impl=_unrolled_threefry())
