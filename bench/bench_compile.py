"""Train-step compilations and compile seconds of whole runs, for T ∈ {1, 5, 25} and online mode.

Runs ``train.run`` on the synthetic task (MLP, shrink & perturb, 25 epochs = 25 full-batch steps;
full mode 100) and counts, per run:
  * ``train_compiles``: compilations of the jitted train call (its ``_cache_size()``), the figure
    whose goal is "the same for every T" (one);
  * ``event_compiles``: compilations of the jitted event;
  * ``backend_compiles`` / ``compile_s``: every XLA compilation of the run and its seconds
    (``jax.monitoring``), init/eval/norm functions included.
Online mode (chunks = stages = 5, stage t trains on chunks 1..t) twice: as the engine builds it
(``train/build.py`` gives online runs fixed-shape calls: rows padded to the largest stage, steps to
the longest call), and with ``capacity = max_steps = 256`` injected by wrapping
``step.make_train_call``/``make_event``; the two final parameter digests are compared. Every run
starts from an empty ``train/compiled.py`` cache, so it builds (and counts) its own jitted functions.

Usage: ``python bench/bench_compile.py --quick`` (``--smoke``: T = 1, 2 and C = 2 at 4 steps, for
tests/test_bench.py); the last line is JSON.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from reinit_jax import train  # noqa: E402
from reinit_jax.train import compiled, build, step as train_step  # noqa: E402

_made = {"train": [], "event": []}
_orig_train, _orig_event = train_step.make_train_call, train_step.make_event
_inject = {}


def _count(fn):
  return (getattr(fn, "jitted", fn))._cache_size()


def _make_train_call(step, **kw):
  fn = _orig_train(step, **{**kw, **_inject.get("train", {})})
  _made["train"].append(fn)
  return fn


def _make_event(*a, **kw):
  fn = _orig_event(*a, **{**kw, **_inject.get("event", {})})
  _made["event"].append(fn)
  return fn


train_step.make_train_call, train_step.make_event = _make_train_call, _make_event


def config(T, epochs, synthetic_test=1000, **kw):
  """The synthetic-task run with T stages of ``epochs // T`` epochs; ``kw``: ``section.field``
  overrides (``{"data.chunks": 5}``)."""
  c = train.base_config()
  c.name, c.run.progress, c.optim.epochs, c.reinit.stages = f"T{T}", "off", epochs, T
  c.data.synthetic_train, c.data.synthetic_test = 256, synthetic_test
  c.run.eval_batch_size, c.reinit.norm_batch_size = 1000, 64
  c.reinit.method = "shrink_perturb"
  for k, v in kw.items():
    section, field = k.split(".")
    c[section][field] = v
  return c


def one_run(c):
  """Runs ``c`` in a fresh workdir; returns its compile figures and summary."""
  _made["train"].clear()
  _made["event"].clear()
  # train/compiled.py caches its jitted functions per process (a grid's points share them): every run
  # here builds, and counts, its own.
  compiled.clear()
  counter = common.CompileCounter.get()
  n0, s0 = counter.snapshot()
  with tempfile.TemporaryDirectory() as wd:
    summary = train.run(c, wd)
  n1, s1 = counter.snapshot()
  return {"train_compiles": sum(_count(f) for f in _made["train"]),
          "event_compiles": sum(_count(f) for f in _made["event"]),
          "backend_compiles": n1 - n0, "compile_s": round(s1 - s0, 2),
          "steps": summary["steps"], "events": summary["events"],
          "wall_s": round(summary["wall_time_s"], 2)}, summary


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  common.add_size_flags(p)
  a = p.parse_args()
  # --smoke: T = 1 and 2 of 4 steps and an online run of 2 chunks, 200 test examples.
  Ts, epochs, chunks = ((1, 2), 4, 2) if a.smoke else ((1, 5, 25), 25 if a.quick else 100, 5)
  n_test = 200 if a.smoke else 1000
  figs = {"env": common.env_line(), "quick": a.quick, "smoke": a.smoke, "T": {}}
  for T in Ts:
    figs["T"][str(T)], _ = one_run(config(T, epochs, n_test))
    print(f"T={T:2d} {figs['T'][str(T)]}", flush=True)
  counts = {v["train_compiles"] for v in figs["T"].values()}
  figs["same_count_every_T"] = len(counts) == 1
  # Online: C chunks of the 256 training examples, batch 16, 2 epochs per stage.
  oc = functools.partial(config, chunks, 2 * chunks, n_test, **{
      "data.chunks": chunks, "data.batch_size": 16, "reinit.method": "standard"})
  before, s_before = one_run(oc())
  _inject["train"] = {"capacity": 256, "max_steps": 256}
  _inject["event"] = {"capacity": 256}
  after, s_after = one_run(oc())
  _inject.clear()
  same = s_before["params_digest"] == s_after["params_digest"]
  figs[f"online_C{chunks}"] = {"engine_today": before, "fixed_shape": after, "same_params": same,
                               "test_accuracy": [s_before["test_accuracy"]["mean"],
                                                 s_after["test_accuracy"]["mean"]]}
  print(f"online C={chunks} today:       {before}", flush=True)
  print(f"online C={chunks} fixed shape: {after} (bitwise same params: {same})", flush=True)
  common.emit(figs)


if __name__ == "__main__":
  main()
