"""What a run records: resume where the global step matters, and the model-selection summary.

A resumed run must continue from the recorded global step (the one-cosine schedule and dropout's
PRNG stream read it), and the summary's test accuracy is the test split's at the best validation
evaluation ([LW] §3 model selection), not the validation accuracy nor the final test accuracy.
tools/mutants.py checks that these tests fail on such bugs.
"""

import dataclasses
import json

import jax
import numpy as np
import pytest

from reinit_jax import train
from reinit_jax.train import loop, build
from train_helpers import tiny_config


def tiny(**overrides):
  """tests/train_helpers.py's tiny synthetic config: 6 steps in 3 stages."""
  return tiny_config(**overrides)


def rows(workdir, split):
  """The rows of one split in ``workdir``'s metrics.jsonl."""
  with open(workdir / "metrics.jsonl") as f:
    return [r for r in map(json.loads, f) if r["split"] == split]


def test_resume_where_the_step_matters_is_bitwise_and_restores_the_step(tmp_path, monkeypatch):
  """With a one-cosine schedule and dropout (both read the global step), a run stopped mid-stage at
  step 3 and resumed ends bitwise where the uninterrupted run ends, and its first call after the
  restore starts from the recorded step 3."""
  kw = dict(method="shrink_perturb", schedule="cosine", model__options={"dropout": 0.3},
            seeds=(0, 1), max_steps_per_call=1, learning_rate=0.2)
  full = train.run(tiny(**kw), str(tmp_path / "full"))
  part = train.run(tiny(stop_after_steps=3, **kw), str(tmp_path / "resumed"))
  assert part["interrupted"] and part["steps"] == 3
  steps_in = []

  class Recording(build.Built):
    def __init__(self, c_, pack=None):
      super().__init__(c_, pack)
      call = self.compiled.train_call

      def counting(state, *args):
        steps_in.append(jax.device_get(state.step).tolist())  # before: the state is donated
        return call(state, *args)

      self.compiled = dataclasses.replace(self.compiled, train_call=counting)

  monkeypatch.setattr(loop, "Built", Recording)
  done = train.run(tiny(**kw), str(tmp_path / "resumed"))
  assert not done["interrupted"] and done["steps"] == 6
  assert done["params_digest"] == full["params_digest"]
  assert rows(tmp_path / "resumed", "train") == rows(tmp_path / "full", "train")
  assert done["test_accuracy"] == full["test_accuracy"]
  lrs = [r["learning_rate"] for r in rows(tmp_path / "full", "train") if r["seed"] == 0]
  assert len(set(lrs)) == 6  # the schedule moves with the global step (and so does dropout)
  assert steps_in[0] == [3, 3]  # restored step = recorded step, for every seed
  assert steps_in == [[k, k] for k in range(3, 6)]


def test_summary_test_accuracy_is_the_test_split_at_the_best_validation_evaluation(tmp_path):
  """With a validation hold-out, summary test_accuracy per seed is the test accuracy recorded at
  the evaluation with the best validation accuracy (the first one on ties), which is neither the
  validation accuracy there nor the final test accuracy."""
  c = tiny(method="full", validation_fraction=0.25, eval_every_epochs=1, seeds=(0, 1),
           learning_rate=0.3, max_steps_per_call=1)
  s = train.run(c, str(tmp_path))
  val, test = rows(tmp_path, "validation"), rows(tmp_path, "test")
  assert len(val) == len(test) == 6 * 2
  distinct_from_val = distinct_from_final = False
  for i, seed in enumerate((0, 1)):
    v = [r for r in val if r["seed"] == seed]
    t = {r["step"]: r["accuracy"] for r in test if r["seed"] == seed}
    best = max(range(len(v)), key=lambda j: (v[j]["accuracy"], -j))
    want = t[v[best]["step"]]
    assert s["test_accuracy"]["per_seed"][i] == pytest.approx(want, abs=1e-7)
    assert s["best_validation_accuracy"]["per_seed"][i] == pytest.approx(v[best]["accuracy"])
    distinct_from_val |= abs(want - v[best]["accuracy"]) > 1e-3
    distinct_from_final |= abs(want - t[max(t)]) > 1e-3
  # the run is one where a wrong choice shows (otherwise the test could not fail)
  assert distinct_from_val and distinct_from_final
  assert np.isfinite(s["test_accuracy"]["mean"])
