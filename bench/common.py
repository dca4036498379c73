"""Helpers shared by the benchmarks: side-by-side timing, compile counting, the final JSON line.

The machine's 2 cores are shared with other work, so single timings are noisy. Contenders are timed
in rounds, alternating inside each round, and compared by medians over the rounds (a ratio of
medians, never a ratio of one timing each).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# What train.run does on the CPU backend (reinit_jax/train/host.py). It is process-wide, so PyTorch
# contenders in the same process get the same allocator; REINIT_BENCH_MALLOC=system measures without.
from reinit_jax.train import host as _host  # noqa: E402

_TUNED = os.environ.get("REINIT_BENCH_MALLOC", "tuned") != "system" and _host.tune_cpu_allocator()


def side_by_side(contenders: dict[str, Callable[[], None]], rounds: int, inner: int = 1,
                 warmup: int = 1) -> dict[str, float]:
  """Median seconds per call of each contender over ``rounds`` alternating rounds.

  Each ``fn`` must block until its work is done (``block_until_ready`` inside). Within a round every
  contender runs ``inner`` times back to back; the round order rotates so no one always goes first.
  """
  for fn in contenders.values():
    for _ in range(warmup):
      fn()
  names = list(contenders)
  times = {n: [] for n in names}
  for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for n in order:
      t = time.perf_counter()
      for _ in range(inner):
        contenders[n]()
      times[n].append((time.perf_counter() - t) / inner)
  return {n: statistics.median(v) for n, v in times.items()}


class CompileCounter:
  """Counts XLA compilations (and their seconds) through ``jax.monitoring`` duration events.

  jax records "/jax/core/compile/backend_compile_duration" once per XLA compilation; the counter
  is installed once per process and read by difference around the code of interest.
  """

  EVENT = "/jax/core/compile/backend_compile_duration"
  _installed = None

  def __init__(self):
    import jax.monitoring
    if CompileCounter._installed is None:
      CompileCounter._installed = self
      self.count, self.seconds = 0, 0.0
      jax.monitoring.register_event_duration_secs_listener(self._listen)
    else:
      raise RuntimeError("use CompileCounter.get()")

  @classmethod
  def get(cls) -> "CompileCounter":
    return cls._installed or cls()

  def _listen(self, event, duration, **kwargs):
    if event == self.EVENT:
      self.count += 1
      self.seconds += duration

  def snapshot(self) -> tuple[int, float]:
    return self.count, self.seconds


def emit(figures: dict) -> None:
  """Prints the benchmark's figures as the last output line (one JSON object)."""
  sys.stdout.flush()
  print(json.dumps(figures, sort_keys=True), flush=True)


def call_flops(call, *args) -> float:
  """XLA's FLOP count of one jitted ``call(*args)``; 0 where the backend does not report it.

  XLA counts a while loop's body once, not once per trip: for the engine's scanned train call this
  is one step's count (checked: 1 and 4 steps per call report the same number).
  """
  try:
    cost = call.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0))
  except Exception:  # best effort: not every backend reports it
    return 0.0


def env_line() -> dict:
  """Where the figures come from (the JSON records it)."""
  import jax
  return {"backend": jax.default_backend(), "devices": jax.device_count(), "cpus": os.cpu_count(),
          "jax": jax.__version__, "cpu_allocator_tuned": bool(_TUNED)}
