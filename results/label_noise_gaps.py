"""[Z] §6 from a label-noise grid: re-initialization against standard training per setting, q and
distillation, and paired sign tests (Holm-corrected) pooled over the noisy cells.

    python results/label_noise_gaps.py runs/label_noise_cpu

Per cell (5 seeds): Δ = mean over seeds of (method − standard) test accuracy in points, at best
validation and at the final step, with the seeds it wins (a sign test on 5 pairs cannot reach
p < 0.05: its smallest two-sided p is 0.0625, hence the pooled tests); memorized = relabelled
training examples fitted to their noisy label after the last stage (%, mean over seeds).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from reinit_jax.analysis import stats

SETTINGS = {1: "weight decay 5e-4 + cosine per stage", 2: "Ø (constant lr, no weight decay)"}
METHODS = ("shrink_perturb", "layerwise")


def load(root, reg, q, method, distill):
  path = os.path.join(root, f"reg-{reg}_q-{q}_method-{method}_distill-{distill}", "summary.json")
  with open(path) as f:
    s = json.load(f)
  noisy = [r for r in s["stages"][-1]["metrics"] if r["split"] == "train_noisy"]
  mem = np.mean([r["accuracy"] for r in noisy]) if noisy else np.nan
  return (np.asarray(s["test_accuracy"]["per_seed"]), np.asarray(s["final_test_accuracy"]["per_seed"]),
          100 * mem)


def main(root):
  print("| setting | q | distill | method | Δ best val (wins/5) | Δ final (wins/5) | memorized: "
        "standard → method |\n| --- | ---: | --- | --- | ---: | ---: | ---: |")
  pooled = {}  # (setting, when) -> {method: {(q, distill, seed): accuracy}}
  for reg, name in SETTINGS.items():
    for q in ("0.0", "0.2", "0.4"):
      for distill in ("False", "True"):
        base = load(root, reg, q, "standard", distill)
        for m in METHODS:
          got = load(root, reg, q, m, distill)
          cells = [f"{100 * (g - b).mean():+.2f} ({int((g > b).sum())})" for g, b in zip(got[:2], base[:2])]
          mem = "—" if np.isnan(base[2]) else f"{base[2]:.0f} → {got[2]:.0f}"
          print(f"| {name} | {q} | {distill.lower()} | {m} | {cells[0]} | {cells[1]} | {mem} |")
          if q != "0.0":
            for when, i in (("best val", 0), ("final", 1)):
              for meth, acc in (("standard", base[i]), (m, got[i])):
                pooled.setdefault((name, when), {}).setdefault(meth, {}).update(
                  {(q, distill, seed): a for seed, a in enumerate(acc)})
  print("\nSign tests, q ∈ {0.2, 0.4} × distillation off/on pooled (20 pairs), Holm over the 12 tests:")
  rows = []
  for (name, when), by_method in pooled.items():
    for m in METHODS:
      t = stats.sign_test(list(by_method[m].values()), list(by_method["standard"].values()))
      rows.append((name, when, m, t))
  adjusted, reject = stats.holm([t.p_value for *_, t in rows])
  print("| setting | test accuracy at | method vs standard | wins | losses | ties | p | p (Holm) |"
        "\n| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
  for (name, when, m, t), p, r in zip(rows, adjusted, reject):
    print(f"| {name} | {when} | {m} | {t.wins} | {t.losses} | {t.ties} | {t.p_value:.2g} | "
          f"{p:.2g}{' *' if r else ''} |")


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "runs/label_noise_cpu")
