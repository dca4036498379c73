"""Orbax checkpoints of a run: the whole train state plus a JSON record of where the run is.

One checkpoint per saved step holds two items: ``state`` (the :class:`reinit_jax.train.state.TrainState`
pytree: params, optimizer state, batch statistics, layer-wise normalizations, method context with
first-init norms and fixed masks, teacher, counters and PRNG keys; every leaf with the seed axis) and
``meta`` (JSON: data position, best-validation record, metrics so far, events applied, wall time).
Restoring the latest checkpoint and continuing gives bitwise the result of an uninterrupted run
(tests/test_train_resume.py).

Faults (tests/test_reliability_checkpoints.py): orbax writes a step into a temporary directory and
renames it when complete, so a kill mid-write leaves the earlier steps as they were (the temporary
directory is removed on the next start). A step that fails to restore (truncated or missing files)
is moved to ``<checkpoints>.corrupt/`` with one log line, and the previous step is used. A failed
write (e.g. ENOSPC) raises :class:`CheckpointError` naming the last intact step.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

from reinit_jax.train.faults import CheckpointError

log = logging.getLogger("reinit_jax")


class Checkpoints:
  """``CheckpointManager`` wrapper for ``<workdir>/checkpoints``; saves are synchronous.

  Synchronous because a run often ends right after its last save and a save must never race the
  donation of the state buffers to the next jitted call.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                        enable_async_checkpointing=False,
                                        cleanup_tmp_directories=True)
    self._mngr = ocp.CheckpointManager(self.directory, options=opts,
                                       item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    """The newest saved global step, or None."""
    return self._mngr.latest_step()

  def all_steps(self) -> list[int]:
    """Every saved step, oldest first."""
    return sorted(self._mngr.all_steps())

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves ``state`` (pytree of arrays) and ``meta`` (JSON-able dict) at global ``step``.

    Raises CheckpointError (one line) when the write fails; the partial step is removed and the
    earlier steps are untouched.
    """
    try:
      self._mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)), force=True)
      self._mngr.wait_until_finished()
    except OSError as e:
      self._remove_partial(step)
      prev = [s for s in self.all_steps() if s != step]
      kept = f"the checkpoint at step {prev[-1]} is intact" if prev else "no earlier checkpoint"
      raise CheckpointError(e.errno, f"could not write the checkpoint at step {step} to "
                            f"{self.directory} ({e.strerror or e}); {kept}; free space and re-run "
                            "the same command to resume") from None

  def _remove_partial(self, step: int) -> None:
    """Deletes what a failed save of ``step`` left (its temporary or unfinished directory).

    The other item's writes may still be in flight when one item's write fails: wait for them,
    then retry the removal until nothing is left (a few tries; a leftover is harmless, orbax never
    lists a temporary directory as a step and removes it on the next start).
    """
    try:
      self._mngr.wait_until_finished()
    except Exception:  # noqa: BLE001
      pass
    for _ in range(20):
      left = glob.glob(os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*"))
      if not left:
        break
      for p in left:
        shutil.rmtree(p, ignore_errors=True)
      time.sleep(0.05)
    try:
      self._mngr.reload()
    except Exception:  # noqa: BLE001 (best effort: the error being reported matters more)
      pass

  def restore(self, step: int, like: Any) -> tuple[Any, dict]:
    """Restores (state, meta) at ``step``; ``like`` gives the tree structure, shapes, dtypes and
    shardings (e.g. a freshly initialized state)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    out = self._mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                           meta=ocp.args.JsonRestore()))
    meta = dict(out["meta"])
    if meta.get("step") != step:
      raise ValueError(f"meta records step {meta.get('step')!r}, not {step}")
    return out["state"], meta

  def restore_latest(self, like: Any) -> tuple[int, Any, dict] | None:
    """(step, state, meta) of the newest step that restores, or None when there is none.

    A step that fails (truncated, missing or unreadable files) is logged in one line and moved
    aside to ``<checkpoints>.corrupt/<step>-<time>`` (kept for inspection, out of orbax's view, so
    the run can save that step again); the next older step is tried.
    """
    for step in reversed(self.all_steps()):
      try:
        state, meta = self.restore(step, like)
        return step, state, meta
      except Exception as e:  # noqa: BLE001 (any failure to read means: not a usable checkpoint)
        older = [s for s in self.all_steps() if s < step]
        dest = os.path.join(self.directory + ".corrupt", f"{step}-{int(time.time())}")
        msg = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        log.warning("checkpoint at step %d in %s is unreadable (%s); moved to %s; %s", step,
                    self.directory, msg, dest,
                    f"resuming from step {older[-1]}" if older else "no older checkpoint: "
                    "starting from the beginning")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.move(os.path.join(self.directory, str(step)), dest)
        self._mngr.reload()
    return None

  def close(self) -> None:
    self._mngr.close()
