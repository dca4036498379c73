"""Class test (issue #23): every statistic that report.md and the report's figures show, checked
against an independent numpy/scipy computation on generated studies.

The statistics, enumerated from reinit_jax/analysis/{report,plots,stats,fit_report}.py:

* main table and final-epoch table: per chosen cell mean ± std (ddof 0, as summary.json; the
  value alone for one seed), n, bold = best mean of the row, * = chosen on test accuracy;
* the choice of the cell's configuration: best validation accuracy, test accuracy for the whole
  cell when any of its configurations has none, first maximum in workdir order on ties;
* sign tests (pairs, wins, losses, ties over common (row, seed) units, exact two-sided p) with
  Holm's step-down correction over all pairs, at the best validation and at the final epoch;
* the runs table (seeds, mean ± std, best validation);
* training-set accuracy per stage (mean ± std over the stage's last evaluation) and epochs to fit
  (mean ± std over the seeds that reached it, k/S);
* figures: learning curves (mean over seeds at each step, band mean ± std ddof 0, none where one
  seed), stage boundaries (last step of every stage but the last, over all seeds), weight norm
  (one param_norm per (seed, step) although several splits carry it), lr × wd heatmaps (best
  100·mean test accuracy of the runs at each grid point, NaN where none, shared colour scale,
  annotations), accuracy vs number of stages (mean ± std over seeds of the configuration chosen
  at each number of stages, no bar for one seed).

Studies are drawn with hypothesis: 1–2 rows, 2–3 methods (each with its own level, so that
sign tests see wins, ties and significant pairs), 1–3 configurations per cell, 1–6 seeds per run
in any order with distinct accuracies, unequal numbers of records per seed (a seed's log
cut short), seeds shared by some methods only, and the defects load_run promises to survive
(per_seed as a dict or mean only, best validation as a number or null, final accuracies with a
non-finite seed, runs without metrics or summary). The figures are read back from the matplotlib
Figure objects the report builds (``plots._save`` intercepted: Line2D data, the vertices of the
fill_between band, errorbar segments, the image array of the heatmaps).

Tolerances: numbers read from figures are the float64 arrays the library computed; the reference
sums the same ≤ 6 values in another order (nanmean over a seeds × steps matrix), which differs by a
few ulps (≲ 1e-15 relative), so rtol = atol = 1e-12 — far below any statistical slip (ddof 1
instead of 0 scales a std by sqrt(n / (n − 1)) ≥ 1.09 for n ≤ 6 seeds; a dropped or duplicated
value moves a mean by ≳ 1e-3 here). Numbers read from
report.md are printed with 2 (tables) or 1 (epochs) or 4 significant (p-values) digits: compared
within half a unit of the last printed digit (plus 1e-9 for float64 rounding of the reference).
"""

import collections
import contextlib
import copy
import json
import math
import os
import re
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats as sps

from reinit_jax.analysis import fit_report, plots, report, stats
from reinit_jax.launch import base_config
from reinit_jax.train.workdir import config_json

FIG = dict(rtol=1e-12, atol=1e-12)  # float64 arrays drawn vs a reference summed in another order
PCT = 0.005 + 1e-9  # '%.2f' in report.md: half a unit of the last digit
BASE = config_json(base_config())  # config.json as the engine writes it (nested by section)
METHODS = ("layerwise", "shrink_perturb", "standard")
QS = (0.2, 0.4)  # label noise: one row each
GRID = [(lr, wd, t) for lr in (0.01, 0.05, 0.1) for wd in (0.0, 5e-4) for t in (2, 3)]


# ------------------------------------------------------------------------------- generated studies
def _config(method, q, lr, wd, stages, seeds, drop=()):
  c = copy.deepcopy(BASE)
  c["data"]["label_noise"] = q
  c["optim"]["learning_rate"], c["optim"]["weight_decay"] = lr, wd
  c["reinit"]["method"], c["reinit"]["stages"] = method, stages
  c["run"]["seeds"], c["run"]["eval_train"] = [int(s) for s in seeds], "eval"
  for section, key in drop:
    del c[section][key]
  return c


def _records(rng, seeds, stages, *, with_test):
  """metrics.jsonl rows as the engine logs them, plus the reference values they carry.

  Returns ``(rows, acc, norm)``: ``acc[split][seed][step]`` and ``norm[seed][step]``. Every
  seed shares the steps; one seed may be cut short (unequal records per seed); 'train_fit' rows
  exist for some seeds only, so the number of rows carrying param_norm differs between seeds.
  """
  spp = int(rng.integers(2, 5))  # steps per stage
  last = stages * spp
  cut = {s: last for s in seeds}
  if len(seeds) > 1 and rng.random() < 0.5:
    cut[seeds[-1]] = int(rng.integers(1, last))
  fit_seeds = {s for s in seeds if rng.random() < 0.5}
  acc = collections.defaultdict(lambda: collections.defaultdict(dict))
  norm = collections.defaultdict(dict)
  rows = []
  for step in range(1, last + 1):
    stage = (step - 1) // spp + 1
    evaluate = step % 2 == 0 or step % spp == 0
    for s in seeds:
      if step > cut[s]:
        continue
      a = round(float(rng.uniform(0.1, 0.9)), 4)
      rows.append(dict(step=step, stage=stage, epoch=step, split="train", loss=1.0, accuracy=a,
                       learning_rate=0.1, param_norm=None, seed=int(s)))
      acc["train"][s][step] = a
      if not evaluate:
        continue
      n = float(rng.uniform(5, 15))
      norm[s][step] = n
      splits = ["validation"] + (["test"] if with_test else []) + (
          ["train_fit"] if s in fit_seeds else [])
      for split in splits:
        a = float(rng.integers(0, 101)) / 100
        acc[split][s][step] = a
        rows.append(dict(step=step, stage=stage, epoch=step, split=split, loss=1.0, accuracy=a,
                         learning_rate=None, param_norm=n, seed=int(s)))
  return rows, acc, norm


def _summary(rng, spec):
  """summary.json for ``spec`` (and the reference fields it adds to ``spec``)."""
  seeds, test = spec["seeds"], spec["test"]
  form = rng.choice(["list", "list", "list", "dict", "mean"])
  per_seed = dict(mean=float(np.mean(test)), std=float(np.std(test)))
  if form == "list":
    per_seed["per_seed"] = list(test)
    spec["test_by_seed"] = dict(zip(seeds, test))
  elif form == "dict":
    per_seed["per_seed"] = {str(s): v for s, v in zip(seeds, test)}
    spec["test_by_seed"] = dict(zip(seeds, test))
  else:  # an old summary: the mean only (no std, no pairing)
    spec["test_by_seed"] = {-1: per_seed["mean"]}
  s = dict(method=spec["method"], seeds=list(seeds), test_accuracy=per_seed)
  v = rng.choice(["dict", "dict", "number", "null"])
  spec["val"] = None if v == "null" else float(rng.integers(0, 51)) / 50
  if v == "dict":
    s["best_validation_accuracy"] = dict(mean=spec["val"], std=0.01,
                                         per_seed=[spec["val"]] * len(seeds))
  else:
    s["best_validation_accuracy"] = spec["val"]
  spec["final_by_seed"] = {}
  if rng.random() < 0.7:
    final = [float(rng.integers(0, 51)) / 50 for _ in seeds]
    if len(seeds) > 1 and rng.random() < 0.3:
      final[int(rng.integers(len(seeds)))] = None  # a seed that diverged (non-finite: null)
    s["final_test_accuracy"] = dict(per_seed=final)
    spec["final_by_seed"] = {sd: v for sd, v in zip(seeds, final) if v is not None}
  # The stage records: the training-set splits of the stage's last evaluation and its test.
  spec["stage_fit"] = []
  s["stages"] = []
  if rng.random() < 0.7:
    for t in range(1, spec["stages"] + 1):
      metrics, by = [], collections.defaultdict(list)
      for sd in seeds:
        for split in ("train_fit", "test") + (("train_noisy",) if rng.random() < 0.5 else ()):
          a = float(rng.integers(0, 101)) / 100
          metrics.append(dict(step=t, stage=t, epoch=2, split=split, loss=1.0, accuracy=a,
                              seed=int(sd)))
          by[split].append(a)
      s["stages"].append(dict(stage=t, step=t, metrics=metrics))
      spec["stage_fit"].append((t, dict(by)))
  spec["epochs"] = None
  if rng.random() < 0.5:
    spec["epochs"] = [[int(rng.integers(1, 6)) if rng.random() < 0.7 else None for _ in seeds]
                      for _ in range(spec["stages"])]
    s.update(epochs_to_fit=spec["epochs"], fit_threshold=0.99, fit_reached=0.5)
  return s


def _study(root, seed, n_rows, n_methods, with_test):
  """Writes a study under ``root``; returns its specs in workdir order (the report's order)."""
  rng = np.random.default_rng(seed)
  methods = sorted(rng.choice(METHODS, n_methods, replace=False).tolist())
  # Accuracies in twentieths: the method's level + the seed's (shared by the methods: distinct
  # seeds differ) + noise of ±1/20, so that pairs show wins, ties and significant differences.
  level = {m: int(rng.choice([10, 11, 14])) for m in methods}
  specs = []
  for qi, q in enumerate(QS[:n_rows]):
    # The row's seeds, in any order (pairing is by seed); a method may lack some of them.
    row_seeds = rng.permutation(8)[:rng.choice(np.arange(1, 7), p=[.1, .15, .2, .2, .2, .15])]
    effect = {int(sd): int(rng.integers(-3, 4)) for sd in row_seeds}
    for method in methods:
      cell_seeds = [int(s) for s in row_seeds if len(row_seeds) == 1 or rng.random() < 0.85]
      cell_seeds = cell_seeds or [int(row_seeds[0])]
      for j, g in enumerate(rng.choice(len(GRID), int(rng.integers(1, 4)), replace=False)):
        lr, wd, t = GRID[g]
        seeds = cell_seeds if len(cell_seeds) == 1 or rng.random() < 0.7 else cell_seeds[:-1]
        spec = dict(name=f"q{qi}_{method}_c{j}", q=q, method=method, lr=lr, wd=wd, stages=t,
                    seeds=seeds, test=[(level[method] + effect[sd] + int(rng.choice([-1, 0, 0, 1])))
                                       / 20 for sd in seeds])
        d = os.path.join(root, spec["name"])
        os.makedirs(d)
        spec["path"] = d
        with open(os.path.join(d, "config.json"), "w") as f:
          json.dump(_config(method, q, lr, wd, t, seeds), f)
        if rng.random() < 0.05:  # a run that never wrote its summary: in no table
          spec["test_by_seed"], spec["val"], spec["final_by_seed"] = {}, None, {}
          spec["stage_fit"], spec["epochs"] = [], None
        else:
          with open(os.path.join(d, "summary.json"), "w") as f:
            json.dump(_summary(rng, spec), f)
        spec["rows"], spec["acc"], spec["norm"] = [], {}, {}
        if rng.random() < 0.85:
          spec["rows"], spec["acc"], spec["norm"] = _records(rng, seeds, t, with_test=with_test)
        with open(os.path.join(d, "metrics.jsonl"), "w") as f:
          f.writelines(json.dumps(r) + "\n" for r in spec["rows"])
        specs.append(spec)
  for spec in specs:
    spec["row"] = report.load_run(spec["path"]).row  # the label only; no statistic
  return sorted(specs, key=lambda s: s["path"])


# ------------------------------------------------------------------------------- the reference
def _mean_std(values):
  """(mean, std ddof 0 or None for one value), written out rather than np.std."""
  a = np.asarray(list(values), np.float64)
  m = a.sum() / a.size
  return m, (math.sqrt(((a - m) ** 2).sum() / a.size) if a.size > 1 else None)


def _choose(specs):
  """The documented choice in a cell: best validation; on test accuracy for the whole group when
  any of several configurations has no validation; first maximum in workdir order."""
  on_test = len(specs) > 1 and any(s["val"] is None for s in specs)
  key = lambda s: _mean_std(s["test_by_seed"].values())[0] if on_test or s["val"] is None \
      else s["val"]
  best = specs[0]
  for s in specs[1:]:
    if key(s) > key(best):
      best = s
  return best, on_test


def _cells(specs):
  groups = collections.defaultdict(list)
  for s in specs:
    if s["test_by_seed"]:
      groups[(s["row"], s["method"])].append(s)
  return {k: _choose(v) for k, v in groups.items()}


def _sign_p(wins, losses):
  """Exact two-sided sign-test p: 2·P(Bin(n, ½) ≤ min(wins, losses)), capped at 1."""
  n = wins + losses
  if n == 0:
    return 1.0
  return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n)


def _holm(p, alpha):
  """Holm from its definition: adjusted p_i = min(1, max over p_j ≤ p_i of (m − rank_j)·p_j);
  rejections by the step-down rule (stop at the first p_(k) > alpha / (m − k))."""
  m = len(p)
  order = sorted(range(m), key=lambda i: p[i])
  rank = {i: r for r, i in enumerate(order)}
  adj = [min(1.0, max((m - rank[j]) * p[j] for j in range(m) if rank[j] <= rank[i]))
         for i in range(m)]
  reject = [False] * m
  for k, i in enumerate(order):
    if p[i] > alpha / (m - k):
      break
    reject[i] = True
  return adj, reject


def _sign_rows(outcomes, alpha):
  """``{(a, b): (n, wins, losses, ties, p, p_holm, significant)}`` over common units."""
  rows = {}
  for a in sorted(outcomes):
    for b in sorted(outcomes):
      units = set(outcomes[a]) & set(outcomes[b])
      if a < b and units:
        w = sum(outcomes[a][u] > outcomes[b][u] for u in units)
        l = sum(outcomes[a][u] < outcomes[b][u] for u in units)
        rows[(a, b)] = [len(units), w, l, len(units) - w - l, _sign_p(w, l)]
  adj, rej = _holm([r[4] for r in rows.values()], alpha)
  return {k: tuple(r) + (q, s) for (k, r), q, s in zip(rows.items(), adj, rej)}


def _pivot(by_seed):
  """``{seed: {step: value}}`` -> (steps, mean over seeds, std ddof 0 over seeds or NaN where a
  single seed has the step): a seeds × steps matrix with NaN holes, reduced with nan-functions."""
  steps = np.asarray(sorted({st_ for v in by_seed.values() for st_ in v}), np.float64)
  x = np.full((len(by_seed), steps.size), np.nan)
  for i, v in enumerate(by_seed.values()):
    for st_, val in v.items():
      x[i, np.searchsorted(steps, st_)] = val
  count = np.sum(np.isfinite(x), axis=0)
  mean = np.nanmean(x, axis=0)
  with np.errstate(invalid="ignore"):
    std = np.sqrt(np.nanmean((x - mean) ** 2, axis=0))
  return steps, mean, np.where(count > 1, std, np.nan)


# ------------------------------------------------------------------------------- reading report.md
def _sections(md):
  return {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in md.split("\n## ")[1:]}


def _section(md, prefix):
  hits = [body for head, body in _sections(md).items() if head.startswith(prefix)]
  assert len(hits) <= 1, prefix
  return hits[0] if hits else None


def _table(body):
  """(header cells, [row cells]) of the first markdown table in ``body``."""
  lines = [l for l in body.splitlines() if l.startswith("|")]
  cells = lambda l: [c.strip() for c in l.strip().strip("|").split(" | ")]
  return cells(lines[0]), [cells(l) for l in lines[2:]]


_CELL = re.compile(r"^(\*\*)?([\d.]+)(?: ± ([\d.]+))? \(n=(\d+)\)(\*?)(\*\*)?$")


def _check_mean_table(body, cells, by_seed):
  """A [Z]-style table: every chosen cell's mean ± std (ddof 0), n, *, bold; '—' elsewhere."""
  head, lines = _table(body)
  rows = sorted({k[0] for k in cells})
  assert head == ["setting"] + sorted({k[1] for k in cells})
  assert [l[0] for l in lines] == rows
  for line in lines:
    row = line[0]
    means = {m: _mean_std(by_seed(s).values())[0] for (r, m), (s, _) in cells.items() if r == row}
    for method, txt in zip(head[1:], line[1:]):
      if (row, method) not in cells:
        assert txt == "—"
        continue
      spec, on_test = cells[(row, method)]
      values = list(by_seed(spec).values())
      mean, std = _mean_std(values)
      g = _CELL.match(txt)
      assert g, txt
      assert float(g[2]) == pytest.approx(100 * mean, abs=PCT), (row, method, txt)
      assert int(g[4]) == len(values)
      if std is None:
        assert g[3] is None  # one seed: no spread measured, none shown
      else:
        assert float(g[3]) == pytest.approx(100 * std, abs=PCT), (row, method, txt)
      assert (g[5] == "*") == on_test
      assert bool(g[1]) == bool(g[6])
      gap = max(means.values()) - mean
      if gap > 1e-9 or gap == 0 and sum(v == mean for v in means.values()) == 1:
        assert bool(g[1]) == (gap == 0), (row, method, txt)  # bold: the best of the row


def _check_sign_table(body, outcomes, alpha):
  expected = _sign_rows(outcomes, alpha)
  if not expected:
    assert body.strip().startswith("No sign tests"), body
    return
  head, lines = _table(body)
  assert head[-1] == f"significant at {alpha:g}"
  assert [(l[0], l[1]) for l in lines] == list(expected)
  for l in lines:
    n, w, lo, ties, p, q, sig = expected[(l[0], l[1])]
    assert [int(v) for v in l[2:6]] == [n, w, lo, ties]
    # '%.4g': within half a unit of the 4th significant digit.
    assert float(l[6]) == pytest.approx(p, rel=5.01e-4)
    assert float(l[7]) == pytest.approx(q, rel=5.01e-4)
    assert p == pytest.approx(sps.binomtest(w, w + lo, 0.5).pvalue if w + lo else 1.0, rel=1e-12)
    assert l[8] == ("yes" if sig else "no")


# ------------------------------------------------------------------------------- reading figures
@contextlib.contextmanager
def _drawn():
  """``{file name: Figure}`` of every figure the report builds (not rendered: only read back)."""
  figs, original = {}, plots._save

  def keep(fig, path):
    figs[os.path.basename(os.fspath(path))] = fig
    plt.close(fig)
    return os.fspath(path)

  plots._save = keep
  try:
    yield figs
  finally:
    plots._save = original


def _check_band(band, steps, mean, std):
  """The fill_between band covers exactly the steps with a std, from mean − std to mean + std."""
  ys = collections.defaultdict(list)
  for p in band.get_paths():
    for x, y in p.vertices:
      ys[float(x)].append(y)
  has = np.isfinite(std)
  assert sorted(ys) == steps[has].tolist()
  lo = np.asarray([min(ys[x]) for x in steps[has]])
  hi = np.asarray([max(ys[x]) for x in steps[has]])
  np.testing.assert_allclose(lo, mean[has] - std[has], **FIG)
  np.testing.assert_allclose(hi, mean[has] + std[has], **FIG)


def _check_curves(ax, expected):
  """Lines ``{label: (steps, mean, std)}`` and their bands, in drawing order."""
  lines = {l.get_label(): l for l in ax.get_lines()}
  assert len(ax.collections) == len(expected)
  for (label, (steps, mean, std)), band in zip(expected.items(), ax.collections):
    line = lines.pop(label)
    np.testing.assert_array_equal(line.get_xdata(), steps)
    np.testing.assert_allclose(line.get_ydata(), mean, **FIG)
    _check_band(band, steps, mean, std)
  return lines  # the rest: stage boundaries


def _boundaries(spec):
  last = collections.defaultdict(lambda: -math.inf)
  for r in spec["rows"]:
    last[r["stage"]] = max(last[r["stage"]], r["step"])
  return [float(last[t]) for t in sorted(last)[:-1]]


def _check_figures(figs, specs, cells, with_test):
  for row in sorted({k[0] for k in cells}):
    safe = report._safe(row)
    chosen = {m: s for (r, m), (s, _) in sorted(cells.items()) if r == row and s["rows"]}
    if chosen:
      split = "test" if with_test else "validation"
      ax = figs.pop(f"curves_{safe}.png").axes[0]
      rest = _check_curves(ax, {f"{m} ({split})": _pivot(s["acc"][split])
                                for m, s in chosen.items()})
      xs = sorted(l.get_xdata()[0] for l in rest.values())
      assert all(l.get_xdata()[0] == l.get_xdata()[1] for l in rest.values())
      assert xs == _boundaries(next(iter(chosen.values())))
      ax = figs.pop(f"weight_norm_{safe}.png").axes[0]
      rest = _check_curves(ax, {m: _pivot(s["norm"]) for m, s in chosen.items()})
      assert sorted(l.get_xdata()[0] for l in rest.values()) == \
          _boundaries(next(iter(chosen.values())))
    in_row = [s for s in specs if s["row"] == row and s["test_by_seed"]]
    pct = lambda s: 100 * _mean_std(s["test_by_seed"].values())[0]
    lrs, wds = sorted({s["lr"] for s in in_row}), sorted({s["wd"] for s in in_row})
    if len(lrs) * len(wds) > 1:
      fig = figs.pop(f"heatmap_{safe}.png")
      axes = {ax.get_title(): ax for ax in fig.axes if ax.images}
      assert sorted(axes) == sorted({s["method"] for s in in_row})
      finite = []
      for method, ax in axes.items():
        want = np.full((len(lrs), len(wds)), np.nan)
        for i, lr in enumerate(lrs):
          for j, wd in enumerate(wds):
            at = [pct(s) for s in in_row
                  if s["method"] == method and (s["lr"], s["wd"]) == (lr, wd)]
            if at:
              want[i, j] = max(at)  # the best run at that grid point
        got = np.ma.filled(ax.images[0].get_array().astype(np.float64), np.nan)
        np.testing.assert_allclose(got, want, **FIG)
        texts = {(round(t.get_position()[1]), round(t.get_position()[0])): float(t.get_text())
                 for t in ax.texts}
        assert sorted(texts) == [tuple(ij) for ij in np.argwhere(np.isfinite(want)).tolist()]
        for (i, j), v in texts.items():  # '%.3g': half a unit of the third significant digit
          assert v == pytest.approx(want[i, j], rel=5.01e-3)
        finite += want[np.isfinite(want)].tolist()
        clim = ax.images[0].get_clim()
      lo, hi = min(finite), max(finite)
      if lo < hi:
        np.testing.assert_allclose(clim, (lo, hi), **FIG)  # one shared scale
      else:  # one value everywhere: matplotlib widens a singular scale around it
        assert clim[0] < lo < clim[1]
    ts = sorted({s["stages"] for s in in_row})
    if len(ts) > 1:
      ax = figs.pop(f"stages_{safe}.png").axes[0]
      bars = {c.get_label(): c for c in ax.containers}
      assert sorted(bars) == sorted({s["method"] for s in in_row})
      for method, c in bars.items():
        got_ts, m, sd = [], [], []
        for t in ts:
          group = [s for s in in_row if s["method"] == method and s["stages"] == t]
          if group:
            best, _ = _choose(group)  # chosen at that number of stages as in the table
            mean, std = _mean_std([100 * a for a in best["test_by_seed"].values()])
            got_ts.append(t), m.append(mean), sd.append(np.nan if std is None else std)
        line, _, barcols = c.lines
        # errorbar keeps the lists it was given (object arrays of float64)
        np.testing.assert_array_equal(np.asarray(line.get_xdata(), np.float64), got_ts)
        np.testing.assert_allclose(np.asarray(line.get_ydata(), np.float64), m, **FIG)
        sd = np.asarray(sd)
        if np.isnan(sd).all():
          assert barcols == ()  # no seed spread anywhere: no bars
          continue
        segs = barcols[0].get_segments()
        assert len(segs) == len(got_ts)
        for t, mean, std, seg in zip(got_ts, m, sd, segs):
          if np.isnan(std):
            assert len(seg) == 0
          else:
            np.testing.assert_allclose(seg, [[t, mean - std], [t, mean + std]], **FIG)
  assert not figs, sorted(figs)  # no figure left unchecked


# ------------------------------------------------------------------------------- the tests
@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(1, 2), n_methods=st.integers(2, 3),
       with_test=st.booleans(), alpha=st.sampled_from([0.05, 0.2]))
def test_report_statistics_match_numpy(seed, n_rows, n_methods, with_test, alpha):
  with tempfile.TemporaryDirectory() as root:
    specs = _study(os.path.join(root, "runs"), seed, n_rows, n_methods, with_test)
    with _drawn() as figs:
      md = open(report.report([os.path.join(root, "runs")], os.path.join(root, "out"),
                              alpha=alpha)).read()
      cells = _cells(specs)
      if not cells:
        assert "No run has a test accuracy" in md
        return
      _check_mean_table(_section(md, "Test accuracy (%), mean ± std"), cells,
                        lambda s: s["test_by_seed"])
      outcomes = collections.defaultdict(dict)
      for (row, m), (s, _) in cells.items():
        outcomes[m].update({(row, sd): a for sd, a in s["test_by_seed"].items() if sd != -1})
      if len(outcomes) >= 2:
        _check_sign_table(_section(md, "Sign tests between methods"), outcomes, alpha)
      # The final epoch: the same chosen configurations, seeds with a finite final accuracy.
      final = {k: v for k, v in cells.items() if v[0]["final_by_seed"]}
      body = _section(md, "Test accuracy (%) at the final epoch")
      assert (body is None) == (not final)
      if final:
        _check_mean_table(body, final, lambda s: s["final_by_seed"])
        outcomes = collections.defaultdict(dict)
        for (row, m), (s, _) in final.items():
          outcomes[m].update({(row, sd): a for sd, a in s["final_by_seed"].items()})
        if len(outcomes) >= 2:
          _check_sign_table(_section(md, "Sign tests at the final epoch"), outcomes, alpha)
      _check_fit_tables(md, cells)
      _check_runs_table(md, specs)
      _check_figures(figs, specs, cells, with_test)


def _check_fit_tables(md, cells):
  want = [(row, m, t, by) for (row, m), (s, _) in sorted(cells.items()) for t, by in s["stage_fit"]]
  body = _section(md, "Training-set accuracy at the end of each stage")
  assert (body is None) == (not want)
  if want:
    head, lines = _table(body)
    cols = [s for s in fit_report.FIT_SPLITS + ("test",) if any(s in w[3] for w in want)]
    assert head[3:] == [fit_report._HEAD[s] for s in cols]
    assert len(lines) == len(want)
    for line, (row, m, t, by) in zip(lines, want):
      assert line[:3] == [row, m, str(t)]
      for split, txt in zip(cols, line[3:]):
        if split not in by:
          assert txt == "—"
          continue
        mean, std = _mean_std(by[split])
        nums = [float(v) for v in txt.split(" ± ")]
        assert nums[0] == pytest.approx(100 * mean, abs=PCT)
        assert len(nums) == (1 if std is None else 2)
        if std is not None:
          assert nums[1] == pytest.approx(100 * std, abs=PCT)
  want = [(row, m, s["epochs"]) for (row, m), (s, _) in sorted(cells.items()) if s["epochs"]]
  body = _section(md, "Epochs to fit each stage")
  assert (body is None) == (not want)
  if want:
    _, lines = _table(body)
    width = max(len(e) for *_, e in want)
    assert len(lines) == len(want)
    for line, (row, m, epochs) in zip(lines, want):
      assert line[:3] == [row, m, "99%"] and len(line) == 3 + width
      for txt, seeds in zip(line[3:], epochs + [None] * (width - len(epochs))):
        if seeds is None:
          assert txt == "—"
          continue
        hit = [e for e in seeds if e is not None]
        g = re.fullmatch(r"(.+) \((\d+)/(\d+)\)", txt)
        assert (int(g[2]), int(g[3])) == (len(hit), len(seeds)), txt
        if not hit:
          assert g[1] == "—"
          continue
        mean, std = _mean_std(hit)
        nums = [float(v) for v in g[1].split(" ± ")]
        assert nums[0] == pytest.approx(mean, abs=0.05 + 1e-9)  # '%.1f'
        assert len(nums) == (1 if std is None else 2)
        if std is not None:
          assert nums[1] == pytest.approx(std, abs=0.05 + 1e-9)


def _check_runs_table(md, specs):
  _, lines = _table(_section(md, "Runs"))
  by_path = {l[0]: l for l in lines}
  assert sorted(by_path) == sorted(s["path"] for s in specs)
  for s in specs:
    line = by_path[s["path"]]
    assert int(line[4]) == len(s["test_by_seed"])
    if not s["test_by_seed"]:
      assert line[5] == "—"
    else:
      mean, std = _mean_std(s["test_by_seed"].values())
      nums = [float(v) for v in line[5].split(" ± ")]
      assert nums[0] == pytest.approx(100 * mean, abs=PCT)
      assert len(nums) == (1 if std is None else 2)
      if std is not None:
        assert nums[1] == pytest.approx(100 * std, abs=PCT)
    if s["val"] is None:
      assert line[6] == "—"
    else:
      assert float(line[6]) == pytest.approx(100 * s["val"], abs=PCT)


@settings(deadline=None, max_examples=30)
@given(data=st.data(), n_methods=st.integers(2, 4), alpha=st.sampled_from([0.01, 0.05, 0.2]))
def test_pairwise_sign_tests_and_holm_match_scipy(data, n_methods, alpha):
  """Float64 p-values (no printing): units shared by some methods only, ties (k/10 scores)."""
  outcomes = {}
  for i in range(n_methods):
    units = data.draw(st.sets(st.tuples(st.sampled_from("xy"), st.integers(0, 7)), max_size=16))
    outcomes[f"m{i}"] = {u: data.draw(st.integers(0, 10)) / 10 for u in sorted(units)}
  want = _sign_rows(outcomes, alpha)
  got = stats.pairwise_sign_tests(outcomes, alpha)
  assert [(r.a, r.b) for r in got] == list(want)
  for r in got:
    n, w, lo, ties, p, q, sig = want[(r.a, r.b)]
    assert (r.n_pairs, r.wins, r.losses, r.ties) == (n, w, lo, ties)
    # math.comb sums are exact up to the final division: float64 rounding only.
    assert r.p_value == pytest.approx(p, rel=1e-12) and r.p_holm == pytest.approx(q, rel=1e-12)
    assert r.significant == sig


def _plain_run(root, name, method, *, lr, wd, stages, test, val, seeds=(0, 1), drop=(),
               per_seed_seeds=None):
  d = os.path.join(root, name)
  os.makedirs(d)
  with open(os.path.join(d, "config.json"), "w") as f:
    json.dump(_config(method, 0.2, lr, wd, stages, per_seed_seeds or seeds, drop), f)
  with open(os.path.join(d, "summary.json"), "w") as f:
    json.dump(dict(method=method, test_accuracy=dict(per_seed=list(test)),
                   best_validation_accuracy=val), f)
  open(os.path.join(d, "metrics.jsonl"), "w").close()
  return d


def test_ragged_runs_missing_fields_and_mixed_validation(tmp_path):
  """Runs whose config lacks a grid coordinate are listed as missing and left out of the figure
  that needs it (the report used to crash: ``None is not in list`` / ``None < int``); a per_seed
  longer than config.seeds is numbered 0..; at one number of stages, configurations with and
  without a validation accuracy are compared on test accuracy, as in the table."""
  root = str(tmp_path / "runs")
  _plain_run(root, "a1", "standard", lr=0.1, wd=0.0, stages=2, test=[0.50, 0.56], val=0.7)
  _plain_run(root, "a2", "standard", lr=0.1, wd=5e-4, stages=3, test=[0.60, 0.64], val=0.9)
  _plain_run(root, "a3", "standard", lr=0.05, wd=5e-4, stages=3, test=[0.70, 0.78], val=None)
  _plain_run(root, "a4", "standard", lr=0.01, wd=0.0, stages=2, test=[0.9, 0.98], val=0.1,
             drop=[("optim", "weight_decay")])
  _plain_run(root, "a5", "standard", lr=0.01, wd=0.0, stages=4, test=[0.9, 0.96], val=0.1,
             drop=[("reinit", "stages")])
  _plain_run(root, "a6", "standard", lr=0.01, wd=0.0, stages=4, test=[0.92, 0.96], val=0.1,
             drop=[("optim", "learning_rate")])
  # per_seed of 3 seeds against config seeds [5]: numbered 0, 1, 2 and paired with standard's 0, 1.
  _plain_run(root, "b1", "layerwise", lr=0.1, wd=0.0, stages=2, test=[0.4, 0.7, 0.8], val=0.5,
             per_seed_seeds=[5])
  with _drawn() as figs:
    md = open(report.report([root], str(tmp_path / "out"))).read()
  missing = _section(md, "Missing")
  for name, what in (("a4", "config.weight_decay"), ("a5", "config.stages"),
                     ("a6", "config.learning_rate"), ("b1", "config.seeds")):
    assert f"{os.path.join(root, name)}: {what}" in missing
  # Table: standard's cell mixes runs with and without validation: chosen on test (a4, 94%).
  row = report.load_run(os.path.join(root, "a1")).row
  assert f"| {row} | 63.33 ± 17.00 (n=3) | **94.00 ± 4.00 (n=2)*** |" in md
  assert "| layerwise | standard | 2 | 0 | 2 | 0 | 0.5 | 0.5 | no |" in md
  safe = report._safe(row)
  # Heatmap: a4 and a6 have no grid point; lr {0.01 (a5), 0.05, 0.1} × wd {0, 5e-4}.
  axes = {ax.get_title(): ax for ax in figs[f"heatmap_{safe}.png"].axes if ax.images}
  got = np.ma.filled(axes["standard"].images[0].get_array().astype(float), np.nan)
  np.testing.assert_allclose(got, [[93, np.nan], [np.nan, 74], [53, 62]], **FIG)
  # Stages: a5 has no number of stages. At 3: a2 (validation 0.9) against a3 (none): on test, a3.
  c = {c.get_label(): c for c in figs[f"stages_{safe}.png"].axes[0].containers}["standard"]
  np.testing.assert_array_equal(np.asarray(c.lines[0].get_xdata(), float), [2, 3, 4])
  # At 2: a1 and a4 both have a validation accuracy: a1 (0.7 > 0.1). At 4: a6 alone.
  np.testing.assert_allclose(np.asarray(c.lines[0].get_ydata(), float), [53, 74, 94], **FIG)
  np.testing.assert_allclose([s[1][1] - s[0][1] for s in c.lines[2][0].get_segments()],
                             [6, 8, 4], **FIG)  # 2·std (ddof 0) of a1, a3, a6


def test_curve_and_boundaries_with_unequal_seeds():
  """plots.curve and stage_boundaries on their own: three seeds with different steps/values."""
  rng = np.random.default_rng(7)
  rows, by_seed, last = [], {}, {}
  for seed, n in ((3, 9), (0, 6), (11, 7)):  # seeds logging 9, 6 and 7 evaluations
    by_seed[seed] = {}
    for step in range(1, n + 1):
      v = float(rng.normal())
      stage = 1 + (step - 1) // 3
      last[stage] = max(last.get(stage, 0), step)
      by_seed[seed][step] = v
      rows.append(dict(step=step, stage=stage, split="test", accuracy=v, seed=seed))
      rows.append(dict(step=step, stage=stage, split="train", accuracy=v + 5, seed=seed))
  steps, mean, std = plots.curve(rows, "accuracy", "test")
  want = _pivot(by_seed)
  np.testing.assert_array_equal(steps, want[0])
  np.testing.assert_allclose(mean, want[1], **FIG)
  np.testing.assert_allclose(std, want[2], **FIG)
  assert np.isnan(std[-2:]).all() and np.isfinite(std[:-2]).all()  # steps 8, 9: one seed
  assert plots.stage_boundaries(rows) == [3.0, 6.0]
