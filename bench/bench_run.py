"""``train.run`` end to end against its own train step at the same per-device work (issue: the real-run
throughput gap).

Two figures for one fixed config (a study's model, batch and seeds, [Z] §3's staged training):

* ``step``: the jitted train call of that run (``build.Built.compiled.train_call``: the scanned
  steps, batch gather and augmentation on the device) called back to back on the stage's
  device-resident data, after a warm-up call — what the engine's step can do;
* ``run``: ``train.run(config)`` from the built run to its summary, counting everything a user
  waits for between the first and the last step (index batches, metric fetches, evaluations,
  checkpoints, events); its summary's time breakdown tells where the rest went.

Both in examples/s (every seed's examples) and seed-steps/s; ``ratio`` = run ÷ step (goal ≥ 0.8).
Compilation is outside both figures (reported apart). The last line is JSON.

    python bench/bench_run.py --quick                    # CPU: scnn_tiny on Fashion-MNIST
    python bench/bench_run.py --smoke                    # the same, 200 images, batch 20, 2 epochs
    python bench/bench_run.py --model resnet18 --width 1 --dtype bfloat16 --batch 128 --seeds 3 \\
        --epochs 4                                         # GPU (Fashion-MNIST read without TensorFlow)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from reinit_jax import launch  # noqa: E402
from reinit_jax.train import feed, loop, validation  # noqa: E402
from reinit_jax.train.build import Built  # noqa: E402


def make_config(a) -> "ml_collections.ConfigDict":  # noqa: F821
  c = launch.base_config()
  c.name = "bench_run"
  if a.data == "fashion_mnist":
    c.data.dataset = "fashion_mnist"
    c.data.train_subset = a.train
  else:  # the synthetic task's features are 128-d: an MLP; images need a TFDS data set
    c.data.dataset = "synthetic"
    c.data.synthetic_train = a.train
    c.data.synthetic_test = 1000
  c.data.batch_size = a.batch
  c.model.name = a.model
  if a.model != "mlp":
    c.model.options = {"dtype": a.dtype, **({"width": a.width} if a.width else {})}
  c.optim.epochs = a.epochs
  c.optim.momentum = 0.9
  c.reinit.stages = 2
  c.reinit.method = "shrink_perturb"
  c.run.seeds = tuple(range(a.seeds))
  c.run.progress = "off"
  c.run.max_steps_per_call = a.steps_per_call
  c.run.restart = True
  return c


def step_rate(r, calls: int) -> float:
  """Seconds per step of the run's train call on stage 1's data, median over ``calls`` calls."""
  inputs, geometry = r.inputs, r.geometry
  state = r.init()
  x, y = inputs.arrays(lambda d: d.train(1))
  n, B, spe = geometry.stage_examples[0], geometry.batch_sizes[0], geometry.steps_per_epoch[0]
  g = feed.epochs_per_call(geometry.epochs_per_stage, spe, r.config.run.max_steps_per_call)
  idx = jax.device_put(feed.train_indices(inputs.seeds, 0, g, n, B), inputs.place.batch(3, 2))
  tp = None
  if r.compiled.distill_mode == "cached":
    tp = jnp.zeros((len(inputs.seeds), n, inputs.data.meta.num_classes), jnp.float32)
  box = [state]

  def call():
    box[0], m = r.compiled.train_call(box[0], x, y, tp, idx)
    jax.block_until_ready(m)

  sec = common.side_by_side({"step": call}, rounds=calls, warmup=1)["step"]
  return sec / (g * spe)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_size_flags(p, "2 epochs on 2,000 images")
  p.add_argument("--data", default="fashion_mnist", choices=("fashion_mnist", "synthetic"))
  p.add_argument("--model", default="scnn_tiny")
  p.add_argument("--width", type=float, default=None, help="channel scale (default: the model's)")
  p.add_argument("--dtype", default="float32")
  p.add_argument("--batch", type=int, default=100)
  p.add_argument("--seeds", type=int, default=1)
  p.add_argument("--train", type=int, default=3000)
  p.add_argument("--epochs", type=int, default=4)
  p.add_argument("--steps-per-call", type=int, default=30)
  a = p.parse_args()
  if a.smoke:  # 2 stages of one epoch of 10 steps, 5 steps per call
    a.epochs, a.train, a.batch, a.steps_per_call = 2, min(a.train, 200), min(a.batch, 20), 5
  elif a.quick:
    a.epochs, a.train = 2, min(a.train, 2000)
  checked = validation.check(make_config(a))
  c, r = checked.config, Built(checked)
  sec_step = step_rate(r, calls=1 if a.smoke else 3 if a.quick else 6)
  with tempfile.TemporaryDirectory() as wd:
    s = loop.run(c, wd)
  t = s["times"]
  in_loop = t["train"] + t["evaluate"] + t["checkpoint"] + t["event"]
  seeds, B = len(c.run.seeds), c.data.batch_size
  out = {
    "backend": jax.default_backend(), "model": a.model, "batch": B, "seeds": seeds,
    "step_examples_per_s": seeds * B / sec_step,
    # Between the first and the last step, compilation aside (the phases are disjoint from it).
    "run_examples_per_s": s["steps"] * seeds * B / max(in_loop, 1e-9),
    "run_train_phase_examples_per_s": s["steps"] * seeds * B / max(t["train"], 1e-9),
    "step_seed_steps_per_s": seeds / sec_step,
    "run_seed_steps_per_s": s["steps"] * seeds / max(in_loop, 1e-9),
    "times": t, "loop_overhead_fraction": 1 - t["train"] / max(in_loop, 1e-9),
  }
  out["ratio"] = out["run_examples_per_s"] / out["step_examples_per_s"]
  print(f"step {out['step_examples_per_s']:.0f} ex/s, run {out['run_examples_per_s']:.0f} ex/s "
        f"(train phase {out['run_train_phase_examples_per_s']:.0f}): ratio {out['ratio']:.2f}; "
        f"times {t}")
  print(json.dumps(out))


if __name__ == "__main__":
  main()
