"""``python -m reinit_jax.analysis.report RUN_DIRS... --out DIR``: tables and figures from workdirs.

Reads the engine's outputs (docs/CONTRACTS.md, "Engine": ``config.json``, ``metrics.jsonl``,
``summary.json``) of every workdir found under RUN_DIRS (a directory holding any of those files is a
run; otherwise its subdirectories are searched, so a sweep's parent directory works) and writes to
DIR:

* ``report.md``: the main table laid out like [Z] Tables 1–3 (rows: setting, columns: method,
  cells: mean ± std test accuracy over seeds, in %; a single seed shows its value alone, since a
  std of 0 would read as a measured spread), the sign tests between methods with Holm's
  correction [LW Table 3] where seeds pair up, the same table and tests for the test accuracy at
  the final epoch, the training-set accuracy per stage and epochs to fit where recorded
  (``fit_report``, [Z] §6, [AA] §4), a table of every run, and what was missing;
* PNGs: learning curves with stage boundaries and weight norm per row [Z Figs. 2–3], learning-rate ×
  weight-decay heatmaps [Z Fig. 4] and accuracy against the number of stages [Z Fig. 5] where the
  runs span such grids.

Choices: the row is ``dataset/model setting``, the setting being [Z]'s (Ø, D, DC, DCW) where
``config.setting`` names one, else ``aug=<augmentation> sched=<schedule>`` with learning rate and
weight decay tuned inside the row; label noise, online chunks and the synthetic α are appended. The column is the method,
``+distill`` when distillation is on. A cell holding several hyperparameter configurations (learning
rate, weight decay, stages, method options) shows the one with the best mean validation accuracy
(marked * where no validation accuracy was recorded and test accuracy was used). Std is over seeds
with ddof=0, as the engine's summary. Sign tests pair the chosen configurations by (row, seed).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import sys

import numpy as np

from reinit_jax.analysis import feature_report, fit_report, plots, stats
from reinit_jax.train import config as config_schema

_RUN_FILES = ("config.json", "summary.json", "metrics.jsonl")


@dataclasses.dataclass
class RunInfo:
  """One workdir, read defensively; ``missing`` lists what could not be read."""

  path: str
  config: dict
  summary: dict
  records: list
  missing: list
  method: str = "?"
  row: str = "?"
  hparams: tuple = ()  # sorted (name, value) pairs that distinguish configurations in a cell
  test: dict = dataclasses.field(default_factory=dict)  # seed -> test accuracy
  validation: float | None = None

  @property
  def test_mean(self) -> float:
    return float(np.mean(list(self.test.values()))) if self.test else math.nan

  @property
  def test_std(self) -> float:
    return float(np.std(list(self.test.values()))) if self.test else math.nan


def find_runs(paths) -> list[str]:
  """Workdirs under ``paths`` (sorted): directories holding config.json/summary.json/metrics.jsonl,
  hidden directories (a packed grid's ``.packs/``, train/pack.py) skipped."""
  found = []
  for p in paths:
    if not os.path.isdir(p):
      raise ValueError(f"run_dirs: {p!r} is not a directory")
    for root, dirs, files in os.walk(p):
      # A hidden directory (a packed grid's .packs/) holds no run of its own points.
      dirs[:] = sorted(d for d in dirs if d not in ("checkpoints", "tensorboard")
                       and not d.startswith("."))
      if any(f in files for f in _RUN_FILES):
        found.append(root)
        dirs[:] = []  # a run's subdirectories are its own outputs, not more runs
  return sorted(set(found))


def _read_json(path, missing, what):
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    missing.append(f"{what} (no file)")
  except (OSError, json.JSONDecodeError) as e:
    missing.append(f"{what} (unreadable: {e})")
  return {}


def _read_jsonl(path, missing):
  out = []
  if not os.path.exists(path):
    missing.append("metrics.jsonl (no file)")
    return out
  bad = 0
  with open(path) as f:
    for line in f:
      if line.strip():
        try:
          out.append(json.loads(line))
        except json.JSONDecodeError:
          bad += 1  # a run killed mid-write leaves a partial last line
  if bad:
    missing.append(f"metrics.jsonl ({bad} unparsable lines skipped)")
  return out


def _setting(c: dict) -> str:
  """[Z]'s setting name when ``config.setting`` gives one, else ``aug=... sched=...``.

  Without a named setting, weight decay and learning rate are tuned hyperparameters inside the
  row (so a learning-rate × weight-decay grid stays one row and gives one heatmap).
  """
  s = c.get("setting")
  if s:
    return "Ø" if s in ("none", "0", "Ø") else str(s)
  return f"aug={c.get('augmentation', '?')} sched={c.get('schedule', '?')}"


def _number(v):
  return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def load_run(path: str, row_by=()) -> RunInfo:
  """Reads one workdir; never raises on missing or malformed content (it is listed instead).

  ``row_by``: extra config fields appended to the row label (e.g. ``('weight_decay',)`` for a
  row per L2 penalty, which then is no longer tuned inside the row).
  """
  missing = []
  c = _read_json(os.path.join(path, "config.json"), missing, "config.json")
  c = config_schema.flat(c) if isinstance(c, dict) else c
  s = _read_json(os.path.join(path, "summary.json"), missing, "summary.json")
  recs = _read_jsonl(os.path.join(path, "metrics.jsonl"), missing)
  info = RunInfo(path, c if isinstance(c, dict) else {}, s if isinstance(s, dict) else {}, recs,
                 missing)
  c, s = info.config, info.summary
  method = _method_name(c, s, missing)
  info.method = str(method) + ("+distill" if c.get("distill") else "")
  info.row = _row(c, row_by, missing)
  for k in ("learning_rate", "weight_decay", "stages", "seeds"):
    if k not in c:
      missing.append(f"config.{k}")
  info.hparams = _hparams(c)
  info.test = _test_by_seed(c, s, missing)
  info.validation = _best_validation(s, missing)
  return info


def _method_name(c: dict, s: dict, missing: list):
  """The method's name: config.json's, else summary.json's, else '?' (listed as missing)."""
  method = c.get("method") or s.get("method")
  if isinstance(method, dict):
    method = method.get("name")
  if not method:
    missing.append("method (config.json and summary.json)")
    method = "?"
  return method


def _row(c: dict, row_by, missing: list) -> str:
  """The row label: ``dataset/model setting`` and the row's distinguishing values."""
  row = [str(c.get("dataset", "?")), _setting(c)]
  if c.get("model"):
    row[0] += "/" + str(c["model"])
  if _number(c.get("label_noise")):
    row.append(f"q={c['label_noise']:g}")
  if _number(c.get("chunks")) and c["chunks"] > 1:
    row.append(f"chunks={c['chunks']}")
  if c.get("synthetic_alpha") is not None and c.get("dataset") == "synthetic":
    row.append(f"α={c['synthetic_alpha']:g}")
  for k in row_by:
    if k not in c:
      missing.append(f"config.{k} (asked for by row_by)")
    row.append(f"{k}={c.get(k)}")
  return " ".join(row)


def _hparams(c: dict) -> tuple:
  """Sorted (name, value) pairs that distinguish configurations in a cell."""
  extra = c.get("method_kwargs") or {}
  return tuple(sorted(
      [(k, c.get(k)) for k in ("learning_rate", "weight_decay", "stages", "epochs", "num_blocks",
                               "distill_beta") if k in c]
      + [(f"method.{k}", json.dumps(v)) for k, v in (extra.items() if isinstance(extra, dict) else [])]))


def _test_by_seed(c: dict, s: dict, missing: list) -> dict:
  """seed -> test accuracy from ``summary.test_accuracy`` (a mean alone: seed -1)."""
  ta = s.get("test_accuracy")
  seeds = list(c.get("seeds") or [])
  if isinstance(ta, dict) and isinstance(ta.get("per_seed"), (list, dict)):
    ps = ta["per_seed"]
    if isinstance(ps, dict):
      return {int(k): float(v) for k, v in ps.items()}
    if len(seeds) != len(ps):
      missing.append("config.seeds (does not match test_accuracy.per_seed; seeds numbered 0..)")
      seeds = list(range(len(ps)))
    return {int(k): float(v) for k, v in zip(seeds, ps)}
  if _number(ta) is not None or (isinstance(ta, dict) and _number(ta.get("mean")) is not None):
    missing.append("summary.test_accuracy.per_seed (mean only: no std, no pairing)")
    return {-1: float(ta if _number(ta) is not None else ta["mean"])}
  missing.append("summary.test_accuracy")
  return {}


def _best_validation(s: dict, missing: list) -> float | None:
  """The mean best validation accuracy, or None."""
  bv = s.get("best_validation_accuracy")
  if isinstance(bv, dict):
    bv = bv.get("mean", bv.get("per_seed"))
  if isinstance(bv, list) and bv:
    bv = float(np.mean(bv))
  if "best_validation_accuracy" not in s:  # null: the run had no validation split by design
    missing.append("summary.best_validation_accuracy")
  return float(bv) if _number(bv) is not None else None


def _choose(rs):
  """``(best, chosen_on_test)`` among configurations ``rs`` (workdir order): the best validation
  accuracy; test accuracy for all of them when any of several has none; the first on ties."""
  on_test = any(r.validation is None for r in rs) and len(rs) > 1
  score = (lambda r: r.test_mean) if on_test else (
      lambda r: r.validation if r.validation is not None else r.test_mean)
  return max(rs, key=score), on_test


def select_cells(runs):
  """``{(row, method): (RunInfo, chosen_on_test)}`` — the best configuration of every cell."""
  groups = collections.defaultdict(list)
  for r in runs:
    if r.test:
      groups[(r.row, r.method)].append(r)
  return {key: _choose(rs) for key, rs in groups.items()}


def _pct(x):
  return f"{100 * x:.2f}"


def mean_std(mean: float, std: float, n: int) -> str:
  """``'mean ± std'`` in %, or the mean alone for one seed (no spread was measured)."""
  return f"{_pct(mean)} ± {_pct(std)}" if n > 1 else _pct(mean)


def main_table(cells) -> str:
  """Markdown table [Z Tables 1–3]: rows setting, columns method, mean ± std (%) over seeds."""
  rows = sorted({k[0] for k in cells})
  cols = sorted({k[1] for k in cells})
  out = ["| setting | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
  for row in rows:
    vals = [r.test_mean for (rr, _), (r, _) in cells.items() if rr == row]
    best = max(vals) if vals else None
    line = []
    for col in cols:
      if (row, col) not in cells:
        line.append("—")
        continue
      r, on_test = cells[(row, col)]
      txt = f"{mean_std(r.test_mean, r.test_std, len(r.test))} (n={len(r.test)})" + (
          "*" if on_test else "")
      line.append(f"**{txt}**" if r.test_mean == best else txt)
    out.append(f"| {row} | " + " | ".join(line) + " |")
  return "\n".join(out)


def sign_table(cells, alpha: float = 0.05) -> str:
  """Markdown sign-test table between methods over paired (row, seed) units, Holm-corrected."""
  outcomes = collections.defaultdict(dict)
  for (row, method), (r, _) in cells.items():
    for seed, acc in r.test.items():
      if seed != -1:
        outcomes[method][(row, seed)] = acc
  if len(outcomes) < 2:
    return "No sign tests: fewer than two methods with per-seed results."
  rows = stats.pairwise_sign_tests(outcomes, alpha)
  if not rows:
    return "No sign tests: no (setting, seed) pairs shared between methods."
  out = [f"| A | B | pairs | A wins | B wins | ties | p | p (Holm) | significant at {alpha:g} |",
         "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
  out += [f"| {r.a} | {r.b} | {r.n_pairs} | {r.wins} | {r.losses} | {r.ties} | {r.p_value:.4g} | "
          f"{r.p_holm:.4g} | {'yes' if r.significant else 'no'} |" for r in rows]
  return "\n".join(out)


def _runs_table(runs) -> str:
  out = ["| workdir | setting | method | hyperparameters | seeds | test % | best val % |",
         "| --- | --- | --- | --- | ---: | ---: | ---: |"]
  for r in runs:
    hp = ", ".join(f"{k}={v}" for k, v in r.hparams if k != "seeds")
    val = "—" if r.validation is None else _pct(r.validation)
    test = "—" if not r.test else mean_std(r.test_mean, r.test_std, len(r.test))
    out.append(f"| {r.path} | {r.row} | {r.method} | {hp} | {len(r.test)} | {test} | {val} |")
  return "\n".join(out)


def _safe(name: str) -> str:
  """An ASCII file-name stem for a row label."""
  name = name.replace("Ø", "0").replace("α", "alpha")
  return "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-." else "_"
                 for ch in name).strip("_") or "row"


def figures(runs, cells, out: str) -> list[str]:
  """Writes the PNGs of the module docstring; returns their paths."""
  written = []
  for row in sorted({k[0] for k in cells}):
    chosen = {m: r for (rr, m), (r, _) in sorted(cells.items()) if rr == row and r.records}
    if chosen:
      split = "test" if any(x.get("split") == "test" for r in chosen.values() for x in r.records) \
          else "validation"
      for fn, name in ((lambda p: plots.plot_learning_curves(
          {m: r.records for m, r in chosen.items()}, p, splits=(split,), title=f"{row}: {split}"),
                        "curves"),
                       (lambda p: plots.plot_weight_norm({m: r.records for m, r in chosen.items()},
                                                         p, title=row), "weight_norm")):
        try:
          written.append(fn(os.path.join(out, f"{name}_{_safe(row)}.png")))
        except ValueError:
          pass  # the records lack that metric; report.md lists what is missing
    by_method = collections.defaultdict(list)
    for r in runs:
      if r.row == row and r.test:
        by_method[r.method].append(r)
    hp = lambda r, k: dict(r.hparams).get(k)
    lrs = sorted({hp(r, "learning_rate") for rs in by_method.values() for r in rs} - {None})
    wds = sorted({hp(r, "weight_decay") for rs in by_method.values() for r in rs} - {None})
    if len(lrs) * len(wds) > 1:
      grids = {}
      for m, rs in by_method.items():
        g = np.full((len(lrs), len(wds)), np.nan)
        for r in rs:
          if hp(r, "learning_rate") is None or hp(r, "weight_decay") is None:
            continue  # no grid point: report.md lists the missing config field
          i, j = lrs.index(hp(r, "learning_rate")), wds.index(hp(r, "weight_decay"))
          g[i, j] = np.nanmax([g[i, j], 100 * r.test_mean])
        grids[m] = g
      written.append(plots.plot_heatmaps(grids, lrs, wds, os.path.join(out, f"heatmap_{_safe(row)}.png"),
                                         title=f"{row}: test accuracy %"))
    ts = {hp(r, "stages") for rs in by_method.values() for r in rs} - {None}
    if len(ts) > 1:
      data = {}
      for m, rs in by_method.items():
        by_t = collections.defaultdict(list)  # stages -> runs; none recorded: listed as missing
        for r in rs:
          if hp(r, "stages") is not None:
            by_t[hp(r, "stages")].append(r)
        if by_t:  # at each number of stages the configuration chosen as in the table
          data[m] = {t: [100 * a for a in _choose(g)[0].test.values()] for t, g in by_t.items()}
      written.append(plots.plot_accuracy_vs_stages(data, os.path.join(out, f"stages_{_safe(row)}.png"),
                                                   ylabel="test accuracy %"))
  return written


def report(run_dirs, out: str, *, alpha: float = 0.05, row_by=()) -> str:
  """Builds ``out/report.md`` and the figures from the workdirs under ``run_dirs``.

  Args:
    run_dirs: workdirs or directories holding them (a sweep's parent).
    out: output directory (created).
    alpha: family-wise level of Holm's correction.
    row_by: extra config fields that split rows (see :func:`load_run`).
  Returns:
    The path of ``report.md``.
  """
  if isinstance(run_dirs, (str, os.PathLike)):
    run_dirs = [run_dirs]
  paths = find_runs(run_dirs)
  if not paths:
    raise ValueError(f"run_dirs: no workdir (a folder with {', '.join(_RUN_FILES)}) under "
                     f"{', '.join(map(str, run_dirs))}")
  os.makedirs(out, exist_ok=True)
  runs = [load_run(p, tuple(row_by)) for p in paths]
  cells = select_cells(runs)
  figs = figures(runs, cells, out)
  plural = "s" if len(runs) != 1 else ""
  md = ["# Report", "", f"{len(runs)} workdir{plural}: {', '.join(run_dirs)}.", "",
        "## Test accuracy (%), mean ± std over seeds [Z Tables 1–3]", ""]
  if cells:
    md += [main_table(cells), "",
           "Bold: best in the row. Cells with several configurations show the one with the best "
           "mean validation accuracy; * = selected on test accuracy (no validation recorded). "
           "n=1: one seed, no spread measured.", "",
           "## Sign tests between methods [LW Table 3]", "", sign_table(cells, alpha), ""]
    final = {k: (dataclasses.replace(r, test=fit_report.final_test(r)), t)
             for k, (r, t) in cells.items() if fit_report.final_test(r)}
    if final:  # the same configurations, read at the last epoch instead of the best validation
      md += ["## Test accuracy (%) at the final epoch", "", main_table(final), "",
             "The configurations above; test accuracy after the last epoch (final_test_accuracy) "
             "instead of at the best validation accuracy.", "",
             "## Sign tests at the final epoch", "", sign_table(final, alpha), ""]
    md += fit_report.sections(cells)
    md += feature_report.sections(cells)
  else:
    md += ["No run has a test accuracy in summary.json.", ""]
  md += ["## Runs", "", _runs_table(runs), ""]
  gaps = [(r.path, m) for r in runs for m in r.missing]
  if gaps:
    md += ["## Missing", ""] + [f"- {p}: {m}" for p, m in gaps] + [""]
  if figs:
    md += ["## Figures", ""] + [f"![{os.path.basename(f)}]({os.path.basename(f)})" for f in figs]
  path = os.path.join(out, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(md) + "\n")
  for p, m in gaps:
    print(f"report: {p}: missing {m}", file=sys.stderr)
  return path


def main(argv=None) -> int:
  """Command line entry point (see the module docstring)."""
  ap = argparse.ArgumentParser(prog="python -m reinit_jax.analysis.report", description=__doc__.split("\n")[0])
  ap.add_argument("run_dirs", nargs="+", help="workdirs, or directories holding workdirs")
  ap.add_argument("--out", required=True, help="output directory for report.md and the PNGs")
  ap.add_argument("--alpha", type=float, default=0.05, help="family-wise level of Holm's correction")
  ap.add_argument("--row-by", default="", help="comma-separated config fields that split rows, "
                  "e.g. weight_decay for the L2 study (default: none)")
  a = ap.parse_args(argv)
  row_by = tuple(f for f in a.row_by.split(",") if f)
  try:
    print(report(a.run_dirs, a.out, alpha=a.alpha, row_by=row_by))
  except (ValueError, OSError) as e:  # a missing or empty folder, an unwritable --out
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
