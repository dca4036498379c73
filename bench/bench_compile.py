"""Train-step compilations and compile seconds of whole runs, for T ∈ {1, 5, 25} and online mode.

Runs ``train.run`` on the synthetic task (MLP, shrink & perturb, 25 epochs = 25 full-batch steps;
full mode 100) and counts, per run:
  * ``train_compiles``: compilations of the jitted train call (its ``_cache_size()``), the figure
    whose goal is "the same for every T" (one);
  * ``event_compiles``: compilations of the jitted event;
  * ``backend_compiles`` / ``compile_s``: every XLA compilation of the run and its seconds
    (``jax.monitoring``), init/eval/norm functions included.
Online mode (chunks = stages = 5, stage t trains on chunks 1..t): once as the engine builds it
today, and once with the fixed-shape train call and event of ``train/step.py``
(``capacity``/``max_steps``), which loop.py does not pass yet; the bench injects them by wrapping
``step.make_train_call``/``make_event`` (the two-line change loop.py needs; see bench/README.md).

Usage: ``python bench/bench_compile.py --quick``; the last line is JSON.
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
from reinit_jax.train import step as S  # noqa: E402

_made = {"train": [], "event": []}
_orig_train, _orig_event = S.make_train_call, S.make_event
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


S.make_train_call, S.make_event = _make_train_call, _make_event


def config(T, epochs, **kw):
  c = train.base_config()
  c.name, c.progress, c.epochs, c.stages = f"T{T}", "off", epochs, T
  c.synthetic_train, c.synthetic_test, c.eval_batch_size, c.norm_batch_size = 256, 1000, 1000, 64
  c.method = "shrink_perturb"
  for k, v in kw.items():
    c[k] = v
  return c


def one_run(c):
  """Runs ``c`` in a fresh workdir; returns its compile figures and summary."""
  _made["train"].clear()
  _made["event"].clear()
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
  p.add_argument("--quick", action="store_true")
  a = p.parse_args()
  figs = {"env": common.env_line(), "quick": a.quick, "T": {}}
  epochs = 25 if a.quick else 100
  for T in (1, 5, 25):
    figs["T"][str(T)], _ = one_run(config(T, epochs))
    print(f"T={T:2d} {figs['T'][str(T)]}", flush=True)
  counts = {v["train_compiles"] for v in figs["T"].values()}
  figs["same_count_every_T"] = len(counts) == 1
  # Online: 5 chunks of the 256 training examples, batch 16, 2 epochs per stage.
  oc = functools.partial(config, 5, 10, chunks=5, batch_size=16, method="standard")
  before, s_before = one_run(oc())
  _inject["train"] = {"capacity": 256, "max_steps": 256}
  _inject["event"] = {"capacity": 256}
  after, s_after = one_run(oc())
  _inject.clear()
  same = s_before["params_digest"] == s_after["params_digest"]
  figs["online_C5"] = {"engine_today": before, "fixed_shape": after, "same_params": same,
                       "test_accuracy": [s_before["test_accuracy"]["mean"],
                                         s_after["test_accuracy"]["mean"]]}
  print(f"online C=5 today:       {before}", flush=True)
  print(f"online C=5 fixed shape: {after} (bitwise same params: {same})", flush=True)
  common.emit(figs)


if __name__ == "__main__":
  main()
