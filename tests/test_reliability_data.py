"""Data reliability (README, Reliability): training on prepared in-memory data with no TensorFlow
installed, and unprepared TFDS data sets failing fast offline with nothing left behind."""

import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

from reinit_jax import data
from reinit_jax.data import cache, fashion_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_debian = pytest.mark.skipif(
  not fashion_mnist.has_files(None), reason="apt-get install dataset-fashion-mnist")

# Hides TensorFlow and TFDS from every import finder, as on a host where they are not installed
# (importlib.util.find_spec returns None and `import tensorflow` raises ModuleNotFoundError).
_NO_TF = textwrap.dedent("""
  import sys
  class _Hide:
    def __init__(self, inner):
      self.inner = inner
    def find_spec(self, name, path=None, target=None):
      if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
        return None
      return self.inner.find_spec(name, path, target)
    def __getattr__(self, attr):
      return getattr(self.inner, attr)
  sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
""")


@pytest.fixture(scope="module")
def no_tf_env(tmp_path_factory):
  d = tmp_path_factory.mktemp("no_tf")
  (d / "sitecustomize.py").write_text(_NO_TF)
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(d), ROOT])}
  probe = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True,
                         text=True)
  assert probe.returncode != 0 and "No module named 'tensorflow'" in probe.stderr
  return env


def _run(args, env, **kw):
  return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                        timeout=600, **kw)


@needs_debian
def test_launch_trains_on_prepared_fashion_mnist_without_tensorflow(no_tf_env, tmp_path):
  root = str(tmp_path / "data")
  data.build({"dataset": "fashion_mnist", "data_dir": root})  # the prepared array cache
  work = tmp_path / "run"
  # manual_dir points nowhere: the run must read the cache, not Debian's files or TFDS.
  r = _run(["launch.py", f"--workdir={work}",
            "--config=configs/default.py:method=standard,epochs=1,stages=1,train_subset=500,"
            "model.name=mlp", f"--config.data.data_dir={root}",
            "--config.data.manual_dir=/nonexistent", "--config.run.progress=off"], no_tf_env)
  assert r.returncode == 0, r.stderr[-3000:]
  assert (work / "summary.json").exists() and "Traceback" not in r.stderr
  import json
  acc = json.loads((work / "summary.json").read_text())["test_accuracy"]["mean"]
  assert 0.2 < acc <= 1.0  # 5 steps of an MLP on real images: well above chance (0.1)


@needs_debian
def test_fresh_cache_from_debian_files_without_tensorflow(no_tf_env, tmp_path):
  root = str(tmp_path / "data")
  script = textwrap.dedent(f"""
    import sys
    from reinit_jax import data
    d = data.build({{"dataset": "fashion_mnist", "data_dir": {root!r}}})
    print(d.meta.num_train, d.meta.num_test)
    assert sys.modules.get("tensorflow") is None and sys.modules.get("tensorflow_datasets") is None
    try:
      data.build({{"dataset": "cifar10", "data_dir": {root!r}}})
    except ValueError as e:
      print(e)
  """)
  r = _run(["-c", script], no_tf_env)
  assert r.returncode == 0, r.stderr[-3000:]
  out = r.stdout.splitlines()
  assert out[0] == "54000 10000"
  assert out[1].startswith("cifar10: reading it (no array cache in ") and "pip install" in out[1]
  want = fashion_mnist.read_split("test")
  (x, y), problem = cache.read(root, "fashion_mnist", "test")
  assert problem is None
  np.testing.assert_array_equal(x, want[0])
  np.testing.assert_array_equal(y, want[1])


def _tree(path):
  return sorted(os.path.relpath(os.path.join(d, n), path) for d, ds, fs in os.walk(path)
                for n in ds + fs)


@pytest.mark.parametrize("dataset, expect", [
  ("cifar10", r"place cifar-10-binary.tar.gz in {manual}"),
  ("imagenet2012", r"the manual directory {manual} is empty; place its files there"),
])
def test_unprepared_dataset_offline_fails_fast_leaving_nothing(dataset, expect, tmp_path,
                                                                monkeypatch):
  pytest.importorskip("tensorflow_datasets")
  from reinit_jax.data import tfds_io  # noqa: F401  (imported before the clock starts)
  scratch = tmp_path / "tmp"
  scratch.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(scratch))
  monkeypatch.delenv("REINIT_JAX_DOWNLOAD", raising=False)
  root = tmp_path / "tfds"
  (root / "other").mkdir(parents=True)  # a data dir already in use
  (root / "other" / "keep").write_text("x")
  before = _tree(root)
  t = time.time()
  with pytest.raises(ValueError) as e:
    data.build({"dataset": dataset, "data_dir": str(root), "augmentation": "lw224"})
  assert time.time() - t < 30
  msg = str(e.value)
  manual = os.path.join(str(root), "downloads", "manual")
  assert "\n" not in msg and msg.startswith(f"{dataset}: not prepared in {root}/{dataset}/")
  assert expect.format(manual=manual) in msg
  assert _tree(root) == before and os.listdir(scratch) == []
  # The same with a data dir that does not exist yet: it is not created.
  with pytest.raises(ValueError, match="not prepared"):
    data.build({"dataset": dataset, "data_dir": str(tmp_path / "new"), "augmentation": "lw224"})
  assert not (tmp_path / "new").exists() and os.listdir(scratch) == []


@pytest.mark.parametrize("workdir_before", ["absent", "empty", "other files"])
def test_missing_data_is_one_line_naming_the_field_and_leaves_the_workdir(workdir_before, tmp_path):
  """launch.py on a data set that is not prepared: exactly one stderr line (no TFDS warning about
  a variant folder), naming config.data.download; the workdir as it was, so another setting can
  run there next."""
  pytest.importorskip("tensorflow_datasets")
  wd = tmp_path / "wd"
  if workdir_before != "absent":
    wd.mkdir()
  if workdir_before == "other files":
    (wd / "notes.txt").write_text("mine")
  before = sorted(os.listdir(wd)) if wd.exists() else None
  env = {**os.environ, "PYTHONPATH": ROOT, "REINIT_JAX_DOWNLOAD": ""}
  p = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"),
                      "--config=configs/cifar_resnet18.py", f"--workdir={wd}",
                      f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.run.progress=off"],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  lines = p.stderr.strip().splitlines()
  assert p.returncode == 1 and len(lines) == 1, p.stderr[-2000:]
  assert lines[0].startswith("error: cifar10: not prepared") and "config.data.download=True" in lines[0]
  assert (sorted(os.listdir(wd)) if wd.exists() else None) == before
