"""Orbax checkpoints of a run: the whole train state plus a JSON record of where the run is.

One checkpoint per saved step holds two items: ``state`` (the ``reinit_jax.train.state.TrainState``
pytree: params, optimizer state, batch statistics, layer-wise normalizations, method context with
first-init norms and fixed masks, teacher, counters and PRNG keys; every leaf with the seed axis) and
``meta`` (JSON: data position, best-validation record, metrics so far, events applied, wall time).
Restoring the latest checkpoint and continuing gives bitwise the result of an uninterrupted run
(tests/test_train_resume.py).

Faults (README, Reliability): orbax writes a step into a temporary directory and renames it when
complete, so a kill mid-write leaves the earlier steps as they were (the temporary directory is
removed on the next start). After a step is complete, the primary process records the size and
sha256 of every file in it (``reinit_jax_sha256.json``); a restore checks them before orbax reads
anything, because orbax's OCDBT data files carry no checksum of their own and a damaged data file
could otherwise restore silently with wrong values. A step that fails the check or fails to restore
is moved to ``<checkpoints>.corrupt/`` with one log line, and the previous step is used; the
asyncio noise orbax leaves after a failed read (tensorstore callbacks hitting its closed event loop,
printed as "Event loop is closed" or "Exception ignored" tracebacks) is dropped. A failed write
(e.g. ENOSPC) raises :class:`CheckpointError` naming the last intact step.
Tests: tests/test_reliability_faults.py (fallback, full disk), tests/test_reliability_checkpoints.py
(checksums, damaged files, quiet recovery).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import types
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger("reinit_jax")
CHECKSUMS = "reinit_jax_sha256.json"


class CheckpointError(OSError):
  """A checkpoint could not be written (e.g. a full disk); earlier checkpoints are intact."""


class _Damaged(ValueError):
  """A step's files differ from the checksums recorded when it was saved."""


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def _files(step_dir: str) -> list[str]:
  """Paths of every file under ``step_dir`` relative to it (sorted), the checksum record excluded."""
  out = []
  for d, _, names in os.walk(step_dir):
    out += [os.path.relpath(os.path.join(d, n), step_dir) for n in names]
  return sorted(p for p in out if p != CHECKSUMS)


def write_checksums(step_dir: str) -> None:
  """Records ``{relative path: [bytes, sha256]}`` of a complete step in ``step_dir/CHECKSUMS``."""
  record = {p: [os.path.getsize(os.path.join(step_dir, p)), _sha256(os.path.join(step_dir, p))]
            for p in _files(step_dir)}
  tmp = os.path.join(step_dir, f"{CHECKSUMS}.tmp{os.getpid()}")
  with open(tmp, "w") as f:
    json.dump(record, f)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, os.path.join(step_dir, CHECKSUMS))


def verify_checksums(step_dir: str) -> None:
  """Raises ValueError naming the first file of ``step_dir`` that differs from its record.

  A step without a record (saved by an earlier version, or killed between the save and the record)
  is not checked.
  """
  path = os.path.join(step_dir, CHECKSUMS)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      record = json.load(f)
    items = [(str(p), int(v[0]), str(v[1])) for p, v in record.items()]
  except (OSError, ValueError, TypeError, AttributeError, IndexError) as e:
    raise _Damaged(f"its checksum record {CHECKSUMS} is unreadable ({type(e).__name__})") from None
  for rel, size, sha in items:
    f = os.path.join(step_dir, rel)
    if not os.path.isfile(f):
      raise _Damaged(f"{rel} is missing")
    if os.path.getsize(f) != size:
      raise _Damaged(f"{rel} is truncated or overwritten ({os.path.getsize(f)} bytes, expected "
                       f"{size})")
    if _sha256(f) != sha:
      raise _Damaged(f"{rel} is damaged (sha256 differs from its record)")


def _is_orbax_noise(unraisable) -> bool:
  """What a failed orbax restore leaves behind: tensorstore callbacks that find its event loop
  closed (RuntimeError 'Event loop is closed') and orbax coroutines collected unfinished."""
  exc, obj = unraisable.exc_value, unraisable.object
  if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
    return True
  code = getattr(obj, "cr_code", None)
  return code is not None and any(f"{os.sep}{pkg}{os.sep}" in code.co_filename
                                  for pkg in ("orbax", "tensorstore"))


def _silence_orbax_noise() -> None:
  """Installs (once) a ``sys.unraisablehook`` that drops :func:`_is_orbax_noise` reports and
  passes every other one to the previous hook. The noise arrives after the restore has returned
  (from tensorstore's threads), so the filter stays for the life of the process."""
  previous = sys.unraisablehook
  if getattr(previous, "_reinit_jax_filter", False):
    return

  def hook(unraisable):
    if not _is_orbax_noise(unraisable):
      previous(unraisable)

  hook._reinit_jax_filter = True
  sys.unraisablehook = hook
  # The same closed-loop error can also come through sys.excepthook: tensorstore's threads call
  # loop.call_soon_threadsafe from C++ and print what it raises with PyErr_Print (seen on a loaded
  # machine: two bare "Event loop is closed" tracebacks after the one-line warning).
  previous_excepthook = sys.excepthook

  def excepthook(kind, value, tb):
    if not _is_orbax_noise(types.SimpleNamespace(exc_value=value, object=None)):
      previous_excepthook(kind, value, tb)

  sys.excepthook = excepthook


def _why(err: BaseException) -> str:
  """One line for a failure: the innermost cause (orbax wraps tensorstore's reason in a message
  that ends with a bound-method repr)."""
  if isinstance(err, _Damaged):
    return str(err)
  seen = set()
  while err.__cause__ is not None and id(err) not in seen:
    seen.add(id(err))
    err = err.__cause__
  return " ".join(f"{type(err).__name__}: {err}".split())[:300]


class Checkpoints:
  """``CheckpointManager`` wrapper for ``<workdir>/checkpoints``; saves are asynchronous.

  A save copies the state on the device first, so it never races the donation of the state
  buffers to the next jitted call; the next save, a restore or :meth:`close` waits for the write
  in flight (a run often ends right after its last save).
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._bad: set[int] = set()  # steps set aside (a non-primary process may still see them)
    # Checked before orbax lists the steps: it reads each step's metadata file and logs its own
    # error line for a damaged one.
    bad, self._verified = {}, set()
    for step in self._step_dirs():
      try:
        verify_checksums(os.path.join(self.directory, str(step)))
        self._verified.add(step)
      except ValueError as e:
        bad[step] = e
    for step in sorted(bad, reverse=True):
      self._set_aside(step, bad[step], [s for s in self._verified if s < step])
    # Asynchronous: a save returns once orbax holds the arrays, and the files are written while
    # the next calls train; the step's checksums are recorded when it is complete (next save,
    # restore or close). A kill mid-write leaves a temporary directory that orbax removes.
    opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                        enable_async_checkpointing=True,
                                        cleanup_tmp_directories=True)
    self._pending: int | None = None
    self._abandoned = False  # a failed save was reported and its files removed
    self._mngr = ocp.CheckpointManager(self.directory, options=opts,
                                       item_names=("state", "meta"))

  def _step_dirs(self) -> list[int]:
    if not os.path.isdir(self.directory):
      return []
    return sorted(int(n) for n in os.listdir(self.directory)
                  if n.isdigit() and os.path.isdir(os.path.join(self.directory, n)))

  def _set_aside(self, step: int, err: BaseException, older: list[int]) -> None:
    """One log line for an unusable step; the primary process moves it to ``.corrupt/``."""
    self._bad.add(step)
    dest = os.path.join(self.directory + ".corrupt", f"{step}-{int(time.time())}")
    primary = jax.process_index() == 0
    log.warning("checkpoint at step %d in %s is unreadable (%s)%s; %s", step, self.directory,
                _why(err), f"; moved to {dest}" if primary else "",
                f"resuming from step {older[-1]}" if older else "no older checkpoint: "
                "starting from the beginning")
    if primary:
      os.makedirs(os.path.dirname(dest), exist_ok=True)
      shutil.move(os.path.join(self.directory, str(step)), dest)

  def latest_step(self) -> int | None:
    """The newest saved global step, or None."""
    steps = self.all_steps()
    return steps[-1] if steps else None

  def all_steps(self) -> list[int]:
    """Every saved step not set aside as unreadable, oldest first."""
    return sorted(s for s in self._mngr.all_steps() if s not in self._bad)

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Starts saving ``state`` (pytree of arrays) and ``meta`` (JSON-able dict) at global ``step``;
    the write goes on in the background (:meth:`finish` waits for it and records its checksums).

    ``state`` is copied first (on the device), so the caller may donate its buffers to the next
    jitted call at once. Raises CheckpointError (one line) when this or the previous write fails;
    the partial step is removed and the earlier steps are untouched.
    """
    self.finish()
    copy = jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, state)
    try:
      self._mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(copy),
                                                    meta=ocp.args.JsonSave(meta)), force=True)
      self._pending = step
      self._verified.discard(step)  # a step saved again is checked again on restore
    except OSError as e:
      self._failed(step, e)

  def finish(self) -> None:
    """Waits for the write in flight, then (primary process) records its checksums."""
    step, self._pending = self._pending, None
    if step is None:
      return
    try:
      self._mngr.wait_until_finished()
      if jax.process_index() == 0:
        write_checksums(os.path.join(self.directory, str(step)))
    except OSError as e:
      self._failed(step, e)

  def _failed(self, step: int, e: OSError):
    self._abandoned = True
    self._remove_partial(step)
    prev = [s for s in self.all_steps() if s != step]
    kept = f"the checkpoint at step {prev[-1]} is intact" if prev else "no earlier checkpoint"
    raise CheckpointError(e.errno, f"could not write the checkpoint at step {step} to "
                          f"{self.directory} ({e.strerror or e}); {kept}; free space and re-run "
                          "the same command to resume") from None

  def _remove_partial(self, step: int) -> None:
    """Deletes what a failed save of ``step`` left (its temporary, unfinished or unrecorded
    directory).

    The other item's writes may still be in flight when one item's write fails: wait for them,
    then retry the removal until nothing is left (a few tries; a leftover is harmless, orbax never
    lists a temporary directory as a step and removes it on the next start).
    """
    try:
      self._mngr.wait_until_finished()
    except Exception:  # noqa: BLE001
      pass
    done = os.path.join(self.directory, str(step))
    # With asynchronous saves a writer thread may still create the temporary directory after the
    # error surfaced: done only when nothing is left twice in a row (up to 5 s).
    clean = 0
    for _ in range(100):
      left = glob.glob(os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*"))
      if (jax.process_index() == 0 and os.path.isdir(done)
          and not os.path.exists(os.path.join(done, CHECKSUMS))):
        left.append(done)  # complete for orbax, but its checksums could not be written
      clean = 0 if left else clean + 1
      if clean == 2:
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
    shardings (e.g. a freshly initialized state). Raises ValueError when a file differs from the
    checksums recorded at save time (before orbax reads anything)."""
    if step not in self._verified:
      verify_checksums(os.path.join(self.directory, str(step)))
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    out = self._mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                           meta=ocp.args.JsonRestore()))
    meta = dict(out["meta"])
    if meta.get("step") != step:
      raise ValueError(f"meta records step {meta.get('step')!r}, not {step}")
    return out["state"], meta

  def restore_latest(self, like: Any) -> tuple[int, Any, dict] | None:
    """(step, state, meta) of the newest step that restores, or None when there is none.

    A step that fails (damaged, truncated, missing or unreadable files) is logged in one line and
    moved aside to ``<checkpoints>.corrupt/<step>-<time>`` by the primary process (kept for
    inspection, out of orbax's view, so the run can save that step again); the next older step is
    tried.
    """
    for step in reversed(self.all_steps()):
      if step in self._bad:
        continue
      try:
        state, meta = self.restore(step, like)
        return step, state, meta
      except Exception as e:  # noqa: BLE001 (any failure to read means: not a usable checkpoint)
        _silence_orbax_noise()
        self._set_aside(step, e, [s for s in self.all_steps() if s < step and s not in self._bad])
        self._mngr.reload()
    return None

  def close(self) -> None:
    """Waits for the write in flight (recording its checksums) and releases the manager."""
    try:
      self.finish()
    finally:
      try:
        self._mngr.close()
      except OSError:
        # After a reported failure, orbax's background writers of the abandoned step (its
        # metadata) can still fail on the files _remove_partial deleted; re-raising here would
        # replace the CheckpointError that says what happened.
        if not self._abandoned:
          raise
