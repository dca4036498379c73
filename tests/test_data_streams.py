"""Continual task streams: deterministic per (seed, task), different across tasks and seeds,
traceable (one compilation for a scan over tasks, vmapped over seeds)."""

import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax.data import streams


def test_permutation_is_a_bijection_fixed_per_task_and_new_per_task():
  p = np.asarray(streams.permutation(3, 7, 784))
  assert sorted(p.tolist()) == list(range(784))
  np.testing.assert_array_equal(p, streams.permutation(3, 7, 784))
  assert (p != np.asarray(streams.permutation(3, 8, 784))).mean() > 0.9
  assert (p != np.asarray(streams.permutation(4, 7, 784))).mean() > 0.9


def test_permuted_inputs_moves_every_pixel_of_every_image_the_same_way():
  x = jnp.arange(2 * 4 * 4, dtype=jnp.float32).reshape(2, 4, 4, 1)
  out = np.asarray(streams.permuted_inputs(x, 0, 1))
  perm = np.asarray(streams.permutation(0, 1, 16))
  np.testing.assert_array_equal(out.reshape(2, 16), np.asarray(x).reshape(2, 16)[:, perm])


def test_random_labels_are_uniform_and_redrawn_per_task():
  a, b = np.asarray(streams.random_labels(20000, 0, 1, 10)), np.asarray(
    streams.random_labels(20000, 0, 2, 10))
  counts = np.bincount(a, minlength=10)
  assert counts.min() > 1800 and counts.max() < 2200  # 2,000 ± 4.5σ (σ = 42)
  assert 0.85 < (a != b).mean() < 0.95  # independent draws agree 10% of the time


def test_a_scan_over_tasks_vmapped_over_seeds_compiles_once():
  traces = []

  def one_seed(seed):
    def body(carry, task):
      traces.append(1)
      return carry + streams.permutation(seed, task, 10).sum(), None
    return jax.lax.scan(body, jnp.int32(0), jnp.arange(300))[0]

  out = jax.jit(jax.vmap(one_seed))(jnp.arange(3))
  assert len(traces) == 1 and (np.asarray(out) == 300 * 45).all()
