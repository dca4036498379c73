"""Several methods of one config, one sub-workdir each, and a table of their test accuracies.

A tuple of registry names in ``config.reinit.method`` is handled here rather than in the engine, so
that every run stays one method with its own checkpoints and summary (and resumes on its own).
"""

from __future__ import annotations

import json
import os

import numpy as np


def run_study(config, workdir: str) -> dict[str, dict]:
  """Runs ``config`` once per method of ``config.reinit.method`` (a name, or a tuple of names).

  In a study each method takes the hyperparameters of ``reinit.hparams`` it declares. Returns
  {method: summary}; the study is checked (every name and hyperparameter; the model, methods and
  optimizer built once) before the first run. ``config``: a config, or one that
  ``train.validation.check`` returned (a grid checks its points first).
  """
  from reinit_jax.train import faults, run, validation  # the engine (JAX) only when it runs
  study = config if isinstance(config, validation.Checked) else validation.check(config)
  runs = {m: validation.for_method(study, m) for m in study.methods}
  out = {}
  with faults.StopFlag() as stop:  # a stop during one method's run ends the study (faults.py)
    for m, checked in runs.items():
      done = f" ({', '.join(out)} finished)" if out else ""
      stop.stop_here(f"stopped the study before {m}{done}")
      out[m] = run(checked, os.path.join(workdir, m) if len(runs) > 1 else workdir)
  return out


def _pct(values) -> str:
  """Mean ± std (ddof 0, as summary.json) in %; a single seed shows its value alone."""
  v = 100 * np.asarray(values, dtype=np.float64)
  return f"{v.mean():.2f}" + (f" ± {v.std():.2f}" if v.size > 1 else "")


def memorized(summary: dict) -> list[float] | None:
  """Per seed, the fraction of relabelled training examples fitted to their noisy label at the end
  of the last stage (``train_noisy``, [Z] §6), or None when the run has no such records."""
  last = (summary.get("stages") or [{}])[-1].get("metrics", [])
  per_seed = {r["seed"]: r["accuracy"] for r in last if r.get("split") == "train_noisy"}
  return [per_seed[s] for s in sorted(per_seed)] or None


def table(summaries: dict[str, dict]) -> str:
  """A plain-text table per method: test accuracy at best validation and at the final step (mean ±
  std over seeds; no ± for one seed), the noisy labels memorized when the run has label noise,
  seeds, steps, time."""
  noisy = any(memorized(s) is not None for s in summaries.values())
  head = ["method", "test acc, best val", "test acc, final"]
  head += ["noisy labels memorized"] if noisy else []
  rows = [tuple(head + ["seeds", "steps", "time (s)"])]
  for m, s in summaries.items():
    row = [m, _pct(s["test_accuracy"]["per_seed"]), _pct(s["final_test_accuracy"]["per_seed"])]
    if noisy:
      mem = memorized(s)
      row.append(_pct(mem) if mem else "-")
    rows.append(tuple(row + [str(len(s["test_accuracy"]["per_seed"])), str(s["steps"]),
                             f"{s['wall_time_s']:.1f}"]))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def curves_png(summaries: dict[str, dict], path: str) -> str:
  """[Z] Fig. 2 for the study: test accuracy (mean ± std over seeds) against step per method, stage
  boundaries dashed, from each run's metrics.jsonl; returns the PNG's path."""
  from reinit_jax.analysis import plots
  runs = {}
  for m, s in summaries.items():
    with open(os.path.join(s["workdir"], "metrics.jsonl")) as f:
      runs[m] = [json.loads(line) for line in f if line.strip()]
  return plots.plot_learning_curves(runs, path, splits=("test",),
                                    title="test accuracy (mean ± std over seeds)")
