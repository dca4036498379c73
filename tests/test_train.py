"""Engine tests on the synthetic task: every method trains, events, distillation, online, noise."""

import json
import os

import jax
import numpy as np
import pytest

from reinit_jax import methods
from reinit_jax import train
from reinit_jax.train import schedules
from train_helpers import COUNTING_CALLS, records, run_keeping, tiny_config


@pytest.mark.parametrize("method", methods.SPEC_METHODS)
def test_every_method_trains_with_equal_steps(method, tmp_path):
  kw = {"events_per_block": 1} if method == "layerwise" else {}
  c = tiny_config(method=method, stages=3)
  c.reinit.hparams = kw
  s = train.run(c, str(tmp_path))
  assert s["steps"] == 6 and s["total_steps"] == 6  # T·floor(N/T) full-batch steps, any method
  assert s["events"] == 2
  assert 0.0 <= s["test_accuracy"]["mean"] <= 1.0
  for f in ("config.json", "metrics.jsonl", "summary.json"):
    assert os.path.exists(tmp_path / f)
  assert os.listdir(tmp_path / "tensorboard")
  assert len(s["stages"]) == 3
  tr = records(str(tmp_path), "train")
  assert [r["step"] for r in tr] == [2, 4, 6]


def test_event_applied_exactly_T_minus_1_times(tmp_path):
  COUNTING_CALLS.clear()
  s = train.run(tiny_config(method="_test_counting", epochs=8, stages=4), str(tmp_path))
  assert sorted(COUNTING_CALLS) == [1, 2, 3]  # once after each of stages 1..T−1, with that stage
  assert s["events"] == 3


def test_per_stage_cosine_restarts(tmp_path):
  c = tiny_config(schedule="cosine_per_stage", epochs=12, stages=3, max_steps_per_call=1,
                  learning_rate=0.1)
  train.run(c, str(tmp_path))
  lrs = {(r["stage"], r["epoch"]): r["learning_rate"] for r in records(str(tmp_path), "train")}
  for t in (1, 2, 3):
    assert lrs[(t, 1)] == pytest.approx(0.1)  # the first step of every stage: the base lr
    assert lrs[(t, 4)] == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 3 / 4)), rel=1e-5)
  # lr(step_in_stage, step, stage): one cosine over the budget reads the global step only.
  per_stage = schedules.make_schedule("cosine_per_stage", 0.1, 4, 12)
  assert float(per_stage(0, 4, 2)) == pytest.approx(0.1)
  one = schedules.make_schedule("cosine", 0.1, 4, 12)
  assert float(one(0, 4, 2)) == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 4 / 12)), rel=1e-5)


def test_no_recompilation_across_stages(tmp_path):
  r, s = run_keeping(tiny_config(method="layerwise", epochs=10, stages=5, checkpoint_every=1,
                                 eval_every_epochs=1), str(tmp_path), fresh=True)
  assert s["events"] == 4
  assert r.compiled.train_call._cache_size() == 1
  assert r.compiled.event_fn._cache_size() == 1
  assert r.compiled.eval_fn._cache_size() == 1


def test_runs_share_jitted_functions_only_where_they_agree(tmp_path):
  """Grid points that differ only in the method or the synthetic α share the train step (one
  compilation per grid), and a run on shared functions ends exactly as a freshly built one."""
  a, _ = run_keeping(tiny_config(method="standard"), str(tmp_path / "a"), fresh=True)
  b, sb = run_keeping(tiny_config(method="shrink_perturb", synthetic_alpha=2.0),
                      str(tmp_path / "b"))
  assert b.compiled.train_call is a.compiled.train_call and b.compiled.eval_fn is a.compiled.eval_fn
  assert b.compiled.event_fn is not a.compiled.event_fn  # the event applies the method
  c, _ = run_keeping(tiny_config(method="standard", learning_rate=0.1), str(tmp_path / "c"))
  assert c.compiled.train_call is not a.compiled.train_call
  _, alone = run_keeping(tiny_config(method="shrink_perturb", synthetic_alpha=2.0),
                         str(tmp_path / "alone"), fresh=True)
  assert sb["params_digest"] == alone["params_digest"]
  assert records(str(tmp_path / "b")) == records(str(tmp_path / "alone"))


@pytest.mark.parametrize("live", [False, True])
def test_distillation_changes_only_stages_after_the_first(live, tmp_path):
  base = train.run(tiny_config(method="full"), str(tmp_path / "plain"))
  ban = train.run(tiny_config(method="full", distill=True, distill_live=live, distill_beta=2.0),
                  str(tmp_path / "ban"))
  a, b = records(str(tmp_path / "plain"), "train"), records(str(tmp_path / "ban"), "train")
  assert a[0]["loss"] == b[0]["loss"]  # stage 1: no teacher, β is off
  assert b[1]["loss"] != a[1]["loss"]  # stage 2: CE + β·KL(teacher ‖ student)
  assert b[1]["loss"] > 0 and np.isfinite(b[1]["loss"])
  assert base["params_digest"] != ban["params_digest"]


def test_distillation_beta_zero_equals_no_distillation(tmp_path):
  a = train.run(tiny_config(method="shrink_perturb"), str(tmp_path / "a"))
  b = train.run(tiny_config(method="shrink_perturb", distill=True, distill_beta=0.0),
                str(tmp_path / "b"))
  assert a["params_digest"] == b["params_digest"]


def test_online_mode_trains_on_growing_chunks(tmp_path):
  c = tiny_config(method="standard", chunks=3, stages=3, epochs=6, batch_size=8,
                  synthetic_train=48)
  r, s = run_keeping(c, str(tmp_path), fresh=True)
  # chunks of 16: stage t sees 16·t examples → 2t steps per epoch, 2 epochs per stage.
  assert s["steps"] == 2 * (2 + 4 + 6)
  steps = [r_["step"] for r_ in records(str(tmp_path), "train")]
  assert steps[-1] == 24
  # the growing view does not recompile: fixed-shape calls padded to the last stage's size
  assert r.compiled.train_call.jitted._cache_size() == 1
  assert r.compiled.event_fn.jitted._cache_size() == 1


def test_label_noise_trains_and_differs(tmp_path):
  clean = train.run(tiny_config(), str(tmp_path / "clean"))
  noisy = train.run(tiny_config(label_noise=0.4), str(tmp_path / "noisy"))
  assert clean["params_digest"] != noisy["params_digest"]
  assert 0.0 <= noisy["test_accuracy"]["mean"] <= 1.0


def test_seed_axis_matches_single_seed_runs(tmp_path):
  both = train.run(tiny_config(seeds=(0, 1)), str(tmp_path / "both"))
  one = train.run(tiny_config(seeds=(1,), seed=0), str(tmp_path / "one"))
  assert both["test_accuracy"]["per_seed"][1] == pytest.approx(one["test_accuracy"]["mean"],
                                                               abs=1e-6)
  assert both["test_accuracy"]["std"] >= 0
  with open(tmp_path / "both" / "summary.json") as f:
    assert json.load(f)["test_accuracy"]["per_seed"] == both["test_accuracy"]["per_seed"]


def test_per_seed_data_each_seed_draws_its_own_set(tmp_path):
  """data.per_seed: seed s trains and tests on the synthetic set drawn from s, exactly as if it ran
  alone; without it every seed shares the first seed's set ([LW] §1.1 averages independent runs)."""
  own = train.run(tiny_config(seeds=(0, 1), per_seed=True), str(tmp_path / "own"))
  alone = train.run(tiny_config(seeds=(1,), per_seed=True), str(tmp_path / "alone"))
  shared = train.run(tiny_config(seeds=(0, 1)), str(tmp_path / "shared"))
  loss = lambda name, seed: [r["loss"] for r in records(str(tmp_path / name), "train")
                             if r["seed"] == seed]
  assert own["test_accuracy"]["per_seed"][1] == pytest.approx(alone["test_accuracy"]["mean"],
                                                              abs=1e-6)
  assert loss("own", 1) == pytest.approx(loss("alone", 1), rel=1e-5)
  assert loss("own", 0) == pytest.approx(loss("shared", 0), rel=1e-5)  # seed 0's set is shared's
  assert loss("own", 1) != pytest.approx(loss("shared", 1), rel=1e-3)  # seed 1 draws its own


def test_weight_decay_and_optimizers_change_training(tmp_path):
  a = train.run(tiny_config(), str(tmp_path / "a"))
  b = train.run(tiny_config(weight_decay=0.1), str(tmp_path / "b"))
  d = train.run(tiny_config(optimizer="adam", learning_rate=1e-3), str(tmp_path / "d"))
  assert len({a["params_digest"], b["params_digest"], d["params_digest"]}) == 3
