"""K = 8 seeds vmapped in one jitted call against 8 sequential single-seed calls ([LW] §1.1 averages
over seeds).

The engine trains every seed of a config together (``make_train_call`` vmaps the scanned step over
the seed axis). All contenders do the same work: 8 seeds × n steps. ``vmapped``: one call with
S = 8; ``sequential``: the S = 1 call run 8 times; ``mapped``: one call with the seeds under
``lax.map`` instead of vmap (``make_train_call(seed_axis='map')``). Throughput = seed-steps per
second; the figure is ``speedup`` = vmapped throughput ÷ one run's throughput (goal for the
synthetic task ≥ 0.7·K = 5.6). Tasks: the synthetic task (MLP 128-32-32-8, 256 examples, full
batch, a 200-step round per call; quick: 50) and scnn_tiny (32×32×3, batch 32, 4 steps per call).

The JSON also gives XLA's FLOP count per seed-step, one run's achieved GFLOP/s and this CPU's
matmul peak (a 1024² jitted matmul): their ratio bounds what any batching of K seeds can gain.

Usage: ``python bench/bench_seeds.py --quick`` (``--smoke``: K = 2 seeds, 2 steps per call,
1 round); the last line is JSON.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from reinit_jax import methods, models  # noqa: E402
from reinit_jax.train import schedules, step as train_step  # noqa: E402
from reinit_jax.train.state import base_keys, init_state  # noqa: E402

K = 8


def contender(model, n_examples, batch, steps, seeds, lr, seed_axis="vmap"):
  tx = schedules.make_optimizer("sgd", 0.0, 0.9)
  step = train_step.make_step(model, tx, lambda *a: jnp.float32(lr), lambda k, x, t: x, distill="off",
                     beta=0.0)
  call = train_step.make_train_call(step, cached=False, seed_axis=seed_axis)
  init = jax.jit(jax.vmap(lambda k, s: init_state(model, methods.get("standard"), tx, k, s, False)))
  box = [init(base_keys(seeds), jnp.asarray(seeds, jnp.int32))]
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((n_examples, *model.input_shape), np.float32))
  y = jnp.asarray(rng.integers(0, model.num_classes, n_examples, dtype=np.int32))
  idx = np.stack([np.stack([rng.permutation(n_examples)[:batch] for _ in range(steps)])
                  for _ in seeds]).astype(np.int32)
  idx = jnp.asarray(idx)

  def fn():
    box[0], m = call(box[0], x, y, None, idx)
    jax.block_until_ready(m)

  # One step of all seeds (the scan's body is counted once): per seed-step.
  fn.flops = common.call_flops(call, box[0], x, y, None, idx) / len(seeds)
  return fn


def matmul_peak_gflops(n: int = 1024, rounds: int = 5) -> float:
  """This machine's float32 GFLOP/s on one large jitted matmul: the ceiling any run can reach."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
  f = jax.jit(lambda a: a @ a)

  def fn():
    jax.block_until_ready(f(a))

  return 2 * n ** 3 / common.side_by_side({"mm": fn}, rounds)["mm"] / 1e9


def bench_task(name, model, n_examples, batch, steps, rounds, lr, K=K):
  one = contender(model, n_examples, batch, steps, [0], lr)
  many = contender(model, n_examples, batch, steps, list(range(K)), lr)
  mapped = contender(model, n_examples, batch, steps, list(range(K)), lr, "map")

  def sequential():
    for _ in range(K):
      one()

  med = common.side_by_side({"vmapped": many, "mapped": mapped, "sequential": sequential,
                             "single": one}, rounds)
  thr_one = steps / med["single"]
  thr_vm = K * steps / med["vmapped"]
  thr_seq = K * steps / med["sequential"]
  thr_map = K * steps / med["mapped"]
  out = {"task": name, "K": K, "steps_per_call": steps, "batch": batch,
         "seed_steps_per_s": {"single": round(thr_one, 1), "vmapped": round(thr_vm, 1),
                              "sequential": round(thr_seq, 1), "mapped": round(thr_map, 1)},
         "speedup_vs_one_run": round(thr_vm / thr_one, 2),
         "vmapped_vs_sequential": round(thr_vm / thr_seq, 2),
         "mapped_vs_one_run": round(thr_map / thr_one, 2),
         "flops_per_seed_step": one.flops,
         "one_run_gflops": round(thr_one * one.flops / 1e9, 2)}
  print(f"{name:10s} one {thr_one:9.1f}  vmapped×{K} {thr_vm:9.1f}  sequential×{K} {thr_seq:9.1f} "
        f"mapped×{K} {thr_map:9.1f} seed-steps/s  speedup {thr_vm / thr_one:.2f}", flush=True)
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  common.add_size_flags(p)
  a = p.parse_args()
  rounds = 1 if a.smoke else 3 if a.quick else 7
  k = 2 if a.smoke else K
  steps = 2 if a.smoke else 50 if a.quick else 200
  figs = {"env": common.env_line(), "quick": a.quick, "smoke": a.smoke}
  mlp = models.create("mlp", 8)
  figs["synthetic"] = bench_task("synthetic", mlp, 256, 256, steps, rounds, 0.05, k)
  figs["synthetic"]["goal"] = 0.7 * k
  figs["synthetic"]["goal_met"] = figs["synthetic"]["speedup_vs_one_run"] >= 0.7 * k
  # The most K seeds can gain over one run on this CPU: its matmul peak over one run's FLOP/s.
  peak = matmul_peak_gflops(128 if a.smoke else 1024, rounds if a.smoke else 5)
  figs["synthetic"]["matmul_peak_gflops"] = round(peak, 1)
  if figs["synthetic"]["one_run_gflops"]:
    figs["synthetic"]["speedup_bound"] = round(peak / figs["synthetic"]["one_run_gflops"], 2)
    print(f"synthetic: one run reaches {figs['synthetic']['one_run_gflops']} GFLOP/s of a "
          f"{peak:.0f} GFLOP/s matmul peak: K seeds can gain at most "
          f"{figs['synthetic']['speedup_bound']}x", flush=True)
  scnn = models.create("scnn_tiny", 10)
  figs["scnn_tiny"] = bench_task("scnn_tiny", scnn, 128, 32, 2 if a.smoke else 4, rounds, 0.01, k)
  common.emit(figs)


if __name__ == "__main__":
  main()
