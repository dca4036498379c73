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
  c.reinit.methods = ("standard", "shrink_perturb")
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
