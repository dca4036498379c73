"""The report tool on real engine workdirs: a tiny synthetic study (two methods × two seeds)."""

import json
import os

import pytest

from reinit_jax.analysis import report
from reinit_jax.launch import base_config, study


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
  """Workdirs as launch.py writes them: <dir>/<method>/ with config, metrics and summary."""
  root = tmp_path_factory.mktemp("study")
  c = base_config()
  c.name = "tiny_study"
  c.optim.epochs = 6
  c.reinit.stages = 3
  c.data.synthetic_train = 64
  c.data.synthetic_test = 200
  c.run.seeds = (0, 1)
  c.run.progress = "off"
  c.reinit.method = ("standard", "shrink_perturb")
  study.run_study(c, str(root))
  return root


def test_report_table_matches_summaries(study_dir, tmp_path):
  md_path = report.report([str(study_dir)], str(tmp_path / "out"))
  md = open(md_path).read()
  table = md.split("## Test accuracy")[1].split("##")[0]
  header = next(line for line in table.splitlines() if line.startswith("| setting"))
  assert "standard" in header and "shrink_perturb" in header
  # The row is read from the nested config.json: data set, model, setting, α; nothing missing.
  assert "| synthetic/mlp aug=none sched=constant α=1 |" in table, table
  assert not [line for line in md.splitlines() if line.startswith("- ") and "config." in line], md
  for m in ("standard", "shrink_perturb"):
    s = json.load(open(study_dir / m / "summary.json"))
    ta = s["test_accuracy"]
    assert len(ta["per_seed"]) == 2
    cell = f"{100 * ta['mean']:.2f} ± {100 * ta['std']:.2f} (n=2)"
    assert cell in table, (cell, table)
  # Both methods share seeds 0 and 1 in one row, so the sign test pairs them.
  assert "| standard | shrink_perturb | 2 |" in md or "| shrink_perturb | standard | 2 |" in md


def test_report_figures_written(study_dir, tmp_path):
  out = tmp_path / "out"
  report.report([str(study_dir)], str(out))
  pngs = sorted(f for f in os.listdir(out) if f.endswith(".png"))
  assert any(f.startswith("curves_") for f in pngs) and any(f.startswith("weight_norm_") for f in pngs)
  for f in pngs:
    assert os.path.getsize(out / f) > 1000
  md = open(out / "report.md").read()
  for f in pngs:
    assert f"]({f})" in md


def test_report_command_line(study_dir, tmp_path):
  assert report.main([str(study_dir / "standard"), str(study_dir / "shrink_perturb"),
                      "--out", str(tmp_path / "cli")]) == 0
  assert os.path.exists(tmp_path / "cli" / "report.md")


def test_study_table_and_curves(study_dir, tmp_path):
  """launch.py's study table: per method the best-validation and final test accuracy as mean ± std
  (ddof 0, as summary.json) over the seeds, in %; curves.png drawn from every method's metrics."""
  summaries = {m: json.load(open(study_dir / m / "summary.json"))
               for m in ("standard", "shrink_perturb")}
  lines = study.table(summaries).splitlines()
  assert lines[0].split()[:3] == ["method", "test", "acc,"] and "memorized" not in lines[0]
  for m, s in summaries.items():
    row = next(line for line in lines if line.startswith(m + " "))
    for key in ("test_accuracy", "final_test_accuracy"):
      v = [100 * a for a in s[key]["per_seed"]]
      mean, std = sum(v) / len(v), (sum((a - sum(v) / len(v)) ** 2 for a in v) / len(v)) ** 0.5
      assert f"{mean:.2f} ± {std:.2f}" in row, (key, row)
  png = study.curves_png(summaries, str(tmp_path / "curves.png"))
  assert os.path.getsize(png) > 1000


def test_memorized_reads_the_last_stage_per_seed():
  """The memorization column: train_noisy of the last stage, per seed in seed order; none without
  label noise. Two seeds with distinct values, listed out of seed order."""
  rec = lambda stage, seed, acc, split="train_noisy": {"stage": stage, "seed": seed,
                                                       "split": split, "accuracy": acc}
  s = {"stages": [{"metrics": [rec(1, 0, 0.1), rec(1, 1, 0.2)]},
                  {"metrics": [rec(2, 1, 0.9), rec(2, 0, 0.7), rec(2, 0, 0.5, "train_clean")]}],
       "test_accuracy": {"per_seed": [0.8, 0.6]}, "final_test_accuracy": {"per_seed": [0.7, 0.5]},
       "steps": 10, "wall_time_s": 1.0}
  assert study.memorized(s) == [0.7, 0.9]
  row = study.table({"standard": s}).splitlines()[1]
  assert row.split()[1:4] == ["70.00", "±", "10.00"]  # best validation: seeds at 80 and 60
  assert "memorized" in study.table({"standard": s}).splitlines()[0]
  assert "80.00 ± 10.00" in row.split("60.00 ± 10.00")[1]  # memorized: mean 80, std 10 (ddof 0)
  assert study.memorized({"stages": [{"metrics": [rec(1, 0, 0.5, "train")]}]}) is None
