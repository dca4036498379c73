"""Report sections on fitting the training data ([Z] §6 label noise, [AA] §4 online learning).

Read from the engine's summary.json (docs/CONTRACTS.md): ``final_test_accuracy`` (test accuracy at
the last epoch, shown next to the one at the best validation accuracy: with label noise the two
part ways once the network memorizes the noisy labels, [Z] §6), the stage records
``stages[i].metrics`` holding the training-set splits of ``run.eval_train`` (train_fit,
train_noisy, train_noisy_clean, train_clean; reinit_jax/train/train_set_eval.py) and ``epochs_to_fit``.
Every function takes the report's cells ``{(row, method): (RunInfo, chosen_on_test)}``.
"""

from __future__ import annotations

import math

import numpy as np

FIT_SPLITS = ("train_fit", "train_noisy", "train_noisy_clean", "train_clean")
_HEAD = {"train_fit": "train (labels trained on)", "train_noisy": "relabelled vs noisy label",
         "train_noisy_clean": "relabelled vs clean label", "train_clean": "not relabelled",
         "test": "test"}


def final_test(run) -> dict:
  """``{seed: test accuracy at the final epoch}`` from summary.final_test_accuracy ({} if absent)."""
  fa = run.summary.get("final_test_accuracy")
  ps = fa.get("per_seed") if isinstance(fa, dict) else None
  seeds = run.summary.get("seeds") or run.config.get("seeds") or []
  if not isinstance(ps, list) or len(ps) != len(seeds):
    return {}
  return {int(s): float(v) for s, v in zip(seeds, ps)
          if isinstance(v, (int, float)) and math.isfinite(v)}


def _cell(values) -> str:
  """``mean ± std`` in % over seeds (ddof 0), the value alone for one seed."""
  a = 100 * np.asarray(values, np.float64)
  return f"{a.mean():.2f} ± {a.std():.2f}" if a.size > 1 else f"{a.mean():.2f}"


def stage_fit_table(cells) -> str | None:
  """Markdown: per cell and stage, mean ± std (%) over seeds of the training-set splits at the
  stage's end (its last evaluation), with the test accuracy there ([AA] §4: accuracy after each
  online stage); None when no run recorded any."""
  lines = []
  present = set()
  for (row, method), (r, _) in sorted(cells.items()):
    for st in r.summary.get("stages") or []:
      by = {}
      for m in st.get("metrics") or []:
        if m.get("split") in FIT_SPLITS + ("test",) and isinstance(m.get("accuracy"),
                                                                    (int, float)):
          by.setdefault(m["split"], []).append(m["accuracy"])
      if set(by) & set(FIT_SPLITS):
        present |= set(by)
        lines.append((row, method, st.get("stage"), by))
  if not lines:
    return None
  cols = [s for s in FIT_SPLITS + ("test",) if s in present]
  out = ["| setting | method | stage | " + " | ".join(_HEAD[s] for s in cols) + " |",
         "| --- | --- | ---: |" + " ---: |" * len(cols)]
  for row, method, stage, by in lines:
    vals = [_cell(by[s]) if s in by else "—" for s in cols]
    out.append(f"| {row} | {method} | {stage} | " + " | ".join(vals) + " |")
  return "\n".join(out)


def epochs_table(cells) -> str | None:
  """Markdown: per cell and stage, epochs to reach the training-accuracy threshold (mean ± std
  over the seeds that reached it) and how many seeds did; None when no run has epochs_to_fit."""
  out = []
  for (row, method), (r, _) in sorted(cells.items()):
    per_stage = r.summary.get("epochs_to_fit")
    if not isinstance(per_stage, list) or not per_stage:
      continue
    thr = r.summary.get("fit_threshold")
    cells_ = []
    for seeds in per_stage:
      hit = [e for e in seeds if isinstance(e, (int, float))]
      mean = (f"{np.mean(hit):.1f} ± {np.std(hit):.1f}" if len(hit) > 1
              else (f"{hit[0]}" if hit else "—"))
      cells_.append(f"{mean} ({len(hit)}/{len(seeds)})")
    out.append((row, method, thr, cells_))
  if not out:
    return None
  width = max(len(c) for *_, c in out)
  lines = ["| setting | method | threshold | " + " | ".join(f"stage {t}" for t in
                                                            range(1, width + 1)) + " |",
           "| --- | --- | ---: |" + " ---: |" * width]
  for row, method, thr, cs in out:
    thr_s = f"{100 * thr:g}%" if isinstance(thr, (int, float)) else "?"
    lines.append(f"| {row} | {method} | {thr_s} | " + " | ".join(cs + ["—"] * (width - len(cs)))
                 + " |")
  return "\n".join(lines)


def sections(cells) -> list[str]:
  """The report.md lines of the two training-set tables (empty when the runs have neither)."""
  md = []
  fit = stage_fit_table(cells)
  if fit:
    md += ["## Training-set accuracy at the end of each stage (%) [Z §6, AA §4]", "", fit, "",
           "Mean ± std over seeds of the stage's last evaluation (run.eval_train): the training "
           "view of the stage against the labels trained on; with label noise the relabelled "
           "examples against their noisy and their original labels, and the others. High "
           "'relabelled vs noisy label' = the noise is memorized.", ""]
  ep = epochs_table(cells)
  if ep:
    md += ["## Epochs to fit each stage [AA §4]", "", ep, "",
           "First epoch of the stage whose training accuracy reached the threshold (mean ± std "
           "over the seeds that reached it; (k/S): seeds that did). Only evaluations that "
           "happened count; the budget is fixed, so '—' means the budget was too short.", ""]
  return md
