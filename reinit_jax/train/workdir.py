"""A run's working directory: what it holds, whether a run may resume in it, atomic JSON writes.

``<workdir>/`` holds config.json (the resolved config), metrics.jsonl, tensorboard/, checkpoints/
and, once the run finished, summary.json (docs/CONTRACTS.md, "Engine"). A run resumes from its
latest checkpoint when config.json matches its config up to the fields of ``config.RESUME_FREE``.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import shutil

from reinit_jax.train.config import RESUME_FREE, fields

# What a run writes; config.run.restart=True removes these (and nothing else) first.
OUTPUTS = ("checkpoints", "checkpoints.corrupt", "tensorboard", "metrics.jsonl", "summary.json",
           "summary.json.damaged", "config.json")
_log = logging.getLogger("reinit_jax")


def write_json(path: str, obj, **kw) -> None:
  """Writes ``obj`` as JSON to ``path`` atomically (a temporary file, fsync, then rename)."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, **kw)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: str):
  """The JSON in ``path``, or None when there is no such file; a damaged file raises one
  ValueError line naming it."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    try:
      return json.load(f)
    except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
      raise ValueError(f"{path} is damaged ({' '.join(str(e).split())})") from None


def config_json(c) -> dict:
  """The resolved config as a JSON-able dict (tuples as lists)."""
  return _json(c.to_dict())


def _json(value):
  return json.loads(json.dumps(value, default=lambda o: list(o) if isinstance(o, tuple)
                               else str(o)))


def flat_sections(d: dict) -> dict:
  """{'optim': {'learning_rate': x}} -> {'optim.learning_rate': x} (one level: sections)."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
    else:
      out[k] = v
  return out


def check_resumable(workdir: str, c) -> None:
  """Refuses to resume a workdir whose config.json differs in a field that changes the result.

  A field missing from the stored config.json (written before the field existed) counts as its
  default, so outputs of an earlier version of the code resume when nothing changed.
  """
  old = read_json(os.path.join(workdir, "config.json"))
  if old is None:
    return
  old, new = flat_sections(old), flat_sections(config_json(c))
  # A field the old config.json lacks (written before the field existed) had its default then.
  for k, f in fields().items():
    if k not in old and k in new:
      old[k] = _json(f.default)
  diff = sorted(k for k in set(old) | set(new) if k not in RESUME_FREE and old.get(k) != new.get(k))
  if diff:
    raise ValueError(f"workdir {workdir} holds a run of another config (fields {diff}); use a new "
                     "workdir, or set config.run.restart=True to discard it and start over")


class Lock:
  """An advisory lock on ``<workdir>/.lock`` held for a run's life (``fcntl.flock``: the kernel
  releases it when the process ends in any way, so a killed run leaves no stale lock). A second
  launch on a busy workdir fails at once with one line naming the holder's PID."""

  def __init__(self, workdir: str):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, ".lock")
    self._f = open(self.path, "a+")
    try:
      fcntl.flock(self._f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._f.seek(0)
      holder = self._f.read().strip() or "unknown"
      self._f.close()
      raise ValueError(f"workdir {workdir} is in use by another run (PID {holder}); wait for it "
                       "to finish or use another --workdir") from None
    self._f.seek(0)
    self._f.truncate()
    self._f.write(str(os.getpid()))
    self._f.flush()

  def release(self) -> None:
    if not self._f.closed:
      fcntl.flock(self._f, fcntl.LOCK_UN)
      self._f.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()
    return False


def finished_summary(workdir: str, c) -> dict | None:
  """The summary of a finished run of the same config in ``workdir``, else None.

  A finished run whose summary.json is damaged (set aside as summary.json.damaged) or whose
  config.json, metrics.jsonl or tensorboard/ is missing counts as unfinished: re-run, it restores
  its last checkpoint, which holds every record, and writes them again (one warning line names
  what was rebuilt).
  """
  if c.run.restart:
    return None
  path = os.path.join(workdir, "summary.json")
  try:
    summary = read_json(path)
  except ValueError as e:
    os.replace(path, path + ".damaged")
    _log.warning("%s; set aside as summary.json.damaged, the run's outputs are rebuilt from its "
                 "last checkpoint", e)
    return None
  if summary is None or summary.get("interrupted"):
    return None
  expected = ("config.json", "metrics.jsonl") + (
    ("tensorboard",) if importlib.util.find_spec("tensorboard") else ())
  missing = [name for name in expected if not os.path.exists(os.path.join(workdir, name))]
  if missing:
    _log.warning("%s: %s of the finished run %s missing; rebuilt from its last checkpoint",
                 workdir, " and ".join(missing), "is" if len(missing) == 1 else "are")
    return None
  try:
    check_resumable(workdir, c)
  except ValueError:
    return None
  return summary


def prepare(workdir: str, c) -> None:
  """Creates ``workdir`` (clearing a previous run's outputs under ``run.restart``), refuses another
  config's run, and writes config.json."""
  if c.run.restart:
    clear_outputs(workdir)
  os.makedirs(workdir, exist_ok=True)
  check_resumable(workdir, c)
  write_json(os.path.join(workdir, "config.json"), config_json(c), indent=2, sort_keys=True)


def contents(workdir: str) -> set[str] | None:
  """The names in ``workdir`` (None: it does not exist), for :func:`restore`."""
  return set(os.listdir(workdir)) if os.path.isdir(workdir) else None


def restore(workdir: str, found: set[str] | None) -> None:
  """Leaves ``workdir`` as :func:`contents` found it after a run that failed before training: the
  directory removed if it did not exist, else the config.json and .lock it did not hold (a
  restart's cleared outputs stay cleared)."""
  if found is None:
    shutil.rmtree(workdir, ignore_errors=True)
    return
  for name in ("config.json", ".lock"):
    if name not in found and os.path.exists(os.path.join(workdir, name)):
      os.remove(os.path.join(workdir, name))


def clear_outputs(workdir: str) -> None:
  """Removes a previous run's outputs from ``workdir`` (run.restart=True); other files stay."""
  for name in OUTPUTS:
    p = os.path.join(workdir, name)
    if os.path.isdir(p):
      shutil.rmtree(p)
    elif os.path.exists(p):
      os.remove(p)
  _log.warning("config.run.restart=True: cleared the previous run's outputs in %s", workdir)
