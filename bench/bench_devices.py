"""The same global batch on 1 and on 8 simulated CPU devices: same parameters, and the scaling.

Each device count runs in its own subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count``
must be set before jax is imported). Inside, the engine's placement (``train.feed.Placement``: a 1-D
'data' mesh, index batches sharded on the batch axis, state and data replicated) drives its scanned
train call for N steps of the synthetic MLP (batch 64) and scnn_tiny (batch 32); the parameters are
saved and compared: ``max_abs_diff`` of every parameter after N steps. Steps/s are reported both
ways; the 8 "devices" share this machine's 2 cores, so the scaling figure checks correctness and
overhead, not speed.

Usage: ``python bench/bench_devices.py --quick`` (``--smoke``: 2 steps); the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

_CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import jax, jax.numpy as jnp, numpy as np
from reinit_jax import methods, models
from reinit_jax.train import feed, schedules, step as train_step
from reinit_jax.train.state import base_keys, init_state
place = feed.Placement()
out = {{"devices": jax.device_count()}}
for name, n, batch, steps, lr in (("mlp", 256, 64, {steps}, 0.05),
                                  ("scnn_tiny", 128, 32, {steps}, 0.01)):
  model = models.create(name, 8 if name == "mlp" else 10)
  tx = schedules.make_optimizer("sgd", 0.0, 0.9)
  step = train_step.make_step(model, tx, lambda *a: jnp.float32(lr), lambda k, x, t: x, distill="off",
                     beta=0.0)
  call = train_step.make_train_call(step, cached=False)
  init = jax.jit(jax.vmap(lambda k, s: init_state(model, methods.get("standard"), tx, k, s, False)))
  state = place.replicate(init(base_keys([0]), jnp.zeros((1,), jnp.int32)))
  rng = np.random.default_rng(0)
  x = place.replicate(rng.standard_normal((n, *model.input_shape)).astype(np.float32))
  y = place.replicate(rng.integers(0, model.num_classes, n).astype(np.int32))
  idx = np.stack([rng.permutation(n)[:batch] for _ in range(steps)])[None].astype(np.int32)
  idx = jax.device_put(idx, place.batch(3, 2))
  state, m = call(state, x, y, None, idx)  # compile + first N steps
  jax.block_until_ready(m)
  params = jax.device_get(state.variables["params"])
  reps, t = 3, time.perf_counter()
  for _ in range(reps):
    state, m = call(state, x, y, None, idx)
  jax.block_until_ready(m)
  out[name] = {{"steps_per_s": reps * steps / (time.perf_counter() - t)}}
  flat = {{jax.tree_util.keystr(p): np.asarray(v) for p, v in
           jax.tree_util.tree_leaves_with_path(params)}}
  np.savez(sys.argv[1] + "_" + name + ".npz", **flat)
print(json.dumps(out))
"""


def child(devices: int, steps: int, prefix: str) -> dict:
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  code = _CHILD.format(root=common.ROOT, steps=steps)
  p = subprocess.run([sys.executable, "-c", code, prefix], env=env, capture_output=True, text=True,
                     timeout=900)
  if p.returncode:
    raise SystemExit(p.stderr[-3000:])
  return json.loads(p.stdout.strip().splitlines()[-1])


def main():
  import numpy as np
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  common.add_size_flags(p)
  a = p.parse_args()
  steps = 2 if a.smoke else 8 if a.quick else 32
  figs = {"quick": a.quick, "smoke": a.smoke, "steps": steps}
  with tempfile.TemporaryDirectory() as tmp:
    res = {d: child(d, steps, os.path.join(tmp, f"d{d}")) for d in (1, 8)}
    for name in ("mlp", "scnn_tiny"):
      one = np.load(os.path.join(tmp, f"d1_{name}.npz"))
      eight = np.load(os.path.join(tmp, f"d8_{name}.npz"))
      diff = max(float(np.max(np.abs(one[k] - eight[k]))) for k in one.files)
      scale = max(float(np.max(np.abs(one[k]))) for k in one.files)
      s1, s8 = res[1][name]["steps_per_s"], res[8][name]["steps_per_s"]
      figs[name] = {"max_abs_diff": diff, "max_abs_param": scale,
                    "steps_per_s": {"1": round(s1, 2), "8": round(s8, 2)},
                    "scaling_8_over_1": round(s8 / s1, 3)}
      print(f"{name:10s} max|Δθ| {diff:.3g} (max|θ| {scale:.3g})  steps/s 1 dev {s1:.2f}, "
            f"8 dev {s8:.2f}", flush=True)
  figs["devices_seen"] = [res[1]["devices"], res[8]["devices"]]
  common.emit(figs)


if __name__ == "__main__":
  main()
