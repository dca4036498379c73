"""``--sweep=all``: a whole grid in one process, each point as its own run would be (docs/launching.md,
"Grids and packs")."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GRID = '''
from reinit_jax import launch

def get_config(arg=None):
  c = launch.base_config()
  c.name = "tiny_grid"
  c.data.synthetic_train = 64
  c.data.synthetic_test = 300
  c.data.per_seed = True
  c.optim.epochs = {epochs}
  c.optim.momentum = 0.0
  c.reinit.stages = 3
  c.reinit.norm_batch_size = 32
  c.run.max_steps_per_call = 10
  c.run.progress = "off"
  k = launch.apply(c, arg, alpha=1.0)
  c.data.synthetic_alpha = float(k["alpha"])
  return c

def get_sweep(arg=None):
  return launch.product(alpha=(0.5, 2.0), method=("shrink_perturb", "magnitude"))
'''

# Fields that legitimately differ between two runs of the same point.
TIMING = ("wall_time_s", "steps_per_second", "times", "workdir")


def _launch(args, timeout=600):
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                        timeout=timeout)


def _config(tmp_path, epochs=6):
  path = tmp_path / "tiny_grid.py"
  path.write_text(GRID.format(epochs=epochs))
  return str(path)


def _summary(d):
  s = json.load(open(os.path.join(d, "summary.json")))
  return {k: v for k, v in s.items() if k not in TIMING}


def test_sweep_all_equals_separate_runs(tmp_path):
  """Every point of ``--sweep=all`` writes what ``--sweep=<i>`` writes: the same summary (timing
  aside) with the same params_digest — the points run one after another in one process and share
  compiled functions, so each seed's computation is the same as alone (bitwise)."""
  cfg = _config(tmp_path)
  grid, alone = tmp_path / "grid", tmp_path / "alone"
  p = _launch([f"--config={cfg}", "--sweep=all", f"--workdir={grid}"])
  assert p.returncode == 0, p.stderr[-3000:]
  names = sorted(n for n in os.listdir(grid) if not n.startswith("."))
  assert len(names) == 4
  for i in (3,):  # the last point (after three others in the grid's process) as its own process
    q = _launch([f"--config={cfg}", f"--sweep={i}", f"--workdir={alone}"])
    assert q.returncode == 0, q.stderr[-3000:]
  for name in os.listdir(alone):
    a, b = _summary(grid / name), _summary(alone / name)
    assert a == b, name
    for f in ("config.json", "metrics.jsonl"):
      assert (grid / name / f).read_text() == (alone / name / f).read_text(), (name, f)
    assert os.listdir(grid / name / "tensorboard") and os.listdir(grid / name / "checkpoints")


@pytest.mark.slow
def test_sweep_all_resumes_after_kill(tmp_path):
  """kill -9 during a grid, then the same command: finished points are kept as they were, the
  interrupted pack resumes from its checkpoint; the outcome equals an uninterrupted grid's."""
  cfg = _config(tmp_path, epochs=300)
  wd = tmp_path / "grid"
  env = {**os.environ, "PYTHONPATH": ROOT}
  p = subprocess.Popen([sys.executable, os.path.join(ROOT, "launch.py"), f"--config={cfg}",
                        "--sweep=all", f"--workdir={wd}"], cwd=ROOT, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  t0 = time.time()
  # Wait until the first pack's points finished and the second pack (.packs/<id>, started only
  # after the first pack's summary) has a checkpoint mid-training, then kill -9.
  def listed(d):
    return [d / n for n in os.listdir(d)] if d.exists() else []
  while time.time() - t0 < 400:
    done = [d.name for d in listed(wd) if not d.name.startswith(".")
            and (d / "summary.json").exists()]
    packs = listed(wd / ".packs")
    # A finished step (orbax renames a step's temporary directory to its number when complete).
    ckpt = [d for d in packs if not (d / "summary.json").exists() and (d / "checkpoints").exists()
            and any(e.isdigit() for e in os.listdir(d / "checkpoints"))]
    if len(done) >= 2 and len(packs) == 2 and ckpt:
      break
    time.sleep(0.2)
  p.send_signal(signal.SIGKILL)
  p.wait()
  first = {n: (wd / n / "summary.json").read_text() for n in done}
  q = _launch([f"--config={cfg}", "--sweep=all", f"--workdir={wd}"], timeout=900)
  assert q.returncode == 0, q.stderr[-3000:]
  assert "resuming" in q.stderr and "already finished" in q.stderr, q.stderr[-3000:]
  for n, text in first.items():
    assert (wd / n / "summary.json").read_text() == text
  ref = tmp_path / "ref"
  r = _launch([f"--config={cfg}", "--sweep=all", f"--workdir={ref}"], timeout=900)
  assert r.returncode == 0
  for n in (n for n in os.listdir(ref) if not n.startswith(".")):
    assert _summary(wd / n)["params_digest"] == _summary(ref / n)["params_digest"], n
