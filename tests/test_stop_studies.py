"""A stop request (SIGINT, SIGTERM) belongs to the process: it ends a study of several methods and
a grid (``--sweep=all``) before their next run, even when it reached a run that then finished.

In-process: the runs are replaced by one that receives the signal during its last call (its own
StopFlag, as the stage loop holds) and still finishes, the moment that used to lose the request.
Through launch.py: a SIGINT between two methods of a study exits 130 with one line, and the re-run
finishes with the results of an uninterrupted study.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from reinit_jax import train
from reinit_jax.launch import grid, study
from reinit_jax.train import faults
from train_helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _runs_signalled_at(monkeypatch, signum, at: int):
  """Replaces train.run: run number ``at`` (0-based) gets ``signum`` while it trains and finishes."""
  calls = []

  def fake_run(checked, workdir, pack=None):  # a study and a grid hand over what they checked
    with faults.StopFlag():
      if len(calls) == at:
        os.kill(os.getpid(), signum)
        time.sleep(0.05)  # the handler runs at the next bytecode boundary
      calls.append(workdir)
    return {"workdir": workdir, "method": checked.config.reinit.method}

  monkeypatch.setattr(train, "run", fake_run)
  return calls


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("at", [0, 1])
def test_a_stop_inside_a_finishing_run_ends_the_study(monkeypatch, tmp_path, signum, at):
  calls = _runs_signalled_at(monkeypatch, signum, at)
  c = tiny_config()
  c.reinit.method = ("standard", "full", "shrink_perturb")
  with pytest.raises(faults.Preempted) as e:
    study.run_study(c, str(tmp_path))
  assert len(calls) == at + 1 and e.value.signum == signum
  msg = str(e.value)
  assert f"stopped the study before {('full', 'shrink_perturb')[at]}" in msg and "\n" not in msg
  assert signal.getsignal(signal.SIGINT) is not None  # handlers restored (no flag left installed)


def test_a_study_without_a_stop_runs_every_method(monkeypatch, tmp_path):
  calls = _runs_signalled_at(monkeypatch, signal.SIGINT, at=99)
  c = tiny_config()
  c.reinit.method = ("standard", "full")
  assert list(study.run_study(c, str(tmp_path))) == ["standard", "full"] and len(calls) == 2


_GRID = '''
from reinit_jax import launch
import sys
sys.path.insert(0, {tests!r})
from train_helpers import tiny_config

def get_config(arg=None):
  c = tiny_config(pack="off")
  launch.apply(c, arg)
  return c

def get_sweep(arg=None):
  return launch.product(method=("standard", "full", "shrink_perturb"))
'''


@pytest.mark.parametrize("at", [0, 1])
def test_a_stop_inside_a_finishing_point_ends_the_grid(monkeypatch, tmp_path, at):
  path = tmp_path / "grid.py"
  path.write_text(_GRID.format(tests=os.path.join(ROOT, "tests")))
  calls = _runs_signalled_at(monkeypatch, signal.SIGINT, at)
  with pytest.raises(faults.Preempted, match=rf"stopped the grid before point method-\w+ "
                                             rf"\({at + 1} of 3 points finished\)"):
    grid.run_grid(str(path), {}, str(tmp_path / "wd"))
  assert len(calls) == at + 1


def _launch(args, **kw):
  env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1"}
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


STUDY = ["--config=configs/synthetic.py:epochs=30,stages=3,synthetic_test=200,"
         "method=(standard;full;shrink_perturb)", "--config.run.progress=off"]


@pytest.mark.slow
def test_sigint_between_methods_stops_the_study_and_the_rerun_completes_it(tmp_path):
  ref = _launch(STUDY + [f"--workdir={tmp_path / 'ref'}"])
  assert ref.wait(timeout=600) == 0, ref.stderr.read()[-2000:]
  work = tmp_path / "work"
  p = _launch(STUDY + [f"--workdir={work}"])
  t0 = time.time()
  while not (work / "standard" / "summary.json").exists():
    assert p.poll() is None and time.time() - t0 < 600, "the study ended before the signal"
    time.sleep(0.05)
  p.send_signal(signal.SIGINT)
  assert p.wait(timeout=300) == 130
  err = p.stderr.read().strip().splitlines()
  assert err and err[-1].startswith("stopped: SIGINT") and "Traceback" not in "".join(err), err
  assert not (work / "shrink_perturb" / "summary.json").exists()
  again = _launch(STUDY + [f"--workdir={work}"])
  assert again.wait(timeout=600) == 0, again.stderr.read()[-2000:]
  for m in ("standard", "full", "shrink_perturb"):
    got = json.load(open(work / m / "summary.json"))["params_digest"]
    assert got == json.load(open(tmp_path / "ref" / m / "summary.json"))["params_digest"], m


_GRID_FILE = '''
from reinit_jax import launch

def get_config(arg=None):
  c = launch.base_config()
  c.name = "stop_grid"
  c.optim.epochs, c.reinit.stages = 40, 4
  c.data.synthetic_test = 200
  c.run.seeds = (0, 1)
  c.run.progress = "off"
  c.run.max_steps_per_call = 5
  launch.apply(c, arg)
  return c

def get_sweep(arg=None):
  return launch.product(method=("standard", "shrink_perturb"), weight_decay=(0.0, 0.001)) + [
    dict(method="full", weight_decay=0.0)]
'''


def _digests(root):
  out = {}
  for d, _, files in os.walk(root):
    if "summary.json" in files and ".packs" not in d:
      out[os.path.relpath(d, root)] = json.load(open(os.path.join(d, "summary.json")))[
        "params_digest"]
  return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["study", "grid"])
def test_signals_at_random_moments_always_stop_and_resume_to_the_same_results(kind, tmp_path):
  """Signals at random moments (imports, set-up, compilation, training, between runs, a pack's
  write-out): every launch that a signal reached either stopped with exit 130/143 and one
  'stopped:' line, or had nothing left to train (exit 0, every result written); the launches
  repeated until one finishes end with the uninterrupted results, bit for bit."""
  import random
  if kind == "study":
    args = STUDY
  else:
    path = tmp_path / "grid.py"
    path.write_text(_GRID_FILE)
    args = [f"--config={path}", "--sweep=all"]
  ref = _launch(args + [f"--workdir={tmp_path / 'ref'}"])
  assert ref.wait(timeout=900) == 0, ref.stderr.read()[-2000:]
  want = _digests(tmp_path / "ref")
  # The launches below load the compiled functions from the cache the reference filled: time an
  # uninterrupted launch that does too, so the signals fall inside the launches they aim at.
  again = _launch(args + [f"--workdir={tmp_path / 'again'}"])
  t0 = time.time()
  assert again.wait(timeout=900) == 0, again.stderr.read()[-2000:]
  whole = time.time() - t0
  assert _digests(tmp_path / "again") == want
  work = tmp_path / "work"
  rng = random.Random(0)
  stopped = 0
  for attempt in range(20):
    p = _launch(args + [f"--workdir={work}"])
    # A third of a whole launch: each resumed launch has less left, and several must be stopped.
    time.sleep(rng.uniform(0.0, whole / 3))
    signum = rng.choice([signal.SIGINT, signal.SIGTERM])
    p.send_signal(signum)
    rc = p.wait(timeout=300)
    err = p.stderr.read()
    assert "Traceback" not in err, err[-3000:]
    if rc == 0:
      assert _digests(work) == want  # it had finished: nothing left for the signal to stop
      break
    assert rc == 128 + signum, (rc, err[-2000:])
    assert err.strip().splitlines()[-1].startswith(f"stopped: {signal.Signals(signum).name}"), err
    stopped += 1
  else:
    p = _launch(args + [f"--workdir={work}"])
    assert p.wait(timeout=900) == 0
  assert stopped >= 3, stopped  # the signals did land while there was work left
  assert _digests(work) == want


def test_progress_names_the_point_or_the_pack_being_trained(tmp_path, capsys):
  """Progress lines of a grid name what trains: each point alone by its point name, a pack by the
  number of its points and the first one; a start line precedes the first update."""
  path = tmp_path / "grid.py"
  path.write_text(_GRID_FILE.replace('c.run.progress = "off"', 'c.run.progress = "log"'))
  grid.run_grid(str(path), {}, str(tmp_path / "wd"))
  lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
  labels = {line[1:line.index("]")] for line in lines}
  assert "method-full_weight_decay-0.0" in labels, labels
  assert any(label.startswith("pack of 2 points: method-") for label in labels), labels
  first = {}
  for line in lines:
    first.setdefault(line[1:line.index("]")], line)
  assert all("preparing the data, the model and the compiled functions" in f
             for f in first.values()), first
