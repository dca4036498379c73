"""Interrupting a run and re-running the same command ends bitwise where an uninterrupted run ends."""

import json

import pytest

from reinit_jax import train
from train_helpers import records, tiny_config


@pytest.mark.parametrize("stop,extra", [
  (3, dict(checkpoint_every=1, max_steps_per_call=1)),  # mid-stage, from a periodic checkpoint
  (4, dict()),  # at a stage end, before its event
])
def test_resume_gives_the_same_params_digest(stop, extra, tmp_path):
  kw = dict(method="layerwise", epochs=6, stages=3, distill=True, seeds=(0, 1), **extra)
  full = train.run(tiny_config(**kw), str(tmp_path / "full"))
  part = train.run(tiny_config(stop_after_steps=stop, **kw), str(tmp_path / "resumed"))
  assert part["interrupted"] and part["steps"] == stop
  done = train.run(tiny_config(**kw), str(tmp_path / "resumed"))
  assert not done["interrupted"] and done["steps"] == 6
  assert done["params_digest"] == full["params_digest"]
  assert done["test_accuracy"] == full["test_accuracy"]
  strip = lambda rows: [{k: v for k, v in r.items()} for r in rows]
  assert strip(records(str(tmp_path / "resumed"))) == strip(records(str(tmp_path / "full")))


def test_resume_refuses_another_config(tmp_path):
  train.run(tiny_config(stop_after_steps=2), str(tmp_path))
  with pytest.raises(ValueError, match="another config"):
    train.run(tiny_config(learning_rate=0.01), str(tmp_path))


def test_finished_run_rerun_is_a_no_op(tmp_path):
  a = train.run(tiny_config(), str(tmp_path))
  b = train.run(tiny_config(), str(tmp_path))
  assert a["params_digest"] == b["params_digest"] and b["steps"] == 6


def test_config_json_of_an_older_version_resumes(tmp_path):
  # A config.json written before a field existed: the missing field counts as its default.
  c = tiny_config()
  first = train.run(c, str(tmp_path))
  path = tmp_path / "config.json"
  stored = json.loads(path.read_text())
  del stored["run"]["mesh"], stored["optim"]["momentum"]
  path.write_text(json.dumps(stored))
  again = train.run(c, str(tmp_path))
  assert again == first  # recognized as the same finished run: its summary is kept
  with pytest.raises(ValueError, match=r"another config \(fields \['optim.momentum'\]\)"):
    train.run(tiny_config(momentum=0.5), str(tmp_path))
