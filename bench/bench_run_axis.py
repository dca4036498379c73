"""How a grid's runs should share the CPU: seeds split over host devices, and how many runs per
call ([LW] §1.1's synthetic task, the 18-point main grid's unit of work).

The contenders are the engine's own train call (``build.Built.compiled.train_call``: a 200-step
round of full-batch gradient descent, one data set per run) for R runs, built with two placements
in one process that has one XLA:CPU device per core (as ``launch.py`` gives it):

* ``one``: every run on one device (``run.mesh`` with a seed count that does not split);
* ``split``: the runs split over the host devices (``run.mesh='auto'`` on CPU; ``shard_map``).

R = 10 is one grid point at 10 seeds; R = 30 and R = 180 are what batching 3 or all 18 points on
the run axis would give one call. Figures: seed-steps/s of each (R, placement) and the ratios
``split ÷ one`` (the mesh's gain) and ``R ÷ 10`` per placement (the gain of batching points).
Timed side by side in rounds (``common.side_by_side``). The last line is JSON.

    python bench/bench_run_axis.py --quick     # R = 10, 30
    python bench/bench_run_axis.py --smoke     # R = 2, 4; 10 steps per call, 1 round
    python bench/bench_run_axis.py             # R = 10, 30, 180
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]
from reinit_jax.backends import cpu_host  # noqa: E402

cpu_host.one_cpu_device_per_core()  # as launch.py; before common, whose imports start JAX's backend

import common  # noqa: E402

import argparse  # noqa: E402
import json  # noqa: E402

import jax  # noqa: E402

from reinit_jax import launch  # noqa: E402
from reinit_jax.train import feed, validation  # noqa: E402
from reinit_jax.train.build import Built  # noqa: E402


def build(runs: int, split: bool, steps: int = 200):
  """(call, steps per call) for ``runs`` synthetic-task runs, one device or split over all."""
  c = launch.base_config()
  c.data.dataset, c.data.batch_size, c.data.per_seed = "synthetic", 0, True
  c.model.name = "mlp"
  c.optim.epochs, c.optim.learning_rate, c.optim.momentum = 1800, 0.05, 0.0
  c.reinit.stages = 9
  c.run.seeds = tuple(range(runs))
  c.run.max_steps_per_call = steps
  checked = validation.check(c)
  c = checked.config
  orig = feed.placement
  feed.placement = (lambda policy, s, streaming=False: orig("auto", s) if split
                    else feed.Placement(1, jax.devices()[:1]))
  try:
    r = Built(checked)
  finally:
    feed.placement = orig
  inputs, geometry = r.inputs, r.geometry
  x, y = inputs.arrays(lambda d: d.train(1))
  idx = inputs.place.put(feed.train_indices(inputs.seeds, 0, steps, geometry.stage_examples[0],
                                            geometry.batch_sizes[0]),
                         inputs.place.batch(3, 2, seeded=True))
  box = [r.init()]

  def call():
    box[0], m = r.compiled.train_call(box[0], x, y, None, idx)
    jax.block_until_ready(m)

  return call, steps, r.inputs.place.runs


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_size_flags(p, "R = 10, 30")
  p.add_argument("--rounds", type=int, default=None)
  a = p.parse_args()
  cpu_host.tune_cpu_allocator()
  sizes = (2, 4) if a.smoke else (10, 30) if a.quick else (10, 30, 180)
  contenders, steps, devices = {}, {}, {}
  for R in sizes:
    for split in (False, True):
      name = f"R{R}_{'split' if split else 'one'}"
      contenders[name], steps[name], devices[name] = build(R, split, 10 if a.smoke else 200)
  rounds = a.rounds or (1 if a.smoke else 3 if a.quick else 5)
  sec = common.side_by_side(contenders, rounds=rounds, warmup=1)
  rate = {k: int(k.split("_")[0][1:]) * steps[k] / v for k, v in sec.items()}
  out = {"backend": jax.default_backend(), "devices": jax.device_count(),
         "seed_steps_per_s": rate, "devices_used": devices,
         "split_over_one": {R: rate[f"R{R}_split"] / rate[f"R{R}_one"] for R in sizes},
         f"R_over_{sizes[0]}": {f"{R}_{m}": rate[f"R{R}_{m}"] / rate[f"R{sizes[0]}_{m}"]
                                for R in sizes for m in ("one", "split")}}
  for k, v in rate.items():
    print(f"{k:>12}: {v:8.0f} seed-steps/s on {devices[k]} device(s)")
  print(json.dumps(out))


if __name__ == "__main__":
  main()
