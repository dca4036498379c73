"""What a run writes (docs/CONTRACTS.md, Engine outputs): metrics.jsonl, TensorBoard events, the
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


def param_norms(params) -> np.ndarray:
  """Global L2 norm of every seed's parameters; params with a seed axis → (S,) float."""
  sq = sum(np.sum(np.square(np.asarray(p, np.float64)).reshape(p.shape[0], -1), axis=1)
           for p in jax.tree.leaves(params))
  return np.sqrt(sq)


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
    try:
      self._tb = _EventWriter(os.path.join(workdir, "tensorboard"))
    except ImportError as e:  # TensorBoard is optional at run time; the JSONL is the record
      logging.warning("no TensorBoard events: %s", e)

  def write(self, records: list[dict]) -> None:
    """Appends records (dicts with step, stage, epoch, split, seed, and metrics)."""
    with open(self.path, "a") as f:
      for r in records:
        f.write(json.dumps(r) + "\n")
    self.records.extend(records)
    if self._tb is not None:
      from tensorboard.compat.proto.event_pb2 import Event
      from tensorboard.compat.proto.summary_pb2 import Summary
      for r in records:
        values = [Summary.Value(tag=f"seed{r['seed']}/{r['split']}/{k}", simple_value=float(v))
                  for k, v in r.items() if k in ("loss", "accuracy", "learning_rate", "param_norm")
                  and v is not None]
        self._tb.add(Event(wall_time=time.time(), step=int(r["step"]),
                           summary=Summary(value=values)))

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
  """tqdm bar on a terminal (stage, epoch, loss, acc, ETA), plain log lines otherwise."""

  def __init__(self, mode: str, total_steps: int, initial: int = 0, name: str = ""):
    self.mode = mode
    if mode == "auto":
      self.mode = "bar" if sys.stderr.isatty() else "log"
    self.bar = None
    self.name = name
    self.total = total_steps
    self.t0, self.s0 = time.time(), initial
    if self.mode == "bar":
      from tqdm import tqdm
      self.bar = tqdm(total=total_steps, initial=initial, desc=name, unit="step", leave=True)

  def update(self, step: int, stage: int, epoch: int, loss: float, acc: float) -> None:
    if self.bar is not None:
      self.bar.update(step - self.bar.n)
      self.bar.set_postfix(stage=stage, epoch=epoch, loss=f"{loss:.4f}", acc=f"{acc:.3f}")
    elif self.mode == "log":
      rate = (step - self.s0) / max(time.time() - self.t0, 1e-9)
      eta = (self.total - step) / max(rate, 1e-9)
      print(f"[{self.name}] step {step}/{self.total} stage {stage} epoch {epoch} "
            f"loss {loss:.4f} acc {acc:.3f} eta {eta:.0f}s", flush=True)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()


def mean_std(values) -> dict:
  """{'mean', 'std', 'per_seed'} of a per-seed list (std with ddof=0; 0 for one seed)."""
  a = np.asarray(values, np.float64)
  return {"mean": float(a.mean()), "std": float(a.std()), "per_seed": [float(v) for v in a]}
