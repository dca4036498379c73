"""What a run writes (docs/CONTRACTS.md, "Engine"): metrics.jsonl, TensorBoard events, the
summary, the params digest, and progress on the terminal."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time

import jax
import numpy as np


def params_digest(params) -> str:
  """sha256 of the parameters' bytes, leaves in path order (the seed axis included)."""
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(jax.tree_util.keystr(path).encode())
    h.update(a.dtype.str.encode() + str(a.shape).encode())
    h.update(a.tobytes())
  return h.hexdigest()


# The record fields written as TensorBoard scalars (besides every dormant_* fraction).
_SCALARS = ("loss", "accuracy", "learning_rate", "param_norm", "step_events", "units_reset",
            "effective_rank", "srank")


class MetricsLog:
  """Appends metric records to ``metrics.jsonl`` and TensorBoard (``<workdir>/tensorboard``).

  ``records`` is the full list (also kept in checkpoints, so a resumed run rewrites the file with
  exactly the records up to its checkpoint and no duplicates).
  """

  def __init__(self, workdir: str, records: list[dict] | None = None):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.records = list(records or [])
    with open(self.path, "w") as f:
      for r in self.records:
        f.write(json.dumps(r) + "\n")
    self._tb = None
    board = os.path.join(workdir, "tensorboard")
    rebuild = not (os.path.isdir(board) and os.listdir(board))  # lost: written again from records
    try:
      self._tb = _EventWriter(board)
    except ImportError as e:  # TensorBoard is optional at run time; the JSONL is the record
      logging.warning("no TensorBoard events: %s", e)
    if rebuild:
      self._events(self.records)

  def write(self, records: list[dict]) -> None:
    """Appends records (dicts with step, stage, epoch, split, seed, and metrics)."""
    with open(self.path, "a") as f:
      for r in records:
        f.write(json.dumps(r) + "\n")
    self.records.extend(records)
    self._events(records)

  def _events(self, records: list[dict]) -> None:
    if self._tb is not None:
      from tensorboard.compat.proto.event_pb2 import Event
      from tensorboard.compat.proto.summary_pb2 import Summary
      for r in records:
        values = [Summary.Value(tag=f"seed{r['seed']}/{r['split']}/{k}", simple_value=float(v))
                  for k, v in r.items() if (k in _SCALARS or k.startswith("dormant_"))
                  and v is not None]
        self._tb.add(Event(wall_time=time.time(), step=int(r["step"]),
                           summary=Summary(value=values)))

  def verify(self) -> bool:
    """Checks that metrics.jsonl holds exactly ``records`` (lines lost when the file was deleted or
    truncated during the run, or duplicated by hand); rewrites it from ``records`` with one warning
    line if not. Returns True when the file was intact."""
    try:
      with open(self.path) as f:
        lines = f.read().splitlines()
    except FileNotFoundError:
      lines = []
    try:
      if len(lines) == len(self.records) and all(
          json.loads(a) == b for a, b in zip(lines[-3:], self.records[-3:])):
        return True
    except ValueError:  # a damaged line
      pass
    logging.getLogger("reinit_jax").warning(
      "%s held %d lines for %d records; rewrote it from the run's record", self.path, len(lines),
      len(self.records))
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      for r in self.records:
        f.write(json.dumps(r) + "\n")
    os.replace(tmp, self.path)
    return False

  def close(self) -> None:
    if self._tb is not None:
      self._tb.flush()
      self._tb.close()


class _EventWriter:
  """TensorBoard event file written with tensorboard's RecordWriter on a plain file.

  tensorboard's EventFileWriter goes through its TensorFlow compatibility layer, which imports
  TensorFlow when installed (about 15 s on 2 cores); the record format alone needs none of it.
  """

  def __init__(self, logdir: str):
    import socket
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}"
    self._file = open(os.path.join(logdir, name), "wb")
    self._writer = RecordWriter(self._file)
    self.add(Event(wall_time=time.time(), file_version="brain.Event:2"))

  def add(self, event) -> None:
    self._writer.write(event.SerializeToString())

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()


class Progress:
  """tqdm bar on a terminal (stage, epoch, loss, acc, examples/s, ETA), plain log lines otherwise."""

  def __init__(self, mode: str, total_steps: int, initial: int = 0, name: str = "",
               examples_per_step: int = 0):
    self.mode = mode
    if mode == "auto":
      self.mode = "bar" if sys.stderr.isatty() else "log"
    self.bar = None
    self.name = name
    self.total = total_steps
    self.per_step = examples_per_step  # all seeds: what the devices process per step
    self.t0, self.s0 = time.time(), initial
    if self.mode == "bar":
      from tqdm import tqdm
      self.bar = tqdm(total=total_steps, initial=initial, desc=name, unit="step", leave=True)

  def _rate(self, step):
    steps = (step - self.s0) / max(time.time() - self.t0, 1e-9)
    return steps, (f"{steps * self.per_step:.0f} ex/s" if self.per_step else f"{steps:.1f} steps/s")

  def update(self, step: int, stage: int, epoch: int, loss: float, acc: float) -> None:
    if self.bar is not None:
      self.bar.update(step - self.bar.n)
      self.bar.set_postfix(stage=stage, epoch=epoch, loss=f"{loss:.4f}", acc=f"{acc:.3f}",
                           rate=self._rate(step)[1])
    elif self.mode == "log":
      steps, rate = self._rate(step)
      eta = (self.total - step) / max(steps, 1e-9)
      print(f"[{self.name}] step {step}/{self.total} stage {stage} epoch {epoch} "
            f"loss {loss:.4f} acc {acc:.3f} {rate} eta {eta:.0f}s", flush=True)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()


class CompileTimer:
  """Context manager summing XLA compilation time (JAX's own monitoring events) while active."""

  _EVENTS = ("/jax/core/compile/backend_compile_duration",)

  def __init__(self):
    self.seconds = 0.0
    self._on = False

  def _listen(self, event, duration, **kw):
    if self._on and event in self._EVENTS:
      self.seconds += duration

  def __enter__(self):
    import jax.monitoring
    self._on = True
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    return self

  def __exit__(self, *exc):
    import jax.monitoring
    self._on = False
    jax.monitoring.unregister_event_duration_listener(self._listen)
    return False


class PhaseTimes:
  """Seconds by phase of a run (startup, compile, train, evaluate, checkpoint, event), disjoint:
  compilation inside a phase is counted under 'compile', not under the phase."""

  def __init__(self, totals: dict | None = None, compile_timer: CompileTimer | None = None):
    self.t = {k: 0.0 for k in ("startup", "compile", "train", "evaluate", "checkpoint", "event")}
    self.t.update(totals or {})
    self.compile = compile_timer
    self._compile0 = self.t["compile"]  # earlier sessions'; the timer counts this one's

  def add(self, name: str, seconds: float) -> None:
    self.t[name] = self.t.get(name, 0.0) + seconds

  def phase(self, name: str):
    import contextlib

    @contextlib.contextmanager
    def timed():
      c0 = self.compile.seconds if self.compile else 0.0
      t0 = time.time()
      try:
        yield
      finally:
        dc = (self.compile.seconds if self.compile else 0.0) - c0
        self.add(name, time.time() - t0 - dc)

    return timed()

  def totals(self) -> dict:
    out = dict(self.t)
    if self.compile is not None:
      out["compile"] = self._compile0 + self.compile.seconds
    return {k: round(v, 3) for k, v in out.items()}


def mean_std(values) -> dict:
  """{'mean', 'std', 'per_seed'} of a per-seed list (std with ddof=0; 0 for one seed)."""
  a = np.asarray(values, np.float64)
  return {"mean": float(a.mean()), "std": float(a.std()), "per_seed": [float(v) for v in a]}
