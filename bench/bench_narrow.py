"""Narrow convolutions and kernel draws on XLA:CPU: the two CPU-path rewrites (in
``reinit_jax/backends`` and ``reinit_jax/models``) measured against what they replace, side by side
in one process.

1. **Narrow convs** (``cpu_conv._taps_conv``): a conv with C_in ≤ 4 (and C_in·C_out ≤ 64) written as
   a sum of broadcast products instead of XLA's conv. Contenders: the engine's train call (one
   seed, ``lax.scan`` of ``--steps`` SGD steps) and its evaluation (``step.make_eval``, 10,000
   images in batches of 1,000) of a Fashion-MNIST-shaped model, with the taps (``im2col``, the
   CPU default) and without (the same backward, XLA's forward conv: ``cpu_conv.NARROW_IN = 0`` while
   tracing). Figure: ms per call, and taps ÷ XLA speed-up.
2. **Kernel draws** (``base.kernel_init``): the compile time of ``model.init`` (what every event's
   fresh θ_init compiles) with the kernels drawn flat against flax's own initializer on the
   kernel's 4-D shape. Same values (tests/test_models.py); figure: seconds to compile, and the ratio.

    python bench/bench_narrow.py --quick     # scnn_tiny (the default study's model), 3 rounds
    python bench/bench_narrow.py             # also scnn at 1/4 width, 5 rounds
    python bench/bench_narrow.py --smoke     # scnn_tiny, batch 4, 2 steps, 200 images, 1 round

The last line is JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from reinit_jax import methods, models  # noqa: E402
from reinit_jax.backends import cpu_conv  # noqa: E402
from reinit_jax.models import layers  # noqa: E402
from reinit_jax.train import schedules, step as train_step  # noqa: E402
from reinit_jax.train.state import base_keys, init_state  # noqa: E402

SHAPE = (28, 28, 1)


def _model(name: str, width: float | None):
  opts = {} if width is None else {"width": width}
  return models.create(name, 10, input_shape=SHAPE, **opts)


def _traced(taps: bool, build):
  """``build()`` traced and compiled with the narrow-conv rewrite on or off."""
  keep = cpu_conv.NARROW_IN
  cpu_conv.NARROW_IN = keep if taps else 0
  try:
    return build()
  finally:
    cpu_conv.NARROW_IN = keep


def _convolutions(compiled) -> int:
  """Convolutions XLA runs in a compiled program (the taps replace some: the contenders differ)."""
  return compiled.as_text().count(" convolution(")


def train_contender(model, batch: int, steps: int, taps: bool):
  tx = schedules.make_optimizer("sgd", 0.0, 0.9)
  step = train_step.make_step(model, tx, lambda *a: jnp.float32(0.01), lambda k, x, t: x, distill="off",
                     beta=0.0)
  init = jax.jit(jax.vmap(lambda k, s: init_state(model, methods.get("standard"), tx, k, s, False)))
  state = init(base_keys([0]), jnp.zeros((1,), jnp.int32))
  rng = np.random.default_rng(0)
  n = batch * steps
  x = jnp.asarray(rng.random((n, *SHAPE), np.float32))
  y = jnp.asarray(rng.integers(0, 10, n, dtype=np.int32))
  idx = jnp.asarray(np.arange(n, dtype=np.int32).reshape(1, steps, batch))
  call = _traced(taps, lambda: train_step.make_train_call(step, cached=False).lower(
      state, x, y, None, idx).compile())
  box = [state]

  def fn():
    box[0], m = call(box[0], x, y, None, idx)
    jax.block_until_ready(m)

  return fn, _convolutions(call)


def eval_contender(model, n: int, batch: int, taps: bool):
  v = jax.tree.map(lambda a: a[None], model.init(jax.random.PRNGKey(0)))
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.random((n, *SHAPE), np.float32))
  y = jnp.asarray(rng.integers(0, 10, n, dtype=np.int32))
  idx = jnp.arange(n, dtype=jnp.int32).reshape(n // batch, batch)
  w = jnp.ones(idx.shape, jnp.float32)
  fn = _traced(taps, lambda: train_step.make_eval(model, lambda k, x, t: x).lower(
      v, x, y, idx, w).compile())
  return lambda: jax.block_until_ready(fn(v, x, y, idx, w)), _convolutions(fn)


def init_compile_seconds(model, flat: bool) -> float:
  """Seconds to lower and compile ``model.init`` (a new function each time: nothing cached)."""
  keep = layers.kernel_init
  if not flat:  # flax's initializers on the kernel's own shape
    layers.kernel_init = lambda name: (nn.initializers.variance_scaling(2.0, "fan_in", "normal")
                                       if name == "he_normal" else nn.initializers.xavier_uniform())
  try:
    t = time.perf_counter()
    jax.jit(lambda k: model.init(k)).lower(jax.random.PRNGKey(0)).compile()
    return time.perf_counter() - t
  finally:
    layers.kernel_init = keep


def bench(name, width, rounds, batch, steps, n_eval=10000, eval_batch=1000, compiles=2):
  model = _model(name, width)
  label = name if width is None else f"{name} w{width}"
  out = {}
  impls = ("xla", "taps")
  train = {i: train_contender(model, batch, steps, i == "taps") for i in impls}
  evals = {i: eval_contender(model, n_eval, eval_batch, i == "taps") for i in impls}
  xla_n, taps_n = ([c[i][1] for c in (train, evals)] for i in impls)
  if not all(a > b for a, b in zip(xla_n, taps_n)):
    raise SystemExit(f"the taps did not replace a conv (convolutions: {xla_n} vs {taps_n})")
  out["convolutions_in_hlo"] = {"xla": xla_n, "taps": taps_n}
  tr = common.side_by_side({i: train[i][0] for i in impls}, rounds)
  ev = common.side_by_side({i: evals[i][0] for i in impls}, rounds)
  for what, t in (("train_call", tr), ("eval_10k" if n_eval == 10000 else f"eval_{n_eval}", ev)):
    out[what] = {"xla_ms": round(t["xla"] * 1e3, 1), "taps_ms": round(t["taps"] * 1e3, 1),
                 "speedup": round(t["xla"] / t["taps"], 2)}
    print(f"{label}: {what:10s} XLA conv {t['xla'] * 1e3:8.1f} ms   taps "
          f"{t['taps'] * 1e3:8.1f} ms   {t['xla'] / t['taps']:.2f}x", flush=True)
  c4 = [init_compile_seconds(model, False) for _ in range(compiles)]
  c1 = [init_compile_seconds(model, True) for _ in range(compiles)]
  out["init_compile"] = {"flax_4d_s": round(min(c4), 2), "flat_s": round(min(c1), 2),
                         "speedup": round(min(c4) / min(c1), 1)}
  print(f"{label}: init compile  flax 4-D {min(c4):.2f} s   flat {min(c1):.2f} s   "
        f"{min(c4) / min(c1):.1f}x", flush=True)
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_size_flags(p)
  p.add_argument("--batch", type=int, default=None, help="train batch (default 100; --smoke 4)")
  p.add_argument("--steps", type=int, default=None, help="train steps per call (default 30; "
                 "--smoke 2)")
  a = p.parse_args()
  a.batch, a.steps = a.batch or (4 if a.smoke else 100), a.steps or (2 if a.smoke else 30)
  specs = [("scnn_tiny", None)] + ([] if a.quick or a.smoke else [("scnn", 0.25)])
  rounds = 1 if a.smoke else 3 if a.quick else 5
  # --smoke: 200 evaluation images in batches of 100, one compilation of each model.init
  sizes = dict(n_eval=200, eval_batch=100, compiles=1) if a.smoke else {}
  figures = {"env": common.env_line(), "batch": a.batch, "steps_per_call": a.steps,
             "smoke": a.smoke}
  for name, width in specs:
    figures[f"{name}" + (f"_w{width}" if width else "")] = bench(name, width, rounds, a.batch,
                                                                  a.steps, **sizes)
  common.emit(figures)


if __name__ == "__main__":
  main()
