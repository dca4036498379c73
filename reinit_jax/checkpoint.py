"""Orbax checkpoints of a run: the whole train state plus a JSON record of where the run is.

One checkpoint per saved step holds two items: ``state`` (the :class:`reinit_jax.train.state.TrainState`
pytree: params, optimizer state, batch statistics, layer-wise normalizations, method context with
first-init norms and fixed masks, teacher, counters and PRNG keys; every leaf with the seed axis) and
``meta`` (JSON: data position, best-validation record, metrics so far, events applied, wall time).
Restoring the latest checkpoint and continuing gives bitwise the result of an uninterrupted run
(tests/test_train_resume.py).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """``CheckpointManager`` wrapper for ``<workdir>/checkpoints``; saves are synchronous.

  Synchronous because a run often ends right after its last save and a save must never race the
  donation of the state buffers to the next jitted call.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                        enable_async_checkpointing=False)
    self._mngr = ocp.CheckpointManager(self.directory, options=opts,
                                       item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    """The newest saved global step, or None."""
    return self._mngr.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves ``state`` (pytree of arrays) and ``meta`` (JSON-able dict) at global ``step``."""
    self._mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                  meta=ocp.args.JsonSave(meta)), force=True)
    self._mngr.wait_until_finished()

  def restore(self, step: int, like: Any) -> tuple[Any, dict]:
    """Restores (state, meta) at ``step``; ``like`` gives the tree structure, shapes, dtypes and
    shardings (e.g. a freshly initialized state)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    out = self._mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                           meta=ocp.args.JsonRestore()))
    return out["state"], dict(out["meta"])

  def close(self) -> None:
    self._mngr.close()
