"""Numerical faults, SIGTERM, a full disk, corrupt checkpoints, another config's workdir,
determinism (README, Reliability).

Every run is the tiny synthetic config of train_helpers (6 full-batch steps in 3 stages, one step
per jitted call so that faults land between known steps; checkpoints at the stage ends 2, 4, 6).
The costlier variants are marked slow (.ci/run runs them).
"""

import errno
import json
import logging
import os
import shutil
import signal

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from reinit_jax import train
from reinit_jax.checkpoint import Checkpoints
from reinit_jax.train import faults, step as step_fns
from train_helpers import forget_jitted, records, tiny_config

KW = dict(method="shrink_perturb", max_steps_per_call=1)  # checkpoints at steps 2, 4, 6


@pytest.fixture(autouse=True)
def _unpatched_jitted_functions():
  """Every test starts and ends without memoized jitted functions (the patched builders below)."""
  forget_jitted()
  yield
  forget_jitted()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted run of the tiny config (summary)."""
  return train.run(tiny_config(**KW), str(tmp_path_factory.mktemp("ref")))


def _inject(monkeypatch, at_step, where="loss"):
  """Makes global step ``at_step`` (1-based) produce a NaN loss or inf parameters."""
  orig = step_fns.make_step

  def make_step(*a, **k):
    step = orig(*a, **k)

    def faulty(state, x, y, tp):
      new, (loss, acc, lr) = step(state, x, y, tp)
      bad = state.step == at_step - 1
      if where == "loss":
        loss = jnp.where(bad, jnp.nan, loss)
      else:
        p = {k_: {n: jnp.where(bad, jnp.inf, v) for n, v in d.items()}
             for k_, d in new.variables["params"].items()}
        new = new.replace(variables={**new.variables, "params": p})
      return new, (loss, acc, lr)
    return faulty

  monkeypatch.setattr(step_fns, "make_step", make_step)
  forget_jitted()


def test_nan_stops_naming_step_and_stage_and_keeps_good_checkpoint(monkeypatch, tmp_path):
  _inject(monkeypatch, at_step=4)
  with pytest.raises(faults.NonFiniteError, match=r"at step 4 \(stage 2\) for seed\(s\) \[0\]; "
                     r"the last good checkpoint \(step 2\) is kept") as e:
    train.run(tiny_config(**KW), str(tmp_path))
  assert "\n" not in str(e.value)
  ck = Checkpoints(str(tmp_path / "checkpoints"))
  assert ck.latest_step() == 2
  ck.close()
  monkeypatch.undo()  # the fault is gone: re-running resumes from step 2 and finishes
  forget_jitted()
  done = train.run(tiny_config(**KW), str(tmp_path))
  assert done["steps"] == 6 and not done["interrupted"]


@pytest.mark.slow
def test_huge_learning_rate_stops_before_any_bad_checkpoint(tmp_path):
  with pytest.raises(faults.NonFiniteError, match=r"non-finite loss or parameters at step \d+ "
                     r"\(stage 1\)"):
    train.run(tiny_config(learning_rate=1e30, **KW), str(tmp_path))
  ck = Checkpoints(str(tmp_path / "checkpoints"))
  for s in ck.all_steps():  # every checkpoint that exists holds finite parameters
    state, _ = ck.restore(s, _like(tmp_path))
    assert all(np.isfinite(np.asarray(x)).all() for x in _leaves(state.variables["params"]))
  ck.close()


def _leaves(tree):
  import jax
  return jax.tree.leaves(tree)


def _like(tmp_path):
  from reinit_jax.train import validation
  from reinit_jax.train.build import Built
  return Built(validation.check(tiny_config(learning_rate=1e30, **KW))).init()


def test_skip_policy_drops_the_bad_update(monkeypatch, tmp_path, caplog):
  """Inf parameters after the last step, skipped: the run ends with the step-5 parameters."""
  five = train.run(tiny_config(stop_after_steps=5, **KW), str(tmp_path / "five"))
  _inject(monkeypatch, at_step=6, where="params")
  with caplog.at_level(logging.WARNING, logger="reinit_jax"):
    s = train.run(tiny_config(nan_policy="skip", **KW), str(tmp_path / "skip"))
  assert s["steps"] == 6 and not s["interrupted"]
  assert s["params_digest"] == five["params_digest"]
  assert any("skipped non-finite step(s) among steps 6..6 (stage 3)" in r.message
             for r in caplog.records)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_checkpoints_then_resume_matches(sig, monkeypatch, tmp_path, reference):
  """SIGTERM (a preemption notice) or SIGINT (Ctrl-C) during step 3: the call finishes, a checkpoint
  is written, Preempted names the signal; the previous handler is back; re-running resumes."""
  orig, calls = step_fns.make_train_call, []
  before = signal.getsignal(sig)

  def make_train_call(*a, **k):
    fn = orig(*a, **k)

    def call(*args):
      out = fn(*args)
      calls.append(1)
      if len(calls) == 3:  # the signal arrives during step 3
        os.kill(os.getpid(), sig)
      return out
    return call

  monkeypatch.setattr(step_fns, "make_train_call", make_train_call)
  forget_jitted()
  with pytest.raises(faults.Preempted, match=rf"^{sig.name}: wrote the checkpoint at step 3 "
                     r"\(stage 2\)") as e:
    train.run(tiny_config(**KW), str(tmp_path))
  assert e.value.signum == sig and faults.exit_code(e.value.signum) == 128 + sig
  assert signal.getsignal(sig) is before
  ck = Checkpoints(str(tmp_path / "checkpoints"))
  assert ck.latest_step() == 3
  ck.close()
  monkeypatch.undo()
  forget_jitted()
  done = train.run(tiny_config(**KW), str(tmp_path))
  assert done["params_digest"] == reference["params_digest"]
  assert done["test_accuracy"] == reference["test_accuracy"]


def test_full_disk_keeps_previous_checkpoint(monkeypatch, tmp_path, reference):
  """ENOSPC while writing step 4's checkpoint (its state item already written): one line, step 2
  intact, the partial step removed, and re-running resumes to the uninterrupted result."""
  orig, n = ocp.handlers.JsonCheckpointHandler.async_save, []

  async def full(self, *a, **k):
    n.append(1)
    if len(n) == 2:
      raise OSError(errno.ENOSPC, "No space left on device")
    return await orig(self, *a, **k)

  monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "async_save", full)
  with pytest.raises(faults.CheckpointError, match=r"could not write the checkpoint at step 4 .*"
                     r"No space left on device.*the checkpoint at step 2 is intact") as e:
    train.run(tiny_config(**KW), str(tmp_path))
  assert "\n" not in str(e.value) and e.value.errno == errno.ENOSPC
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
  monkeypatch.undo()
  done = train.run(tiny_config(**KW), str(tmp_path))
  assert done["params_digest"] == reference["params_digest"]
  assert records(str(tmp_path)) == records(reference["workdir"])


def test_close_after_a_failed_save_keeps_the_reported_error(monkeypatch, tmp_path):
  """After a save failed (reported, its files removed), orbax's writers of that step may still
  fail on the removed files when the manager closes: close() must not replace the CheckpointError
  with that echo (seen in CI as a FileNotFoundError). Without a failed save, close() raises."""
  state = {"w": jnp.ones((3,))}

  def boom():
    raise FileNotFoundError(errno.ENOENT, "4.orbax-checkpoint-tmp/_CHECKPOINT_METADATA")

  ck = Checkpoints(str(tmp_path / "ok"))
  ck.save(2, state, {"step": 2})
  ck.finish()
  monkeypatch.setattr(ck._mngr, "close", boom)
  with pytest.raises(FileNotFoundError):
    ck.close()
  ck = Checkpoints(str(tmp_path / "failed"))
  monkeypatch.setattr(ck._mngr, "save", lambda *a, **k: (_ for _ in ()).throw(
      OSError(errno.ENOSPC, "No space left on device")))
  with pytest.raises(faults.CheckpointError, match="could not write the checkpoint at step 4"):
    ck.save(4, state, {"step": 4})
  monkeypatch.setattr(ck._mngr, "close", boom)
  ck.close()


def test_same_seed_same_digest_other_seed_differs(tmp_path, reference):
  again = train.run(tiny_config(**KW), str(tmp_path / "again"))
  other = train.run(tiny_config(seeds=(1,), **KW), str(tmp_path / "other"))
  assert again["params_digest"] == reference["params_digest"]
  assert records(str(tmp_path / "again")) == records(reference["workdir"])
  assert other["params_digest"] != reference["params_digest"]


def _truncate_largest(step_dir):
  files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir / "state") for f in fs]
  big = max(files, key=os.path.getsize)
  with open(big, "r+b") as f:
    f.truncate(os.path.getsize(big) // 3)


@pytest.mark.parametrize("damage", ["truncate", pytest.param("delete_meta", marks=pytest.mark.slow),
                                    pytest.param("delete_step", marks=pytest.mark.slow)])
def test_damaged_latest_checkpoint_falls_back_to_previous(damage, tmp_path, reference, caplog):
  part = train.run(tiny_config(stop_after_steps=4, **KW), str(tmp_path))
  assert part["interrupted"]
  ck = tmp_path / "checkpoints"
  assert sorted(os.listdir(ck)) == ["2", "4"]
  if damage == "truncate":
    _truncate_largest(ck / "4")
  elif damage == "delete_meta":
    shutil.rmtree(ck / "4" / "meta")
  else:
    shutil.rmtree(ck / "4")
  with caplog.at_level(logging.WARNING, logger="reinit_jax"):
    done = train.run(tiny_config(**KW), str(tmp_path))
  lines = [r.getMessage() for r in caplog.records if r.name == "reinit_jax"]
  if damage != "delete_step":
    bad = [m for m in lines if "checkpoint at step 4" in m]
    assert len(bad) == 1 and "unreadable" in bad[0] and "resuming from step 2" in bad[0], lines
    assert os.listdir(tmp_path / "checkpoints.corrupt")[0].startswith("4-")
  assert any("resuming" in m and "at step 2 (stage 1)" in m for m in lines), lines
  assert done["params_digest"] == reference["params_digest"]
  assert records(str(tmp_path)) == records(reference["workdir"])


def test_other_config_refused_then_restart_starts_over(tmp_path):
  train.run(tiny_config(stop_after_steps=2), str(tmp_path))
  with pytest.raises(ValueError, match=r"holds a run of another config \(fields "
                     r"\['optim.learning_rate'\]\).*config.run.restart=True") as e:
    train.run(tiny_config(learning_rate=0.01), str(tmp_path))
  assert "\n" not in str(e.value)
  over = train.run(tiny_config(learning_rate=0.01, restart=True), str(tmp_path))
  assert over["steps"] == 6 and not over["interrupted"]
  assert json.load(open(tmp_path / "config.json"))["optim"]["learning_rate"] == 0.01
  rows = records(str(tmp_path), "train")  # the old run's rows are gone: one per stage call
  assert [r["step"] for r in rows] == [2, 4, 6]


def test_restart_on_a_finished_run_of_the_same_config_trains_again(tmp_path):
  """run.restart=True is honoured when the workdir holds a *finished* run of the same config:
  the run trains again (the same params, a new summary), not 'already finished'."""
  first = train.run(tiny_config(), str(tmp_path))
  marked = dict(first, name="left by the previous run")
  with open(tmp_path / "summary.json", "w") as f:
    json.dump(marked, f)
  again = train.run(tiny_config(restart=True), str(tmp_path))
  assert again["name"] == first["name"] and again["steps"] == 6
  assert again["params_digest"] == first["params_digest"]  # same machine, same program
  assert json.load(open(tmp_path / "summary.json"))["name"] == first["name"]
  assert train.run(tiny_config(), str(tmp_path))["name"] == first["name"]  # now finished: kept
