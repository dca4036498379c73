"""Figures and the report command on small workdirs written in the engine's documented format
(docs/CONTRACTS.md, Engine; [Z] Tables 1–3 and Figs. 2–5, [LW] Table 3)."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from reinit_jax.analysis import plots, report
from reinit_jax.launch import base_config
from reinit_jax.train.workdir import config_json


def _png_ok(path):
  with open(path, "rb") as f:
    head = f.read(8)
  return head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 1000


def _records(stages, steps_per_stage, seeds, acc0):
  out = []
  for seed in seeds:
    for step in range(1, stages * steps_per_stage + 1):
      stage = (step - 1) // steps_per_stage + 1
      for split in ("train", "test"):
        out.append(dict(step=step, stage=stage, epoch=step, split=split, loss=1.0 / step,
                        accuracy=acc0 + 0.001 * step, learning_rate=0.05,
                        param_norm=10.0 + step % steps_per_stage, seed=seed))
  return out


def _workdir(root, name, *, method, lr, wd, stages, seeds, test, val, distill=False):
  d = os.path.join(root, name)
  os.makedirs(d)
  c = base_config()  # config.json exactly as the engine writes it (nested by section)
  c.name, c.model.name, c.data.dataset, c.data.synthetic_alpha = name, "mlp", "synthetic", 1.0
  c.optim.learning_rate, c.optim.weight_decay, c.optim.epochs = lr, wd, stages * 4
  c.reinit.method, c.reinit.stages, c.reinit.distill = method, stages, distill
  c.run.seeds = tuple(seeds)
  config = config_json(c)
  summary = dict(test_accuracy=dict(mean=float(np.mean(test)), std=float(np.std(test)),
                                    per_seed=list(test)),
                 best_validation_accuracy=val, stages=[], wall_time_s=1.0, steps_per_second=1.0,
                 params_digest="x", method=method, name=name)
  with open(os.path.join(d, "config.json"), "w") as f:
    json.dump(config, f)
  with open(os.path.join(d, "summary.json"), "w") as f:
    json.dump(summary, f)
  with open(os.path.join(d, "metrics.jsonl"), "w") as f:
    for r in _records(stages, 4, seeds, test[0] - 0.05):
      f.write(json.dumps(r) + "\n")
  return d


@pytest.fixture
def sweep(tmp_path):
  root = str(tmp_path / "sweep")
  seeds = range(10)
  for method, base in (("standard", 0.6), ("layerwise", 0.8)):
    for lr in (0.01, 0.05):
      for wd in (0.0, 1e-4):
        good = lr == 0.05 and wd == 1e-4  # the best validation accuracy of its cell
        test = [base + 0.001 * s - (0.0 if good else 0.1) for s in seeds]
        _workdir(root, f"{method}_lr{lr}_wd{wd}", method=method, lr=lr, wd=wd, stages=3,
                 seeds=seeds, test=test, val=0.9 if good else 0.5)
    # Another number of stages, worse on validation: shown in the stages figure, not the table.
    _workdir(root, f"{method}_T9", method=method, lr=0.05, wd=1e-4, stages=9, seeds=seeds,
             test=[base - 0.2] * 10, val=0.4)
  os.makedirs(os.path.join(root, "broken"))
  with open(os.path.join(root, "broken", "config.json"), "w") as f:
    json.dump({"optim": {"learning_rate": 0.1}}, f)
  return root


def test_report_tables_figures_and_missing(sweep, tmp_path):
  out = str(tmp_path / "out")
  md_path = report.report([sweep], out)
  md = open(md_path).read()
  assert len(report.find_runs([sweep])) == 11
  # Chosen cells: lr 0.05, wd 1e-4; accuracies base + 0.001 s, s = 0..9 -> mean base + 0.0045,
  # std (ddof 0) = 0.001 * sqrt(8.25) = 0.00287.
  assert "| synthetic/mlp aug=none sched=constant α=1 | **80.45 ± 0.29 (n=10)** | 60.45 ± 0.29 (n=10) |" in md
  # Sign test: layerwise beats standard on all 10 seeds, p = 2 / 2^10; one pair so Holm = p.
  assert "| layerwise | standard | 10 | 10 | 0 | 0 | 0.001953 | 0.001953 | yes |" in md
  assert md.count("\n| synthetic/mlp") == 1  # one row: lr × wd tuned inside it
  assert "broken: method" in md and "summary.test_accuracy" in md
  for name in ("curves_", "weight_norm_", "heatmap_", "stages_"):
    files = [f for f in os.listdir(out) if f.startswith(name)]
    assert len(files) == 1 and files[0].isascii() and _png_ok(os.path.join(out, files[0])), name
    assert f"]({files[0]})" in md


def test_report_row_by_splits_rows(sweep, tmp_path):
  md = open(report.report([sweep], str(tmp_path / "o"), row_by=("weight_decay",))).read()
  # wd = 1e-4 row: best validation at lr 0.05 (80.45); wd = 0 row: all validation 0.5, the first
  # maximum (lr 0.01) is shown: 70.45.
  assert "| synthetic/mlp aug=none sched=constant α=1 weight_decay=0.0001 | **80.45" in md
  assert "| synthetic/mlp aug=none sched=constant α=1 weight_decay=0.0 | **70.45" in md
  assert md.count("![heatmap_") == 2  # one lr × (single) wd heatmap per row


@pytest.mark.slow
def test_report_on_real_engine_workdirs(tmp_path):
  from reinit_jax import train
  for method in ("standard", "layerwise"):
    c = train.base_config()
    c.reinit.method, c.optim.epochs, c.reinit.stages = method, 6, 3
    c.run.seeds, c.run.progress = (0, 1), "off"
    if method == "layerwise":
      c.reinit.hparams = {"events_per_block": 1}
    train.run(c, str(tmp_path / "runs" / method))
  out = str(tmp_path / "out")
  md = open(report.report([str(tmp_path / "runs")], out)).read()
  row = [l for l in md.splitlines() if l.startswith("| synthetic/mlp")]
  assert len(row) == 1 and row[0].count("(n=2)") == 2
  assert not [l for l in md.splitlines() if l.startswith("- ") and "config." in l], md
  assert "| layerwise | standard | 2 |" in md
  assert any(f.startswith("weight_norm_") for f in os.listdir(out))


def test_report_cli(sweep, tmp_path):
  out = str(tmp_path / "cli")
  r = subprocess.run([sys.executable, "-m", "reinit_jax.analysis.report", sweep, "--out", out],
                     capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip().endswith("report.md") and "missing" in r.stderr
  assert os.path.exists(os.path.join(out, "report.md"))
  (tmp_path / "empty").mkdir()
  for folder, why in (("none", "is not a directory"), ("empty", "no workdir")):
    bad = subprocess.run([sys.executable, "-m", "reinit_jax.analysis.report",
                          str(tmp_path / folder), "--out", out], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: run_dirs: ")
    assert why in bad.stderr and str(tmp_path / folder) in bad.stderr


def test_single_seed_shows_no_spread(tmp_path):
  root = str(tmp_path / "runs")
  for method, acc in (("standard", 0.7), ("layerwise", 0.75)):
    _workdir(root, method, method=method, lr=0.05, wd=0.0, stages=3, seeds=[0], test=[acc],
             val=0.5)
  md = open(report.report([root], str(tmp_path / "o"))).read()
  assert "| synthetic/mlp aug=none sched=constant α=1 | **75.00 (n=1)** | 70.00 (n=1) |" in md
  assert "± 0.00" not in md and "| 1 | 75.00 | 50.00 |" in md  # the runs table
  assert report.mean_std(0.5, 0.01, 2) == "50.00 ± 1.00" and report.mean_std(0.5, 0.0, 1) == "50.00"
  recs = _records(2, 3, (0,), 0.5)
  _, mean, std = plots.curve(recs, "accuracy", "test")
  assert mean[0] == pytest.approx(0.501) and np.isnan(std).all()  # no band for one seed
  import importlib.util
  spec = importlib.util.spec_from_file_location(
    "tables", os.path.join(os.path.dirname(os.path.dirname(__file__)), "results", "tables.py"))
  tables = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tables)
  text = tables.pivot(tables.load(root), "dataset", "method")
  assert "| synthetic | **75.00 (n=1)** | 70.00 (n=1) |" in text and "±" not in text
  two = [(dict(c, method="x"), dict(s, test_accuracy={"mean": 0.5, "std": 0.01, "per_seed": [.49, .51]}))
         for c, s in tables.load(root)[:1]]
  assert "50.00 ± 1.00 (n=2)" in tables.pivot(two, "dataset", "method")


def test_report_no_runs_raises(tmp_path):
  with pytest.raises(ValueError, match="run_dirs"):
    report.report([str(tmp_path)], str(tmp_path / "o"))


def test_setting_letters_and_defensive_reading(tmp_path):
  assert report._setting({"setting": "DCW"}) == "DCW"
  assert report._setting({"setting": "none"}) == "Ø"
  assert report._setting({"augmentation": "cifar", "schedule": "cosine_per_stage",
                          "weight_decay": 5e-4}) == "aug=cifar sched=cosine_per_stage"
  d = tmp_path / "r"
  d.mkdir()
  (d / "summary.json").write_text(json.dumps({"method": "full", "test_accuracy": 0.5}))
  (d / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "spl')  # killed mid-write
  r = report.load_run(str(d))
  assert r.method == "full" and r.test == {-1: 0.5} and len(r.records) == 1
  assert any("unparsable" in m for m in r.missing) and any("config.json" in m for m in r.missing)


def test_plots_write_pngs_and_reject_bad_inputs(tmp_path):
  recs = _records(3, 5, (0, 1), 0.5)
  assert plots.stage_boundaries(recs) == [5.0, 10.0]  # stages of steps 1-5, 6-10, 11-15
  steps, mean, std = plots.curve(recs, "accuracy", "train")
  assert steps.tolist() == list(range(1, 16)) and mean[0] == pytest.approx(0.501) and std[0] == 0
  p = plots.plot_heatmaps({"a": np.eye(2), "b": np.full((2, 2), np.nan)}, [0.1, 0.01], [0, 1e-4],
                          tmp_path / "h.png")
  assert _png_ok(p)
  sh = SimpleNamespace(sigmas=np.array([0, 0.01, 0.1]), loss_change=np.array([0, 0.1, 1.0]),
                       loss_change_std=np.zeros(3), accuracy_change=np.array([0, 0, -0.2]),
                       accuracy_change_std=np.zeros(3))
  diag = SimpleNamespace(mean=np.array([1.0, 0.5, 0.25]), var_draws=np.array([0.1, 0.2, 0.4]))
  for path in (plots.plot_learning_curves({"std": recs}, tmp_path / "c.png"),
               plots.plot_weight_norm({"std": recs}, tmp_path / "w.png"),
               plots.plot_accuracy_vs_stages({"lw": {1: [0.5, 0.6], 5: [0.7]}}, tmp_path / "s.png"),
               plots.plot_margins({"lw": np.linspace(-1, 1, 500)}, tmp_path / "m.png"),
               plots.plot_sharpness({"lw": sh}, tmp_path / "sh.png"),
               plots.plot_init_diagnostics({"he": diag}, tmp_path / "sub" / "i.png")):
    assert _png_ok(path), path
  with pytest.raises(ValueError, match="grids"):
    plots.plot_heatmaps({"a": np.eye(3)}, [0.1, 0.01], [0, 1e-4], tmp_path / "x.png")
  with pytest.raises(ValueError, match="runs"):
    plots.plot_learning_curves({}, tmp_path / "x.png")
  with pytest.raises(ValueError, match="param_norm"):
    plots.plot_weight_norm({"a": [{"step": 1}]}, tmp_path / "x.png")


def test_distillation_runs_are_their_own_column(tmp_path):
  """A method with distillation ([Z] §3.1's BAN is `full` + distillation) is a column of its own,
  '<method>+distill', beside the same method without it; two seeds with distinct values."""
  root = str(tmp_path / "runs")
  for distill, test in ((False, [0.70, 0.72]), (True, [0.80, 0.84])):
    _workdir(root, f"full_{distill}", method="full", lr=0.05, wd=0.0, stages=3, seeds=(0, 1),
             test=test, val=0.5, distill=distill)
  md = open(report.report([root], str(tmp_path / "out"))).read()
  header = next(line for line in md.splitlines() if line.startswith("| setting"))
  assert [h.strip() for h in header.strip("|").split("|")][1:] == ["full", "full+distill"]
  assert "71.00 ± 1.00 (n=2)" in md and "82.00 ± 2.00 (n=2)" in md


def test_no_validation_split_by_design_is_not_reported_missing(tmp_path, capsys):
  """A run without a validation split (the synthetic task) writes best_validation_accuracy: null;
  the report chooses on test accuracy without listing it as missing. A summary without the key
  at all is listed. One workdir is "1 workdir"."""
  root = str(tmp_path / "runs")
  _workdir(root, "a", method="standard", lr=0.05, wd=0.0, stages=3, seeds=[0], test=[0.7],
           val=None)
  md = open(report.report([root], str(tmp_path / "o"))).read()
  assert "1 workdir: " in md and "best_validation_accuracy" not in md + capsys.readouterr().err
  summary = json.load(open(os.path.join(root, "a", "summary.json")))
  del summary["best_validation_accuracy"]
  json.dump(summary, open(os.path.join(root, "a", "summary.json"), "w"))
  md = open(report.report([root], str(tmp_path / "o2"))).read()
  assert "summary.best_validation_accuracy" in md + capsys.readouterr().err
