"""Report section on the features plasticity studies track (``run.feature_diagnostics``) and on
step-level events (``reinit.every_steps``), read from each run's metrics.jsonl.

The engine writes, at every evaluation, a record of split 'features' per run: the dormant fraction
of every block's units at τ ∈ {0, 0.025, 0.1} (τ = 0: dead units; Sokar et al. 2023) and the
effective rank and srank of the penultimate block's features (Kumar et al. 2021); the train
records carry ``step_events``, the step-level events so far, and for a unit-level method
``units_reset``, the units they reset (reinit_jax/train/step.py).
Every function takes the report's cells ``{(row, method): (RunInfo, chosen_on_test)}``.
"""

from __future__ import annotations

import re

import numpy as np


def _last_by_seed(records, split: str) -> dict:
  """{seed: the record of ``split`` with the largest step} (a pack's point: its own records)."""
  out = {}
  for r in records:
    if r.get("split") == split and "seed" in r:
      if r["seed"] not in out or r.get("step", -1) >= out[r["seed"]].get("step", -1):
        out[r["seed"]] = r
  return out


def _penultimate(record: dict) -> int | None:
  blocks = [int(m.group(1)) for k in record for m in [re.match(r"dormant_0\.1_block(\d+)$", k)] if m]
  return max(blocks) if blocks else None


def _cell(values, scale: float = 1.0, digits: int = 1) -> str:
  a = scale * np.asarray(values, np.float64)
  return f"{a.mean():.{digits}f} ± {a.std():.{digits}f}" if a.size > 1 else f"{a.mean():.{digits}f}"


def features_table(cells) -> str | None:
  """One row per cell with feature records: at the last evaluation, mean ± std over seeds."""
  rows = []
  for (row, method), (run, _) in sorted(cells.items()):
    last = _last_by_seed(run.records, "features")
    if not last:
      continue
    block = _penultimate(next(iter(last.values())))
    events = _last_by_seed(run.records, "train")
    counts = [r["step_events"] for r in events.values() if "step_events" in r]
    units = [r["units_reset"] / max(r["step_events"], 1) for r in events.values()
             if "units_reset" in r]
    rows.append(
      f"| {row} | {method} | {_cell([r[f'dormant_0.1_block{block}'] for r in last.values()], 100)} "
      f"| {_cell([r[f'dormant_0_block{block}'] for r in last.values()], 100)} "
      f"| {_cell([r['srank'] for r in last.values()])} "
      f"| {_cell([r['effective_rank'] for r in last.values()])} "
      f"| {_cell(counts, digits=0) if counts else '—'} "
      f"| {_cell(units) if units else '—'} |")
  if not rows:
    return None
  head = ("| row | method | dormant τ=0.1 (penultimate block) % | dead % | srank | effective rank "
          "| step-level events | units reset per event |")
  return "\n".join([head, "| --- | --- |" + " ---: |" * 6, *rows])


def sections(cells) -> list[str]:
  """The report.md lines of the features table (empty when no run recorded features)."""
  table = features_table(cells)
  if not table:
    return []
  return ["## Features at the last evaluation (run.feature_diagnostics)", "", table, "",
          "Mean ± std over seeds, on the first 512 examples of the last stage's training view: the "
          "share of the penultimate block's units with ReDo score ≤ 0.1 and that never fire, the "
          "srank (δ = 0.01) and effective rank of its features, the step-level events of the "
          "run (reinit.every_steps) and the units a unit-level method reset per event.", ""]
