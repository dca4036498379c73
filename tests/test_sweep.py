"""Sweeps: grids declared by config files, ``launch.py --sweep=list`` and ``--sweep=<index>``."""

import json
import os
import shlex
import subprocess
import sys
import textwrap

import pytest

from reinit_jax.launch import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny synthetic study with a 2 × 2 grid (methods × weight decay), seeds vmapped inside a point.
_CONFIG = textwrap.dedent('''
    from reinit_jax import launch

    def get_config(arg=None):
      c = launch.base_config()
      c.name = "tiny_sweep"
      c.optim.epochs = 4
      c.reinit.stages = 2
      c.data.synthetic_test = 100
      c.run.seeds = (0, 1)
      c.run.progress = "off"
      c.reinit.method = ("standard", "full")  # replaced by a point that sets method
      launch.apply(c, arg)
      return c

    def get_sweep(arg=None):
      return launch.product(method=("standard", "shrink_perturb"), weight_decay=(0.0, 0.01))
''')


@pytest.fixture
def config_file(tmp_path):
  path = tmp_path / "tiny_sweep.py"
  path.write_text(_CONFIG)
  return str(path)


def _launch(args, timeout=300):
  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_product_order_and_names():
  grid = sweep.product(method=("a", "b"), lr=(0.1, 0.01), seeds=((0, 1),))
  assert len(grid) == 4 and grid[1] == {"method": "a", "lr": 0.01, "seeds": (0, 1)}
  assert sweep.point_name(grid[1]) == "method-a_lr-0.01_seeds-0-1"
  assert sweep.point_arg(grid[1]) == "method=a,lr=0.01,seeds=(0;1)"
  with pytest.raises(ValueError, match="no values"):
    sweep.product(method=())


def test_point_config_applies_point_after_arg(config_file):
  name, c = sweep.point_config(config_file + ":epochs=6,weight_decay=0.5", 3)
  assert name == "method-shrink_perturb_weight_decay-0.01"
  assert c.reinit.method == "shrink_perturb" and c.optim.weight_decay == 0.01
  assert c.optim.epochs == 6
  with pytest.raises(ValueError, match="out of range"):
    sweep.point_config(config_file, 4)


def test_list_prints_one_parsable_command_per_point(config_file, tmp_path):
  p = _launch([f"--config={config_file}:epochs=2", f"--workdir={tmp_path}/wd", "--sweep=list",
               "--config.data.synthetic_test=50"], timeout=120)
  assert p.returncode == 0, p.stderr[-2000:]
  lines = p.stdout.strip().splitlines()
  assert len(lines) == 4
  for i, line in enumerate(lines):
    words = shlex.split(line)
    assert words[:2] == ["python", "launch.py"]
    flags = dict(w[2:].split("=", 1) for w in words[2:])
    name, want = sweep.point_config(f"{config_file}:epochs=2", i)
    assert flags["workdir"] == f"{tmp_path}/wd/{name}"
    assert flags["config.data.synthetic_test"] == "50"
    assert not any(k.startswith("config.reinit") for k in flags)  # the point's method is in :arg
    path, arg = flags["config"].split(":", 1)
    got = sweep.load_module(path).get_config(arg)
    assert (got.reinit.method, got.optim.weight_decay, got.optim.epochs) == (
        want.reinit.method, want.optim.weight_decay, 2)


def test_list_fails_on_a_value_of_the_wrong_type(config_file, tmp_path):
  """--sweep=list applies the command's values to every point's config: a value of the wrong type
  fails there in one line, before a command is printed."""
  p = _launch([f"--config={config_file}", f"--workdir={tmp_path}/wd", "--sweep=list",
               "--config.optim.epochs=abc"], timeout=120)
  assert p.returncode == 1 and p.stdout == "", (p.stdout, p.stderr[-2000:])
  assert p.stderr.strip().splitlines()[-1].startswith("error: config.optim.epochs='abc'")


def test_list_without_grid_fails(tmp_path):
  p = _launch(["--config=configs/default.py", "--sweep=list"], timeout=120)
  assert p.returncode != 0 and "declares no sweep" in p.stderr


def test_index_runs_into_point_workdir(config_file, tmp_path):
  wd = tmp_path / "wd"
  p = _launch([f"--config={config_file}", f"--workdir={wd}", "--sweep=2",
               "--config.optim.epochs=2"])
  assert p.returncode == 0, p.stderr[-2000:]
  sub = wd / "method-shrink_perturb_weight_decay-0.0"
  assert sorted(os.listdir(wd)) == [sub.name]
  s = json.load(open(sub / "summary.json"))
  c = json.load(open(sub / "config.json"))
  assert s["method"] == "shrink_perturb" and s["steps"] == 2
  assert len(s["test_accuracy"]["per_seed"]) == 2  # seeds stay in one point (vmapped)
  assert c["optim"]["weight_decay"] == 0.0 and c["run"]["seeds"] == [0, 1]
  assert c["reinit"]["method"] == "shrink_perturb" and "methods" not in c["reinit"]


def test_synthetic_config_grids():
  main = sweep.points("configs/synthetic.py:seeds=10")
  assert len(main) == 18 and {p["method"] for p in main} >= {"layerwise", "head", "magnitude"}
  assert len(sweep.points("configs/synthetic.py:grid=l2")) == 36
  _, c = sweep.point_config("configs/synthetic.py:seeds=3,grid=rescale", 0)
  assert c.reinit.method == "rescale_only" and c.reinit.stages == 5
  assert c.data.synthetic_alpha == 0.5 and tuple(c.run.seeds) == (0, 1, 2)
  assert c.data.per_seed and c.optim.momentum == 0.0  # independent runs of plain GD ([LW] §1.1)
  _, c = sweep.point_config("configs/synthetic.py:seeds=3,shared_data=1", 0)
  assert not c.data.per_seed
