"""Placing data on the devices: the 1-D 'data' mesh, index batches, padded evaluation batches."""

from __future__ import annotations

import numpy as np
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from reinit_jax import data as D


class Placement:
  """The mesh of all devices with one axis 'data': batches split over it, the rest replicated."""

  def __init__(self):
    self.mesh = Mesh(np.array(jax.devices()), ("data",))
    self.replicated = NamedSharding(self.mesh, P())
    self.n = self.mesh.size

  def batch(self, ndim: int, axis: int) -> NamedSharding:
    """Sharding of an array whose dimension ``axis`` is the batch."""
    spec = [None] * ndim
    spec[axis] = "data"
    return NamedSharding(self.mesh, P(*spec))

  def replicate(self, tree):
    """Every array of ``tree`` on every device (host arrays: see :meth:`put`)."""
    return jax.tree.map(lambda a: self.put(a, self.replicated), tree)

  def put(self, a, sharding: NamedSharding):
    """A host array, the same in every process, as a global array of ``sharding``.

    Each process copies only its devices' slices. ``jax.device_put`` does the same on one process,
    but on several it first gathers the whole array from every process to check they agree (a
    collective moving P copies: a data set replicated on a pod would be gathered P times).
    """
    if jax.process_count() == 1 or not isinstance(a, np.ndarray):
      return jax.device_put(a, sharding)
    return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])


def train_indices(seeds, first_epoch: int, num_epochs: int, n: int, batch_size: int) -> np.ndarray:
  """Index batches of ``num_epochs`` consecutive (global) epochs for every seed: (S, steps, B).

  Epoch numbers are global (stage t's epoch e is (t−1)·E + e), so every stage draws new orders.
  A full batch (``batch_size == n``, gradient descent as in [LW] §1.1) has no order to draw: every
  step takes the rows in their stored order (drawing a permutation per seed and step cost more
  host time than the step itself on the synthetic task).
  """
  if batch_size == n:
    return np.broadcast_to(np.arange(n, dtype=np.int32), (len(seeds), num_epochs, n))
  return np.stack([np.concatenate([D.epoch_indices(int(s), first_epoch + j, n, batch_size)
                                   for j in range(num_epochs)]) for s in seeds]).astype(np.int32)


def eval_batches(n: int, batch_size: int, multiple: int) -> tuple[np.ndarray, np.ndarray]:
  """All ``n`` examples in ``nb`` padded batches: indices (nb, Be) int32, weights (nb, Be) float32.

  ``Be`` is ``min(batch_size, n)`` rounded up to a multiple of the device count; padding rows point
  at example 0 with weight 0.
  """
  be = -(-max(min(batch_size, n), 1) // multiple) * multiple
  nb = max(-(-n // be), 1)
  idx = np.zeros(nb * be, np.int32)
  w = np.zeros(nb * be, np.float32)
  idx[:n] = np.arange(n)
  w[:n] = 1.0
  return idx.reshape(nb, be), w.reshape(nb, be)


def epochs_per_call(epochs_per_stage: int, steps_per_epoch: int, max_steps: int) -> int:
  """The largest divisor g of the stage's epochs with g·steps_per_epoch ≤ max_steps (≥ 1).

  A divisor keeps every call of a run the same shape, so the scanned step compiles once.
  """
  best = 1
  for g in range(1, epochs_per_stage + 1):
    if epochs_per_stage % g == 0 and g * steps_per_epoch <= max_steps:
      best = g
  return best
