"""Preemption of a real run (README, Reliability): SIGKILL at random points — inside a stage, during
a re-initialization event, during a checkpoint write, at a random time — then the same command again
until it completes; the result equals an uninterrupted run's bitwise. SIGTERM through launch.py:
a checkpoint, exit status 143 (130 for SIGINT), and the re-run resumes. Slow (a dozen processes); .ci/run runs it.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The child: a tiny synthetic run (6 steps, one per call, a checkpoint after every step) with named
# pause points. KILL_AT=<point>:<n> prints "READY <point>" at the n-th time the child reaches
# <point> and sleeps there (PAUSE seconds), so the parent's signal lands exactly there.
CHILD = r'''
import os, sys, time
import jax
jax.config.update("jax_compilation_cache_dir", os.environ["CACHE"])
import orbax.checkpoint as ocp
from reinit_jax.train import step as step_fns
point, _, n = os.environ.get("KILL_AT", ":0").partition(":")
seen = {}

def hit(name):
  seen[name] = seen.get(name, 0) + 1
  if name == point and seen[name] == int(n):
    print("READY", name, flush=True)
    time.sleep(float(os.environ.get("PAUSE", "120")))

def after(make, name):
  def made(*a, **k):
    fn = make(*a, **k)
    def call(*args):
      out = fn(*args)  # dispatched: the device may still be computing it
      hit(name)
      return out
    return call
  return made

step_fns.make_train_call = after(step_fns.make_train_call, "call")
step_fns.make_event = after(step_fns.make_event, "event")
_json_save = ocp.handlers.JsonCheckpointHandler.async_save

async def json_save(self, *a, **k):  # the state item is written into the temporary directory
  hit("checkpoint")
  return await _json_save(self, *a, **k)

ocp.handlers.JsonCheckpointHandler.async_save = json_save
if os.environ.get("LAUNCH"):
  sys.argv = ["launch.py"] + sys.argv[1:]
  import launch  # takes the --config.<field> words out of sys.argv
  from absl import app
  from reinit_jax.launch import cli
  app.run(cli.one_line_errors(launch.main),
          flags_parser=lambda argv: cli.parse_flags(argv, launch._FIELD_WORDS))
else:
  sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
  from train_helpers import tiny_config
  from reinit_jax import train
  train.run(tiny_config(method="shrink_perturb", checkpoint_every=1, max_steps_per_call=1,
                        seeds=(0, 1)), sys.argv[1])
'''


def _start(tmp_path, args, **env):
  e = {**os.environ, "PYTHONPATH": ROOT, "CACHE": str(tmp_path / "jax_cache"),
       **{k: str(v) for k, v in env.items()}}
  return subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=e, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_ready(p, timeout=120):
  """Reads the child's stdout until READY (True) or its exit (False)."""
  t0 = time.time()
  for line in p.stdout:
    if line.startswith("READY"):
      return True
    if time.time() - t0 > timeout:
      break
  return False


def _result(workdir):
  s = json.load(open(os.path.join(workdir, "summary.json")))
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  keep = ("params_digest", "test_accuracy", "final_test_accuracy", "stages", "events", "steps",
          "interrupted")
  return {k: s[k] for k in keep}, rows


@pytest.mark.slow
def test_sigkill_anywhere_then_rerun_equals_uninterrupted(tmp_path):
  ref = str(tmp_path / "ref")
  p = _start(tmp_path, [ref])
  assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
  rng = random.Random(int(os.environ.get("REINIT_PREEMPT_SEED", "0")))
  # Every kind of point, at a random occurrence; then random times; then run to the end.
  plan = [("call", rng.randint(1, 3)), ("event", 1), ("checkpoint", rng.randint(1, 3)),
          ("call", 1), ("checkpoint", 1), ("event", 1), ("time", rng.uniform(2, 8)),
          ("time", rng.uniform(2, 8))]
  work, kills = str(tmp_path / "run"), []
  for point, arg in plan + [(None, None)] * 3:
    if point == "time":
      p = _start(tmp_path, [work])
      try:
        p.wait(timeout=arg)
      except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        kills.append(("time", round(arg, 2)))
    else:
      p = _start(tmp_path, [work], KILL_AT=f"{point}:{arg}" if point else ":0")
      if point and _wait_ready(p):
        time.sleep(rng.uniform(0, 0.05))
        p.send_signal(signal.SIGKILL)
        kills.append((point, arg))
    rc = p.wait(timeout=300)
    err = p.stderr.read()
    assert rc in (0, -signal.SIGKILL), err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    if rc == 0 and point is None:
      break
  assert {k for k, _ in kills} >= {"call", "event", "checkpoint"}, kills
  got, want = _result(work), _result(ref)
  assert got[0] == want[0], kills
  assert got[1] == want[1]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_through_launch_checkpoints_exits_128_plus_signal_and_resumes(sig, tmp_path):
  """SIGTERM (exit 143) or Ctrl-C's SIGINT (exit 130): a checkpoint, one stderr line, a resume."""
  args = ["--config=configs/synthetic.py:method=shrink_perturb,seeds=2", "--config.optim.epochs=6",
          "--config.reinit.stages=3", "--config.run.max_steps_per_call=1",
          "--config.data.synthetic_test=200", "--config.run.progress=off"]
  ref = _start(tmp_path, args + [f"--workdir={tmp_path / 'ref'}"], LAUNCH=1)
  assert ref.wait(timeout=300) == 0, ref.stderr.read()[-3000:]
  work = f"--workdir={tmp_path / 'run'}"
  p = _start(tmp_path, args + [work], LAUNCH=1, KILL_AT="call:3", PAUSE=1)
  assert _wait_ready(p)
  p.send_signal(sig)
  assert p.wait(timeout=300) == 128 + sig
  err = p.stderr.read().strip().splitlines()
  assert err[-1].startswith(f"stopped: {sig.name}: wrote the checkpoint at step 3 (stage 2)"), err
  assert "Traceback" not in "\n".join(err)
  assert "3" in os.listdir(tmp_path / "run" / "checkpoints")
  p = _start(tmp_path, args + [work], LAUNCH=1)
  assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
  assert _result(str(tmp_path / "run")) == _result(str(tmp_path / "ref"))
