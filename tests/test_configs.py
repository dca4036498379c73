"""The study configs (configs/*.py, docs/launching.md): each loads without JAX, and its
default and every point of every grid it declares pass validation, which knows data sets by name
only (no data is read, no TensorFlow is imported)."""

import glob
import json
import os
import subprocess
import sys

import pytest

from reinit_jax.launch import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))
# The grids the configs' docstrings document, with their sizes (grid= is the selecting knob).
GRIDS = {
  "configs/cifar_resnet18.py": {"settings": 32, "stages": 36, "hparams": 75},
  "configs/synthetic.py": {"main": 18, "l2": 36, "rescale": 3, "idle": 3, "momentum": 18},
  "configs/lw_datasets.py": {"main": 72, "full": 288},
  "configs/tiny_imagenet_preact18.py": {None: 96},
  "configs/online.py": {None: 9},
  "configs/label_noise.py": {None: 36},
  "configs/fashion_mnist_scnn.py": {None: 18},
  "configs/fashion_mnist_settings.py": {"settings": 16, "hparams": 27},
}

_LOAD = r'''
import json, sys
from reinit_jax.launch import sweep
out = {}
for path in sys.argv[1:]:
  m = sweep.load_module(path)
  c = m.get_config()
  n = len(m.get_sweep()) if hasattr(m, "get_sweep") else None
  out[path] = {"name": c.name, "points": n, "jax": "jax" in sys.modules,
               "tf": "tensorflow" in sys.modules}
print(json.dumps(out))
'''


def test_configs_load_without_importing_jax():
  """get_config() and get_sweep() of every config in a fresh process: JAX (and TensorFlow) stay
  unimported, so listing a grid or printing help is instant."""
  p = subprocess.run([sys.executable, "-c", _LOAD, *CONFIGS], cwd=ROOT, capture_output=True,
                     text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
  assert p.returncode == 0, p.stderr[-3000:]
  out = json.loads(p.stdout.strip().splitlines()[-1])
  assert sorted(out) == CONFIGS
  for path, r in out.items():
    assert not r["jax"] and not r["tf"], f"{path} imports jax or tensorflow: {r}"
    assert r["name"] == os.path.basename(path)[:-3], (path, r["name"])  # default workdir runs/<name>
  assert {p for p, r in out.items() if r["points"] is not None} == set(GRIDS)
  for path, grids in GRIDS.items():
    if None in grids:
      assert out[path]["points"] == grids[None], path


def test_every_config_with_a_grid_is_covered():
  assert set(GRIDS) <= set(CONFIGS)


@pytest.mark.parametrize("path", CONFIGS)
def test_default_config_validates(path):
  from reinit_jax.train.validation import validate
  c = validate(sweep.load_module(path).get_config())
  assert c.name == os.path.basename(path)[:-3]


def _grid_args():
  return [(path, grid, n) for path, grids in GRIDS.items() for grid, n in grids.items()]


@pytest.mark.parametrize("path,grid,count", _grid_args())
def test_every_sweep_point_validates_without_reading_data(path, grid, count):
  """Every point of every documented grid is a valid config; point 0 and the last point equal
  ``sweep.point_config`` (what --sweep=<i> runs)."""
  from reinit_jax.train.validation import validate
  arg = f"grid={grid}" if grid else ""
  grid_points = sweep.points(f"{path}:{arg}")
  assert len(grid_points) == count
  module = sweep.load_module(path)  # once: point_config re-imports the file for every point
  configs = []
  for p in grid_points:
    configs.append(module.get_config(sweep.merged_arg(arg, p)))
  for i in (0, count - 1):
    assert sweep.point_config(f"{path}:{arg}", i)[1].to_dict() == configs[i].to_dict()
  for p, c in zip(grid_points, configs):
    r = validate(c)
    if "method" in p:
      assert r.reinit.method == p["method"]


_VALIDATE = r'''
import sys
from reinit_jax.launch import sweep
from reinit_jax.train.validation import validate
for path in sys.argv[1:]:
  m = sweep.load_module(path)
  validate(m.get_config())
  for p in (m.get_sweep() if hasattr(m, "get_sweep") else []):
    validate(m.get_config(sweep.point_arg(p)))
print("TF", "tensorflow" in sys.modules, "tensorflow_datasets" in sys.modules)
'''


def test_validation_reads_no_data():
  """Validating every config and its default grid in a fresh process imports neither TensorFlow nor
  TFDS: data sets are checked by name and options only."""
  p = subprocess.run([sys.executable, "-c", _VALIDATE, *CONFIGS], cwd=ROOT, capture_output=True,
                     text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
  assert p.returncode == 0, p.stderr[-3000:]
  assert p.stdout.strip().splitlines()[-1] == "TF False False", p.stdout[-500:]


@pytest.mark.parametrize("path", sorted(p for p, g in GRIDS.items() if None not in g))
def test_unknown_grid_is_one_line_naming_every_grid_tested_here(path):
  """An unknown ``grid=`` is one line listing the grids; that list is the one tested above, so a
  new grid gets validated (and its size recorded) here."""
  with pytest.raises(ValueError, match=r"^config override grid='nope' is invalid; allowed: ") as e:
    sweep.points(f"{path}:grid=nope")
  assert "\n" not in str(e.value)
  allowed = str(e.value).split("allowed: ", 1)[1].split(", ")
  assert sorted(allowed) == sorted(GRIDS[path]), (path, allowed)


def test_online_regularization_knob():
  """reg=0: none; reg=1: weight decay and flip + crop; reg=2: weight decay alone ([AA]); others fail
  with the allowed values."""
  m = sweep.load_module("configs/online.py")
  got = {r: (m.get_config(f"cpu=1,reg={r}").optim.weight_decay,
             m.get_config(f"cpu=1,reg={r}").data.augmentation) for r in (0, 1, 2)}
  assert got[0][0] == 0 and got[1] == (5e-4, "cifar") and got[2][0] == 5e-4
  assert got[0][1] == got[2][1] != "cifar"
  with pytest.raises(ValueError, match=r"reg=3 is invalid; allowed: 0 \(none\)"):
    m.get_config("reg=3")
