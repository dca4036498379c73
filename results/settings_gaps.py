"""[Z] §4–5 from the Fashion-MNIST settings and lr × weight-decay grids (configs/fashion_mnist_settings.py).

    python results/settings_gaps.py runs/fmnist_settings runs/fmnist_hparams

Settings table (5 seeds a cell): test accuracy at best validation and at the final step (mean ± std,
%), the training set fitted at the end (un-augmented, %), and per method Δ = mean over seeds of
(method − standard) at best validation with the seeds it wins; sign tests pooled over the settings
with re-initialization's claimed gain (Ø, D: [Z] §4) and over the regularized ones (DC, DCW: [Z] §5),
Holm-corrected together. A sign test on 5 pairs cannot reach p < 0.05 (smallest two-sided p 0.0625).

Robustness ([Z] Fig. 4, 3 seeds a cell): test accuracy at best validation over lr × weight decay in
DCW per method; per method the best cell, the mean drop from the best over the 9 cells and the cells
within 1 point of the method's best. [Z]'s claim: re-initialization's optimum is as good and less
sensitive to lr and wd than standard training's.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from reinit_jax.analysis import stats

SETTINGS = ("none", "D", "DC", "DCW")
METHODS = ("standard", "shrink_perturb", "layerwise", "full")
NAMES = {"standard": "standard", "shrink_perturb": "S&P", "layerwise": "layer-wise",
         "full": "BAN (full + distill)"}
LRS, WDS = ("0.01", "0.03", "0.1"), ("0.0", "0.0005", "0.005")


def _summary(path):
  with open(os.path.join(path, "summary.json")) as f:
    return json.load(f)


def _fit(s):
  fit = [r["accuracy"] for r in s["stages"][-1]["metrics"] if r["split"] == "train_fit"]
  return 100 * float(np.mean(fit)) if fit else float("nan")


def load_settings(root):
  out = {}
  for setting in SETTINGS:
    for m in METHODS:
      s = _summary(os.path.join(root, f"setting-{setting}_method-{m}_distill-{m == 'full'}"))
      out[setting, m] = (100 * np.asarray(s["test_accuracy"]["per_seed"]),
                         100 * np.asarray(s["final_test_accuracy"]["per_seed"]), _fit(s))
  return out


def _ms(a):
  return f"{a.mean():.2f} ± {a.std():.2f}"


def settings_tables(cells):
  print("| setting | method | test % (best val) | test % (final) | train fit % | Δ best val "
        "(wins/5) |\n| --- | --- | ---: | ---: | ---: | ---: |")
  for setting in SETTINGS:
    base = cells[setting, "standard"][0]
    for m in METHODS:
      best, final, fit = cells[setting, m]
      delta = "—" if m == "standard" else f"{(best - base).mean():+.2f} ({int((best > base).sum())})"
      print(f"| {'Ø' if setting == 'none' else setting} | {NAMES[m]} | {_ms(best)} | {_ms(final)} "
            f"| {fit:.1f} | {delta} |")
  groups = {"Ø and D": ("none", "D"), "DC and DCW": ("DC", "DCW")}
  rows = []
  for group, settings in groups.items():
    for m in METHODS[1:]:
      ours = [a for s in settings for a in cells[s, m][0]]
      theirs = [a for s in settings for a in cells[s, "standard"][0]]
      rows.append((group, m, stats.sign_test(ours, theirs)))
  adjusted, reject = stats.holm([t.p_value for *_, t in rows])
  print("\nSign tests against standard at best validation (10 pairs each), Holm over the 6 tests:")
  print("| settings | method | wins | losses | ties | p | p (Holm) |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |")
  for (group, m, t), p, r in zip(rows, adjusted, reject):
    print(f"| {group} | {NAMES[m]} | {t.wins} | {t.losses} | {t.ties} | {t.p_value:.2g} | "
          f"{p:.2g}{' *' if r else ''} |")


def robustness(root):
  print("\nlr × weight decay in DCW (test % at best validation, mean of 3 seeds):")
  print("| method | " + " | ".join(f"lr {lr}, wd {wd}" for lr in LRS for wd in WDS)
        + " | best | mean drop from best | cells within 1 point |\n| --- |"
        + " ---: |" * (len(LRS) * len(WDS) + 3))
  for m in METHODS[:3]:
    grid = np.asarray([[100 * np.mean(_summary(os.path.join(
      root, f"method-{m}_learning_rate-{lr}_setting_weight_decay-{wd}"))["test_accuracy"]["per_seed"])
      for wd in WDS] for lr in LRS])
    best = grid.max()
    print(f"| {NAMES[m]} | " + " | ".join(f"{v:.2f}" for v in grid.ravel())
          + f" | {best:.2f} | {(best - grid).mean():.2f} | {int((grid >= best - 1).sum())}/9 |")


def main(settings_root, hparams_root=None):
  settings_tables(load_settings(settings_root))
  if hparams_root:
    robustness(hparams_root)


if __name__ == "__main__":
  main(*sys.argv[1:3])
