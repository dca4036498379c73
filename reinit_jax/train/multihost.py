"""One run over several processes (a TPU pod, or processes on one machine): start-up, which process
writes the run's files, and reading arrays that span other processes' devices (docs/launching.md,
"Multi-process runs").

Every process runs the same stage loop on the same global arrays (the 1-D 'data' mesh spans all
processes' devices, ``feed.Placement``); each feeds only its share of every batch
(``data.global_batch``). Checkpoints are written by all processes together (orbax coordinates
them); metrics.jsonl, TensorBoard, summary.json and progress lines come from process 0 only, since
every process holds the same records.
"""

from __future__ import annotations

import contextlib
import os

import jax
import numpy as np

# What a scheduler sets for every process of the job when jax cannot detect the cluster itself
# (processes on one machine, a plain job array). JAX reads JAX_COORDINATOR_ADDRESS itself; the
# other two it only reads through its cluster plugins (TPU, SLURM, Open MPI, Kubernetes).
ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize() -> None:
  """``jax.distributed.initialize`` once per process, with the process count and id from the
  environment when set (``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), else detected by jax (a TPU
  pod needs no variable). A second run in the same process (a study, a grid) reuses the first's.

  Must come before anything touches a JAX backend. Raises ValueError (one line) naming the
  variables when jax can neither read nor detect them.
  """
  if jax.distributed.is_initialized():
    return
  kw = {}
  for name, arg in ((ENV[1], "num_processes"), (ENV[2], "process_id")):
    value = os.environ.get(name, "").strip()
    if value:
      if not value.isdigit():
        raise ValueError(f"{name}={value!r}: must be a non-negative integer")
      kw[arg] = int(value)
  try:
    jax.distributed.initialize(**kw)
  except ValueError as e:  # jax's own message names the missing argument, not the variables
    raise ValueError(f"config.run.distributed=True: {e} Set {', '.join(ENV)} for every process "
                     "(docs/launching.md, Multi-process runs), or run where jax detects the "
                     "cluster (TPU pod, SLURM, Open MPI)") from None


def is_primary() -> bool:
  """True in the process that writes the run's files (process 0; the only one without
  ``run.distributed``)."""
  return jax.process_index() == 0


def fetch(tree):
  """``jax.device_get`` of a pytree whose arrays may span other processes' devices.

  A replicated array is read from this process's copy; an array sharded over other processes'
  devices is gathered first (``process_allgather``, a collective: every process must call
  ``fetch`` on the same tree, which the stage loop does). One process: plain ``device_get``.
  """
  def one(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
      from jax.experimental import multihost_utils
      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return a
  return jax.device_get(jax.tree.map(one, tree))


class ReplicaLog:
  """The metrics record of a process other than 0: the same ``records`` as process 0's
  :class:`outputs.MetricsLog` (they go into the checkpoint's meta and the stage records), no
  files written."""

  def __init__(self, records: list[dict] | None = None):
    self.records = list(records or [])

  def write(self, records: list[dict]) -> None:
    """Keeps ``records`` (dicts with step, stage, epoch, split, seed, and metrics)."""
    self.records.extend(records)

  def verify(self) -> bool:
    """Nothing on disk to check (process 0 checks metrics.jsonl)."""
    return True

  def close(self) -> None:
    pass


def barrier(name: str) -> None:
  """Waits until every process reached ``barrier(name)``; nothing with one process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
  """True when ``flag`` is True in any process (a collective: every process calls it at the same
  point). A SIGTERM reaches a pod's processes at different steps; all must stop at the same one,
  since a checkpoint is written by all of them together."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils
  return bool(np.any(multihost_utils.process_allgather(np.asarray([flag]))))


@contextlib.contextmanager
def primary_first(name: str):
  """Runs the block in process 0 first, then in the others: what the block writes on first use
  (a TFDS preparation, the data set's array cache) is written once, then only read."""
  if not is_primary():
    barrier(name)
  yield
  if is_primary():
    barrier(name)
