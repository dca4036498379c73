"""launch.py in a user's hands (README, Reliability): Ctrl-C at several moments, two launches on one
workdir, a finished run re-launched, metrics.jsonl damaged mid-run, --help."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 1,800 full-batch steps in 9 stages, calls of 25 steps: long enough to be interrupted mid-run.
# No compilation cache: the "compile" moment must find XLA compiling, not loading a cached program.
ARGS = ["--config=configs/synthetic.py:seeds=2,synthetic_test=500", "--config.run.progress=log",
        "--config.run.max_steps_per_call=25", "--config.run.compilation_cache=off"]


def _start(workdir, extra=()):
  env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1"}
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "launch.py"), *ARGS,
                           f"--workdir={workdir}", *extra], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(p, needle, timeout=240):
  """Reads stdout until a line contains ``needle``; returns the lines read."""
  lines, t0 = [], time.time()
  while time.time() - t0 < timeout:
    line = p.stdout.readline()
    if not line:
      break
    lines.append(line)
    if needle in line:
      return lines
  raise AssertionError(f"no line with {needle!r} in {lines[-5:]}")


def _assert_clean_stop(p, timeout=240):
  out, err = p.communicate(timeout=timeout)
  assert p.returncode == 130, (p.returncode, err[-2000:])
  assert "Traceback" not in err and "Segmentation" not in err and "Fatal" not in err, err[-3000:]
  lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("WARNING", "W1", "I1"))
           and "stopping after the current call" not in ln]  # the notice printed at the press
  assert len(lines) == 1 and lines[0].startswith("stopped: SIGINT"), err[-2000:]
  return lines[0]


def _loaded(pid: int, library: str) -> bool:
  """Whether process ``pid`` has mapped a shared object whose path contains ``library`` (Linux)."""
  try:
    with open(f"/proc/{pid}/maps") as f:
      return any(library in line for line in f)
  except OSError:
    return False


@pytest.mark.parametrize("moment", ["setup", "compile", "training"])
def test_sigint_stops_cleanly_and_resumes(tmp_path, moment):
  """Ctrl-C while starting (imports, data), while XLA compiles the first call, and mid-training:
  exit 130 with one line, no traceback, no segfault; after a checkpoint the re-run resumes."""
  wd = tmp_path / "w"
  p = _start(wd)
  if moment == "setup":
    # While imports run, but after launch.py's first lines installed its handler: a signal before
    # them is Python's own KeyboardInterrupt (a fixed 1 s sleep reached that on a loaded machine).
    # numpy is first loaded by the imports that follow the handler.
    t0 = time.time()
    while not _loaded(p.pid, "_multiarray_umath") and time.time() - t0 < 60:
      time.sleep(0.01)
  elif moment == "compile":
    # config.json is written just before the first state is built and the first call compiles.
    t0 = time.time()
    while not (wd / "config.json").exists() and time.time() - t0 < 120:
      time.sleep(0.05)
    time.sleep(0.3)
  else:
    _wait_for_line(p, "stage 2")
  p.send_signal(signal.SIGINT)
  line = _assert_clean_stop(p)
  if moment == "training":
    assert "wrote the checkpoint at step" in line
    q = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *ARGS,
                        f"--workdir={wd}", "--config.run.progress=off"], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                       timeout=600)
    assert q.returncode == 0, q.stderr[-2000:]
    assert "resuming" in q.stderr
    s = json.load(open(wd / "summary.json"))
    assert s["steps"] == 1800 and not s["interrupted"]


def test_second_launch_on_busy_workdir_exits_at_once(tmp_path):
  wd = tmp_path / "w"
  first = _start(wd)
  try:
    _wait_for_line(first, "step ")
    t0 = time.time()
    second = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *ARGS,
                             f"--workdir={wd}"], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 1
    err = [ln for ln in second.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "in use by another run" in err[0] and f"PID {first.pid}" in err[0]
    assert time.time() - t0 < 60
  finally:
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=240)
  # The first run's record is intact: no duplicate metrics lines, one TensorBoard file.
  rows = [json.loads(ln) for ln in open(wd / "metrics.jsonl")]
  keys = [(r["step"], r["split"], r["seed"]) for r in rows]
  assert len(keys) == len(set(keys))
  assert len(os.listdir(wd / "tensorboard")) == 1


def test_finished_run_relaunched_reports_and_keeps_summary(tmp_path):
  wd = tmp_path / "w"
  args = ["--config=configs/synthetic.py:method=shrink_perturb,seeds=1,epochs=4,stages=2,"
          "synthetic_test=200",
          f"--workdir={wd}", "--config.run.progress=off"]
  env = {**os.environ, "PYTHONPATH": ROOT}
  run = lambda: subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT,
                               env=env, capture_output=True, text=True, timeout=300)
  assert run().returncode == 0
  before = open(wd / "summary.json").read()
  metrics = open(wd / "metrics.jsonl").read()
  p = run()
  assert p.returncode == 0 and p.stderr.strip() == f"{wd}: already finished (summary.json kept as it was)"
  assert open(wd / "summary.json").read() == before
  # A damaged summary.json: one line naming it, set aside, the outputs rebuilt from the checkpoint.
  (wd / "summary.json").write_text(before[:25])
  p = run()
  assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
  lines = p.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"{wd / 'summary.json'} is damaged (")
  rebuilt = json.load(open(wd / "summary.json"))
  assert rebuilt["params_digest"] == json.loads(before)["params_digest"]
  assert (wd / "summary.json.damaged").read_text() == before[:25]
  # A deleted metrics.jsonl of a finished run: rebuilt, record for record.
  os.remove(wd / "metrics.jsonl")
  p = run()
  assert p.returncode == 0 and "metrics.jsonl of the finished run is missing" in p.stderr
  assert open(wd / "metrics.jsonl").read() == metrics
  # config.json and tensorboard/ deleted: both rebuilt, every record back in TensorBoard.
  import shutil
  shutil.rmtree(wd / "tensorboard")
  os.remove(wd / "config.json")
  p = run()
  assert p.returncode == 0 and "config.json and tensorboard of the finished run are missing" in p.stderr
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  events = EventAccumulator(str(wd / "tensorboard"))
  events.Reload()
  steps = [s.step for s in events.Scalars("seed0/test/accuracy")]
  assert steps == sorted({json.loads(line)["step"] for line in metrics.splitlines()
                          if json.loads(line)["split"] == "test"})
  assert json.load(open(wd / "config.json"))["reinit"]["method"] == "shrink_perturb"
  # restart=True gets past a damaged summary.json (and clears the set-aside copy).
  (wd / "summary.json").write_text("{")
  p = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args,
                      "--config.run.restart=True"], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=300)
  assert p.returncode == 0 and json.load(open(wd / "summary.json"))["params_digest"] == \
    json.loads(before)["params_digest"]
  assert not (wd / "summary.json.damaged").exists()


def test_metrics_truncated_mid_run_is_rebuilt(tmp_path):
  """metrics.jsonl deleted while the run goes on: the run rewrites it from its record."""
  wd = tmp_path / "w"
  p = _start(wd)
  _wait_for_line(p, "stage 3")
  os.remove(wd / "metrics.jsonl")
  out, err = p.communicate(timeout=600)
  assert p.returncode == 0, err[-2000:]
  assert "rewrote it from the run's record" in err
  rows = [json.loads(ln) for ln in open(wd / "metrics.jsonl")]
  # 72 calls × 2 seeds of training rows + 9 evaluations × 2 seeds of test rows.
  assert len([r for r in rows if r["split"] == "train"]) == 72 * 2
  assert len([r for r in rows if r["split"] == "test"]) == 9 * 2


def _stderr_lines(p):
  """A thread that collects ``p``'s stderr lines with the time each arrived."""
  import threading
  got = []

  def read():
    for line in p.stderr:
      got.append((time.time(), line.rstrip("\n")))

  threading.Thread(target=read, daemon=True).start()
  return got


def test_a_press_is_answered_at_once_and_a_second_press_quits(tmp_path):
  """Ctrl-C during a long jitted call: a notice within 2 s (the main thread is inside XLA until the
  call ends); a second Ctrl-C quits at once, saying nothing was saved since the last checkpoint."""
  wd = tmp_path / "w"
  # One call of 1,800 steps on 4,096 examples: seconds inside one XLA call on two cores.
  p = _start(wd, ["--config.run.max_steps_per_call=1800", "--config.data.synthetic_train=4096"])
  _wait_for_line(p, "stage 1")
  err = _stderr_lines(p)
  time.sleep(0.5)
  sent = time.time()
  p.send_signal(signal.SIGINT)
  while not any("stopping after the current call" in line for _, line in err):
    assert time.time() - sent < 2.0, err
    time.sleep(0.02)
  notice = next(t for t, line in err if "stopping after the current call" in line)
  assert notice - sent < 2.0
  p.send_signal(signal.SIGINT)
  assert p.wait(timeout=30) == 130
  time.sleep(0.2)
  assert any(line.startswith("stopped: SIGINT again: quit without saving") for _, line in err), err
  assert not any("Traceback" in line for _, line in err), err
