"""Continual task streams as pure functions of (seed, task), drawn on the device.

Kumar et al. 2023 and Dohare et al. 2024 measure plasticity on a stream of tasks built from one
data set: *permuted* inputs (task k permutes the pixels of every image with its own fixed random
permutation) and *random labels* (task k redraws every training label uniformly). Both are jax
functions of ``(seed, task)`` — traced integers allowed — so a scan over hundreds of tasks, vmapped
over seeds, compiles once and never stores a task.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_PERMUTE, _RELABEL = 0x9E3, 0x1AB


def task_key(seed, task, stream: int) -> jax.Array:
  """The PRNG key of ``task`` of ``stream`` for ``seed`` (int or traced int32 each)."""
  key = jax.random.fold_in(jax.random.key(0), stream)
  return jax.random.fold_in(jax.random.fold_in(key, seed), task)


def permutation(seed, task, size: int) -> jax.Array:
  """Task ``task``'s pixel permutation, int32 (size,): a bijection of range(size)."""
  return jax.random.permutation(task_key(seed, task, _PERMUTE), size).astype(jnp.int32)


def permuted_inputs(x: jax.Array, seed, task) -> jax.Array:
  """``x`` (B, ...) with the features of every example permuted by the task's permutation."""
  flat = x.reshape(x.shape[0], -1)
  return jnp.take(flat, permutation(seed, task, flat.shape[1]), axis=1).reshape(x.shape)


def random_labels(n: int, seed, task, num_classes: int) -> jax.Array:
  """The labels of task ``task``: int32 (n,), uniform over ``num_classes``, one per example."""
  return jax.random.randint(task_key(seed, task, _RELABEL), (n,), 0, num_classes, jnp.int32)
