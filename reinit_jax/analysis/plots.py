"""The analyses' figures with matplotlib's Agg backend (files only, no display).

Learning curves with stage boundaries [Z Fig. 2], weight norm through training [Z Fig. 3],
robustness heatmaps (learning rate × weight decay per method) [Z Fig. 4], accuracy against the
number of stages [Z Fig. 5], smallest training margins [LW §4.1], sharpness curves [LW §4.2] and
[HR] squared activation lengths per layer. Each function writes one PNG and returns its path.

``records`` are the engine's ``metrics.jsonl`` objects (step, stage, split, accuracy, loss,
param_norm, seed, ...); records of several seeds are averaged at equal steps. Bands and error bars
show ± std over seeds; with a single seed there is none (no spread was measured).
"""

from __future__ import annotations

import collections
import math
import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path) -> str:
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if fig.get_layout_engine() is None:
    fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _check_runs(runs, name="runs"):
  if not isinstance(runs, Mapping) or not runs:
    raise ValueError(f"{name} must be a non-empty mapping of label -> data")


def stage_boundaries(records: Sequence[Mapping]) -> list[float]:
  """Steps at which stages 1..T-1 end: the last step recorded in each stage but the final one.

  The engine logs ``step`` as steps done, at the end of each jitted call and evaluation, so a
  stage's last record sits exactly on its boundary (its first record does not).
  """
  last = {}
  for r in records:
    if r.get("stage") is not None and r.get("step") is not None:
      s = int(r["stage"])
      last[s] = max(last.get(s, -math.inf), float(r["step"]))
  stages = sorted(last)
  return [last[s] for s in stages[:-1]]


def curve(records: Sequence[Mapping], key: str, split: str | None = None):
  """``(steps (n,), mean (n,), std (n,))`` of ``key`` over seeds at every recorded step.

  ``std`` (ddof 0) is NaN at a step with a single value: one seed measures no spread.
  """
  by_step = collections.defaultdict(list)
  for r in records:
    if split is not None and r.get("split") != split:
      continue
    if r.get(key) is None or r.get("step") is None:
      continue
    by_step[float(r["step"])].append(float(r[key]))
  steps = np.asarray(sorted(by_step))
  vals = [np.asarray(by_step[s]) for s in steps]
  return (steps, np.asarray([v.mean() for v in vals]),
          np.asarray([v.std() if v.size > 1 else np.nan for v in vals]))


def _mark_stages(ax, records):
  for i, b in enumerate(stage_boundaries(records)):
    ax.axvline(b, color="gray", ls="--", lw=0.8, label="stage boundary" if i == 0 else None)


def plot_learning_curves(runs: Mapping[str, Sequence[Mapping]], path, *, metric: str = "accuracy",
                         splits: Sequence[str] = ("train", "validation", "test"),
                         title: str = "") -> str:
  """[Z Fig. 2]: ``metric`` against step per run and split, stage boundaries dashed."""
  _check_runs(runs)
  fig, ax = plt.subplots(figsize=(7, 4))
  drawn = 0
  for label, recs in runs.items():
    for split in splits:
      x, m, s = curve(recs, metric, split)
      if x.size:
        ax.plot(x, m, label=f"{label} ({split})")
        ax.fill_between(x, m - s, m + s, alpha=0.2)
        drawn += 1
  if not drawn:
    plt.close(fig)
    raise ValueError(f"runs must contain records with step, split in {tuple(splits)} and {metric!r}")
  _mark_stages(ax, next(iter(runs.values())))
  ax.set(xlabel="step", ylabel=metric, title=title or f"{metric} through training")
  ax.legend(fontsize=7)
  return _save(fig, path)


def plot_weight_norm(runs: Mapping[str, Sequence[Mapping]], path, *, title: str = "") -> str:
  """[Z Fig. 3]: global parameter norm (``param_norm``) against step, stage boundaries dashed."""
  _check_runs(runs)
  fig, ax = plt.subplots(figsize=(7, 4))
  drawn = 0
  for label, recs in runs.items():
    # The norm is logged with several splits at one step; keep one value per (seed, step).
    seen, uniq = set(), []
    for r in recs:
      k = (r.get("seed"), r.get("step"))
      if r.get("param_norm") is not None and k not in seen:
        seen.add(k)
        uniq.append(r)
    x, m, s = curve(uniq, "param_norm")
    if x.size:
      ax.plot(x, m, label=label)
      ax.fill_between(x, m - s, m + s, alpha=0.2)
      drawn += 1
  if not drawn:
    plt.close(fig)
    raise ValueError("runs must contain records with step and param_norm")
  _mark_stages(ax, next(iter(runs.values())))
  ax.set(xlabel="step", ylabel="parameter norm", title=title or "weight norm through training")
  ax.legend(fontsize=7)
  return _save(fig, path)


def plot_heatmaps(grids: Mapping[str, np.ndarray], learning_rates: Sequence[float],
                  weight_decays: Sequence[float], path, *, title: str = "test accuracy") -> str:
  """[Z Fig. 4]: one heatmap per method, rows learning rate, columns weight decay, shared scale.

  Args:
    grids: ``{method: (n_lr, n_wd) array}``; NaN where a grid point is missing.
  """
  _check_runs(grids, "grids")
  shape = (len(learning_rates), len(weight_decays))
  arrays = {}
  for k, g in grids.items():
    g = np.asarray(g, np.float64)
    if g.shape != shape:
      raise ValueError(f"grids[{k!r}] must have shape {shape} (lr × wd), got {g.shape}")
    arrays[k] = g
  finite = np.concatenate([g[np.isfinite(g)] for g in arrays.values()])
  vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
  n = len(arrays)
  fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 1, 3.4), squeeze=False, layout="constrained")
  for ax, (k, g) in zip(axes[0], arrays.items()):
    im = ax.imshow(g, vmin=vmin, vmax=vmax, cmap="viridis", origin="lower", aspect="auto")
    for i in range(shape[0]):
      for j in range(shape[1]):
        if np.isfinite(g[i, j]):
          ax.text(j, i, f"{g[i, j]:.3g}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xticks(range(shape[1]), [f"{w:g}" for w in weight_decays], fontsize=7)
    ax.set_yticks(range(shape[0]), [f"{lr:g}" for lr in learning_rates], fontsize=7)
    ax.set(xlabel="weight decay", ylabel="learning rate", title=k)
  fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label=title)
  fig.suptitle(title)
  return _save(fig, path)


def plot_accuracy_vs_stages(data: Mapping[str, Mapping[int, Sequence[float]]], path, *,
                            ylabel: str = "test accuracy") -> str:
  """[Z Fig. 5]: mean ± std (over seeds) against the number of stages, one line per method.

  Args:
    data: ``{method: {number of stages: accuracies of the seeds}}``.
  """
  _check_runs(data, "data")
  fig, ax = plt.subplots(figsize=(6, 4))
  for k, by_t in data.items():
    ts = sorted(by_t)
    if not ts:
      raise ValueError(f"data[{k!r}] must map number of stages -> accuracies, got nothing")
    m = [np.mean(by_t[t]) for t in ts]
    s = [np.std(by_t[t]) if len(by_t[t]) > 1 else np.nan for t in ts]  # one seed: no bar
    ax.errorbar(ts, m, yerr=None if np.isnan(s).all() else s, marker="o", capsize=3, label=k)
  ax.set(xlabel="number of stages", ylabel=ylabel, title="accuracy vs number of stages")
  ax.legend(fontsize=7)
  return _save(fig, path)


def plot_margins(margins: Mapping[str, np.ndarray], path, *, k: int = 400) -> str:
  """[LW §4.1]: the ``k`` smallest training margins of each model, ascending."""
  _check_runs(margins, "margins")
  fig, ax = plt.subplots(figsize=(6, 4))
  for label, m in margins.items():
    m = np.sort(np.asarray(m, np.float64).ravel())[:k]
    ax.plot(np.arange(1, m.size + 1), m, label=label)
  ax.axhline(0, color="gray", lw=0.8)
  ax.set(xlabel="rank", ylabel="margin (p_true − max other)", title=f"{k} smallest training margins")
  ax.legend(fontsize=7)
  return _save(fig, path)


def plot_sharpness(results: Mapping[str, object], path) -> str:
  """[LW §4.2]: Δ training loss and Δ accuracy against σ for each :class:`Sharpness` result."""
  _check_runs(results, "results")
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
  for label, r in results.items():
    for ax, m, s in ((a1, r.loss_change, r.loss_change_std),
                     (a2, r.accuracy_change, r.accuracy_change_std)):
      ax.errorbar(r.sigmas, m, yerr=s, marker="o", capsize=3, label=label)
  for ax, y in ((a1, "Δ training loss"), (a2, "Δ training accuracy")):
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set(xlabel="σ of parameter noise", ylabel=y)
  a1.legend(fontsize=7)
  return _save(fig, path)


def plot_init_diagnostics(diagnoses: Mapping[str, object], path) -> str:
  """[HR]: mean and variance of the normalized squared activation length per layer (log scale)."""
  _check_runs(diagnoses, "diagnoses")
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
  for label, d in diagnoses.items():
    layers = np.arange(1, len(d.mean) + 1)
    a1.plot(layers, d.mean, marker=".", label=label)
    a2.plot(layers, np.maximum(d.var_draws, 1e-30), marker=".", label=label)
  a1.set(yscale="log", xlabel="layer", ylabel="E[||z||²/n]", title="FM1: mean")
  a2.set(yscale="log", xlabel="layer", ylabel="Var over draws", title="FM2: variance")
  a1.legend(fontsize=7)
  return _save(fig, path)
