"""Placing data on the devices: the 1-D 'data' mesh, index batches, padded evaluation batches."""

from __future__ import annotations

import numpy as np
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reinit_jax import backends
from reinit_jax import data


class Placement:
  """The mesh ('runs', 'data'): the run axis of every per-seed array split over 'runs', batches
  over 'data', the rest replicated.

  ``runs = 1``: one 'data' axis over ``devices`` (default: all), batches split over it (data
  parallel). ``runs > 1`` (the CPU default, :func:`placement`): the seeds are split over ``runs``
  devices, each holding whole batches, and the jitted functions run their share of the seeds in
  ``shard_map`` (step.py), so a device computes exactly what one device computes for those seeds
  (bitwise; tests/test_train_devices.py).
  """

  def __init__(self, runs: int = 1, devices=None):
    devices = list(jax.devices() if devices is None else devices)
    if runs > 1:  # whole batches per device: the 'data' axis has size 1
      devices = devices[:runs]
    self.mesh = Mesh(np.array(devices).reshape(runs, -1), ("runs", "data"))
    self.replicated = NamedSharding(self.mesh, PartitionSpec())
    self.runs = runs
    self.n = self.mesh.shape["data"]  # the multiple a batch must be

  @property
  def runs_mesh(self):
    """The mesh the jitted functions split their seeds over (``shard_map``), or None."""
    return self.mesh if self.runs > 1 else None

  def key(self) -> list:
    """What a compiled function depends on (its cache key, train/compiled.py)."""
    return [self.runs, [int(d.id) for d in self.mesh.devices.flat]]

  def batch(self, ndim: int, axis: int, seeded: bool = False) -> NamedSharding:
    """Sharding of an array whose dimension ``axis`` is the batch (and dimension 0 the seeds,
    when ``seeded``)."""
    spec = [None] * ndim
    spec[axis] = "data"
    if seeded and self.runs > 1:
      spec[0] = "runs"
    return NamedSharding(self.mesh, PartitionSpec(*spec))

  def replicate(self, tree):
    """Every array of ``tree`` on every device (host arrays: see :meth:`put`)."""
    return jax.tree.map(lambda a: self.put(a, self.replicated), tree)

  def seeded(self, tree):
    """Every array of ``tree``, whose axis 0 is the seeds, split over 'runs' (replicated over
    'data')."""
    # One run device: replicated, the sharding jit gives its outputs (an equal but differently
    # written sharding would make jit compile its functions again).
    sh = NamedSharding(self.mesh, PartitionSpec("runs")) if self.runs > 1 else self.replicated
    return jax.tree.map(lambda a: self.put(a, sh), tree)

  def put(self, a, sharding: NamedSharding):
    """A host array, the same in every process, as a global array of ``sharding``.

    Each process copies only its devices' slices. ``jax.device_put`` does the same on one process,
    but on several it first gathers the whole array from every process to check they agree (a
    collective moving P copies: a data set replicated on a pod would be gathered P times).
    """
    if jax.process_count() == 1 or not isinstance(a, np.ndarray):
      return jax.device_put(a, sharding)
    return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])


def placement(policy: str, num_seeds: int, streaming: bool = False) -> Placement:
  """The :class:`Placement` of a run for ``run.mesh`` = ``policy``.

  'data': every device on the 'data' axis (batches split). 'runs': the seeds split over as many
  devices as divide the seed count (at most all), whole batches per device. 'auto': the backend's
  choice (``backends.choices().mesh``) with one process: 'runs' on the CPU backend (XLA:CPU runs a
  grid point's small per-seed matmuls on about one core; one host device per core gives each its
  own seeds, bench/README.md, "Run axis"; one device when the seeds do not split), 'data'
  elsewhere. A streamed data set always uses 'data'.
  """
  n = jax.device_count()
  if policy == "data" or streaming:
    return Placement(1)
  if policy == "auto" and (backends.choices().mesh == "data" or jax.process_count() > 1):
    return Placement(1)
  runs = max(d for d in range(1, min(n, num_seeds) + 1) if num_seeds % d == 0)
  return Placement(runs, jax.devices()[:runs])


def train_indices(seeds, first_epoch: int, num_epochs: int, n: int, batch_size: int) -> np.ndarray:
  """Index batches of ``num_epochs`` consecutive (global) epochs for every seed: (S, steps, B).

  Epoch numbers are global (stage t's epoch e is (t−1)·E + e), so every stage draws new orders.
  A full batch (``batch_size == n``, gradient descent as in [LW] §1.1) has no order to draw: every
  step takes the rows in their stored order (drawing a permutation per seed and step cost more
  host time than the step itself on the synthetic task).
  """
  if batch_size == n:
    return np.broadcast_to(np.arange(n, dtype=np.int32), (len(seeds), num_epochs, n))
  return np.stack([np.concatenate([data.epoch_indices(int(s), first_epoch + j, n, batch_size)
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
