"""launch.py: config files with ``:k=v`` overrides and ``--config.<field>`` flags, the study table."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(args, timeout=300):
  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_launch_synthetic_with_overrides(tmp_path):
  p = _launch(["--config=configs/synthetic.py:method=shrink_perturb,seeds=2,alpha=2",
               f"--workdir={tmp_path}", "--config.epochs=4", "--config.stages=2",
               "--config.synthetic_test=200", "--config.progress=off"])
  assert p.returncode == 0, p.stderr[-2000:]
  assert "shrink_perturb" in p.stdout and str(tmp_path) in p.stdout
  s = json.load(open(tmp_path / "summary.json"))
  assert s["steps"] == 4 and s["events"] == 1 and len(s["test_accuracy"]["per_seed"]) == 2
  c = json.load(open(tmp_path / "config.json"))
  assert c["synthetic_alpha"] == 2.0 and c["seeds"] == [0, 1]


def test_launch_bad_override_fails_fast(tmp_path):
  p = _launch(["--config=configs/synthetic.py:method=nope", f"--workdir={tmp_path}"], timeout=60)
  assert p.returncode != 0
  assert "config.method='nope'" in p.stderr


def test_launch_methods_list_makes_subdirs(tmp_path):
  p = _launch(["--config=configs/synthetic.py:epochs=2,stages=2,synthetic_test=100",
               f"--workdir={tmp_path}", "--config.methods=('standard','full')",
               "--config.progress=off"])
  assert p.returncode == 0, p.stderr[-2000:]
  for m in ("standard", "full"):
    assert json.load(open(tmp_path / m / "summary.json"))["method"] == m


@pytest.mark.slow
def test_launch_default_no_flags(tmp_path):
  """``python launch.py`` with no flags: the Fashion-MNIST study of configs/default.py."""
  p = _launch([], timeout=1200)
  assert p.returncode == 0, p.stderr[-2000:]
  for m in ("standard", "shrink_perturb", "layerwise"):
    s = json.load(open(os.path.join(ROOT, "runs", "default", m, "summary.json")))
    assert s["test_accuracy"]["mean"] > 0.5
