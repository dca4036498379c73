"""Helpers shared by the benchmarks: side-by-side timing, compile and FLOP counts, the JSON line.

The machine's 2 cores are shared with other work, so single timings are noisy. Contenders are timed
in rounds, alternating inside each round, and compared by medians over the rounds (a ratio of
medians, never a ratio of one timing each).

Importing this module makes ``reinit_jax.train.<module>`` importable on hosts without ml_collections
or TensorFlow (GPU and TPU images): see :func:`_train_package_without_config`.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

_OPTIONAL = ("ml_collections", "tensorflow", "tensorflow_datasets")


def _train_package_without_config():
  """Registers ``reinit_jax.train`` without running its ``__init__`` when that cannot import.

  The package's ``__init__`` imports the config (ml_collections) and the loop (data: TFDS); the
  benchmarks use only ``step``, ``state``, ``schedules`` and ``loss`` (jax, flax, optax).
  Where the package imports normally this does nothing.
  """
  import importlib
  import types
  try:
    importlib.import_module("reinit_jax.train")
  except ImportError as e:
    if (e.name or "").split(".")[0] not in _OPTIONAL:
      raise
    pkg = types.ModuleType("reinit_jax.train")
    pkg.__path__ = [os.path.join(ROOT, "reinit_jax", "train")]
    pkg.__package__ = "reinit_jax.train"
    sys.modules["reinit_jax.train"] = pkg
    print(f"bench: {e.name} is missing: reinit_jax.train's modules import without its __init__",
          file=sys.stderr, flush=True)


_train_package_without_config()

# What train.run does on the CPU backend (reinit_jax/backends/cpu_host.py). It is process-wide, so
# PyTorch contenders in the same process get the same allocator; REINIT_BENCH_MALLOC=system measures
# without.
from reinit_jax.backends import cpu_host  # noqa: E402

_TUNED = (os.environ.get("REINIT_BENCH_MALLOC", "tuned") != "system"
          and cpu_host.tune_cpu_allocator())


SMOKE_HELP = ("the same code path at a tiny size (seconds on 2 cores): checks that the benchmark "
              "runs (tests/test_bench.py runs every benchmark's --smoke); its figures mean nothing")


def add_size_flags(parser, quick_help: str = "the quick mode (bench/README.md)") -> None:
  """``--quick`` and ``--smoke``, the size flags every benchmark takes (``--smoke`` wins)."""
  parser.add_argument("--quick", action="store_true", help=quick_help)
  parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)


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


def _eqn_macs(eqn) -> int:
  """Multiply-accumulates of one conv or dot_general equation (0 for anything else)."""
  name = eqn.primitive.name
  if name == "conv_general_dilated":
    out, rhs = eqn.outvars[0].aval.shape, eqn.invars[1].aval.shape
    out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
    # each output entry sums over the kernel window and the input features of its group
    return int(np.prod(out)) * int(np.prod(rhs)) // int(rhs[out_feature_dim])
  if name == "dot_general":
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    return int(np.prod(eqn.outvars[0].aval.shape)) * int(np.prod([lhs[d] for d in lhs_contract]))
  return 0


def _jaxpr_macs(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    total += _eqn_macs(eqn)
    for p in eqn.params.values():  # nested jaxprs: pjit, custom_vjp (the im2col conv), remat
      for sub in (p if isinstance(p, (tuple, list)) else (p,)):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          total += _jaxpr_macs(inner)
  return total


def model_train_flops(model, batch: int) -> float:
  """Analytic FLOPs of one training step: 2 × (conv and dense MACs of the forward pass) × 3.

  Counted from the forward pass's jaxpr (every convolution and matmul, by shape), not from XLA's
  cost analysis (which counts a loop body once and includes elementwise work). ×3: the backward
  pass computes an input gradient and a weight gradient of the same size as the forward product.
  ResNet-18 (CIFAR stem, width 1): 0.556 GMAC per 32×32 image forward, 3.33 GFLOP per trained image.
  """
  import jax
  import jax.numpy as jnp
  variables = jax.eval_shape(model.init, jax.random.key(0))
  x = jax.ShapeDtypeStruct((batch, *model.input_shape), jnp.float32)

  def forward(v, x):
    return model.apply(v, x, train=True, rngs={"dropout": jax.random.key(0)},
                       mutable=["batch_stats"])

  return 6.0 * _jaxpr_macs(jax.make_jaxpr(forward)(variables, x).jaxpr)


def env_line() -> dict:
  """Where the figures come from (the JSON records it)."""
  import jax
  return {"backend": jax.default_backend(), "devices": jax.device_count(), "cpus": os.cpu_count(),
          "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
          "cpu_allocator_tuned": bool(_TUNED)}
