"""Step-level events inside the train call (``reinit.every_steps``, ``step.make_step_event``) and
L2 Init (``optim.l2_init``): the decision per run, what a fired event computes, the counters,
no retrace across stages, bitwise resume, and the penalty's gradient."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reinit_jax import events, methods, models, train
from reinit_jax.train import compiled
from reinit_jax.train import step as step_fns
from reinit_jax.train.state import init_state, step_draw, stream_key, STEP_EVENT_STREAM
from train_helpers import run_keeping, tiny_config

MODEL = models.create("mlp", 3, input_shape=(5,), widths=(8,))
X = jnp.linspace(-1.0, 1.0, 4 * 5).reshape(4, 5)


def _state(seed=0, tx=None):
  tx = tx or optax.sgd(0.1, momentum=0.9)
  return init_state(MODEL, None, tx, jax.random.PRNGKey(seed), seed, False, step_events=True), tx


def _after(method, tx, every=3, trigger="every", threshold=0.5, policy="reset"):
  return step_fns.make_step_event(MODEL, method, tx, every=every, trigger=trigger,
                                  threshold=threshold, optimizer_policy=policy,
                                  batch_stats_policy="reset")


def _at(state, step, window=0.0):
  return state.replace(step=jnp.int32(step), step_events={
      **state.step_events, "window_accuracy": jnp.float32(window)})


@pytest.mark.parametrize("name,hparams", [("full", {}), ("shrink_perturb", {"shrink": 0.6,
                                                                          "perturb": 0.2})])
@pytest.mark.parametrize("policy", ["reset", "keep", "mask"])
def test_fired_event_is_the_stage_event_with_a_step_keyed_draw(name, hparams, policy):
  method = methods.get(name, **hparams)
  state, tx = _state()
  state = state.replace(opt_state=jax.tree.map(lambda a: a + 1.0 if a.dtype == jnp.float32 else a,
                                               state.opt_state))  # momentum not zero
  after = _after(method, tx, every=3, policy=policy)
  out = after(_at(state, 6), jnp.float32(1.0), X)
  fresh = step_draw(MODEL, state.seed, 6)
  want, want_opt = events.apply_event(method, MODEL, state.variables, fresh, state.opt_state, tx,
                                      1, stream_key(state.key, STEP_EVENT_STREAM, 6),
                                      state.context, X, optimizer_policy=policy,
                                      batch_stats_policy="reset")
  # The same formulas, compiled inside lax.cond and run eagerly: equal to a few float32 ulps.
  for got, ref in zip(jax.tree.leaves((out.variables, out.opt_state)),
                      jax.tree.leaves((want, want_opt))):
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
  assert int(out.step_events["events"]) == 1
  assert float(out.step_events["window_accuracy"]) == 0.0  # a new window starts
  # The draw is keyed by the step: another step draws another θ_init, never a stage's θ_init.
  assert not np.allclose(step_draw(MODEL, 0, 6)["params"]["dense2"]["kernel"],
                         step_draw(MODEL, 0, 9)["params"]["dense2"]["kernel"])


@pytest.mark.parametrize("step", [1, 2, 4, 5, 7])
def test_no_event_between_the_nth_steps(step):
  state, tx = _state()
  out = _after(methods.get("full"), tx, every=3)(_at(state, step, window=0.25), jnp.float32(0.5), X)
  for got, ref in zip(jax.tree.leaves((out.variables, out.opt_state)),
                      jax.tree.leaves((state.variables, state.opt_state))):
    np.testing.assert_array_equal(got, ref)
  assert int(out.step_events["events"]) == 0
  assert float(out.step_events["window_accuracy"]) == pytest.approx(0.75)


@pytest.mark.parametrize("window,fires", [(1.0, False), (1.49, False), (1.5, True), (3.0, True)])
def test_fit_trigger_fires_at_the_threshold(window, fires):
  """'fit': the mean batch accuracy over the N steps (window + this step's) ≥ threshold."""
  state, tx = _state()
  after = _after(methods.get("full"), tx, every=3, trigger="fit", threshold=0.5)
  out = after(_at(state, 3, window=window - 0.0), jnp.float32(0.0), X)
  changed = not np.array_equal(out.variables["params"]["dense2"]["kernel"],
                               state.variables["params"]["dense2"]["kernel"])
  assert changed == fires and int(out.step_events["events"]) == int(fires)


def test_each_run_decides_for_itself():
  """Vmapped over runs at different steps and accuracies: only the due (and fitted) runs fire."""
  tx = optax.sgd(0.1)
  runs = [_state(seed, tx)[0] for seed in range(4)]
  runs = [_at(s, step, window) for s, step, window in
          zip(runs, [3, 4, 6, 6], [2.0, 2.0, 2.0, 0.0])]
  batched = jax.tree.map(lambda *a: jnp.stack(a), *runs)
  after = _after(methods.get("full"), tx, every=3, trigger="fit", threshold=0.5)
  out = jax.vmap(after, in_axes=(0, None, None))(batched, jnp.float32(1.0), X)
  assert out.step_events["events"].tolist() == [1, 0, 1, 0]
  # The engine's vmap (a named run axis): the same per-run results, and the event stays a branch
  # taken when any run fires (not a select that would run it at every step).
  named = step_fns.over_runs(after, (0, None, None), "vmap")
  again = named(batched, jnp.float32(1.0), X)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(again)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  assert "cond[" in str(jax.make_jaxpr(named)(batched, jnp.float32(1.0), X))
  for i, fired in enumerate([True, False, True, False]):
    kernel = out.variables["params"]["dense2"]["kernel"][i]
    fresh = step_draw(MODEL, i, int(runs[i].step))["params"]["dense2"]["kernel"]
    assert np.allclose(kernel, fresh, rtol=1e-6, atol=1e-6) == fired


def _digest_and_records(c, workdir):
  summary = train.run(c, str(workdir))
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return summary["params_digest"], [r for r in records if r["split"] == "train"]


@pytest.mark.parametrize("every", [1, 2, 4])
def test_engine_counts_every_nth_step_and_compiles_once(tmp_path, every):
  """6 full-batch steps in 3 stages: ⌊6/N⌋ events per run, recorded in metrics.jsonl; one
  compilation of the train call for all stages."""
  c = tiny_config(method="shrink_perturb", seeds=(0, 1), every_steps=every)
  run, _ = run_keeping(c, str(tmp_path / "run"), fresh=True)
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    last = [json.loads(line) for line in f if '"split": "train"' in line][-2:]
  assert [r["step_events"] for r in last] == [6 // every] * 2
  assert all("units_reset" not in r for r in last)  # not a unit-level method
  assert run.compiled.train_call._cache_size() == 1


def test_step_events_change_the_run_and_resume_bitwise(tmp_path):
  c = tiny_config(method="shrink_perturb", seeds=(0, 1), every_steps=2, max_steps_per_call=1)
  plain = train.run(tiny_config(method="shrink_perturb", seeds=(0, 1), max_steps_per_call=1),
                    str(tmp_path / "plain"))
  whole = train.run(c, str(tmp_path / "whole"))
  assert whole["params_digest"] != plain["params_digest"]
  stopped = tiny_config(method="shrink_perturb", seeds=(0, 1), every_steps=2, max_steps_per_call=1,
                        stop_after_steps=3)
  train.run(stopped, str(tmp_path / "resumed"))
  resumed = train.run(c, str(tmp_path / "resumed"))
  assert resumed["params_digest"] == whole["params_digest"]


def test_train_function_keys_on_the_method_when_steps_run_events():
  base = tiny_config(method="shrink_perturb", every_steps=2)
  other = tiny_config(method="full", every_steps=2)
  assert compiled.key("train", base, []) != compiled.key("train", other, [])
  assert (compiled.key("train", tiny_config(method="shrink_perturb"), [])
          == compiled.key("train", tiny_config(method="full"), []))


def test_standard_with_step_events_is_refused():
  with pytest.raises(ValueError, match=r"^config\.reinit\.every_steps=2 is invalid"):
    train.validate(tiny_config(every_steps=2))


@pytest.mark.parametrize("strength", [1e-2, 0.5])
def test_l2_init_adds_its_gradient(strength):
  """One SGD step (lr η) from θ = θ₀ + δ: the L2 Init run moves by −η·2λδ more than the plain one."""
  tx, lr = optax.sgd(1.0), 0.1
  state = init_state(MODEL, None, tx, jax.random.PRNGKey(0), 0, False, anchor=True)
  delta = jax.tree.map(lambda p: 0.05 * jnp.ones_like(p), state.variables["params"])
  moved = jax.tree.map(jnp.add, state.variables["params"], delta)
  state = state.replace(variables={**state.variables, "params": moved})
  lr_fn = lambda *_: jnp.float32(lr)
  y = jnp.array([0, 1, 2, 0])
  steps = [step_fns.make_step(MODEL, tx, lr_fn, lambda k, x, t: x, distill="off", beta=0.0,
                              l2_init=s) for s in (0.0, strength)]
  (plain, _), (l2, _) = [s(state, X, y, None) for s in steps]
  for a, b, d in zip(jax.tree.leaves(l2.variables["params"]),
                     jax.tree.leaves(plain.variables["params"]), jax.tree.leaves(delta)):
    np.testing.assert_allclose(a - b, -lr * 2 * strength * d, rtol=1e-4, atol=1e-6)


def test_feature_diagnostics_match_their_definitions():
  """``make_feature_diagnostics`` over two runs = the plasticity functions on each run's block
  outputs (the head's excluded): dormant fractions per block and τ, ranks of the penultimate."""
  from reinit_jax import plasticity
  model = models.create("mlp", 3, input_shape=(5,), widths=(8, 6))
  x = jnp.concatenate([X, -X, 3 * X])  # 12 examples
  runs = [dict(model.init(jax.random.PRNGKey(s))) for s in (0, 1)]
  runs[1]["params"]["dense1"]["bias"] = runs[1]["params"]["dense1"]["bias"].at[:4].set(-50.0)
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *runs)
  got = step_fns.make_feature_diagnostics(model, lambda k, x, train: x)(stacked, x)
  assert set(got) == ({f"dormant_{t:g}_block{i}" for t in (0, 0.025, 0.1) for i in (1, 2)}
                      | {"effective_rank", "srank"})
  for s, variables in enumerate(runs):
    h1, h2 = model.block_outputs(variables, x)[:-1]
    for tau in (0.0, 0.025, 0.1):
      assert float(got[f"dormant_{tau:g}_block1"][s]) == pytest.approx(
          float(plasticity.dormant_fraction(h1, tau)), abs=1e-7)
      assert float(got[f"dormant_{tau:g}_block2"][s]) == pytest.approx(
          float(plasticity.dormant_fraction(h2, tau)), abs=1e-7)
    assert float(got["srank"][s]) == float(plasticity.srank(h2, 0.01))
    assert float(got["effective_rank"][s]) == pytest.approx(
        float(plasticity.effective_rank(h2)), rel=1e-5)
  assert float(got["dormant_0_block1"][1]) >= 0.5  # the 4 units biased to −50 are dead


def test_feature_diagnostics_in_the_engine(tmp_path):
  """One 'features' record per run at every evaluation (3 stage ends), values in range."""
  c = tiny_config(method="shrink_perturb", seeds=(0, 1), feature_diagnostics=True,
                  model__options={"widths": (16, 16)})
  train.run(c, str(tmp_path / "run"))
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  features = [r for r in records if r["split"] == "features"]
  assert len(features) == len([r for r in records if r["split"] == "test"]) == 2 * 3
  for r in features:
    assert all(0 <= r[f"dormant_{t:g}_block{i}"] <= 1 for t in (0, 0.025, 0.1) for i in (1, 2))
    assert 1 <= r["srank"] <= 16 and 1 <= r["effective_rank"] <= 16


def test_feature_diagnostics_refused_on_one_block():
  with pytest.raises(ValueError, match=r"^config\.run\.feature_diagnostics=True is invalid"):
    train.validate(tiny_config(feature_diagnostics=True, model__options={"widths": ()}))


def test_report_reads_the_last_features_of_each_seed():
  from reinit_jax.analysis import feature_report
  from reinit_jax.analysis.report import RunInfo

  def rec(seed, step, dormant, srank):
    return {"split": "features", "seed": seed, "step": step, "dormant_0.1_block1": 0.9,
            "dormant_0.1_block2": dormant, "dormant_0_block2": dormant / 2, "srank": srank,
            "effective_rank": srank - 1}

  records = [rec(0, 5, 0.9, 1.0), rec(0, 10, 0.2, 7.0), rec(1, 10, 0.4, 9.0), rec(1, 5, 0.0, 2.0),
             {"split": "train", "seed": 0, "step": 10, "step_events": 4, "units_reset": 8},
             {"split": "train", "seed": 1, "step": 10, "step_events": 6, "units_reset": 30}]
  run = RunInfo("p", {}, {}, records, [])
  table = feature_report.features_table({("r", "m"): (run, False)})
  assert "| r | m | 30.0 ± 10.0 | 15.0 ± 5.0 | 8.0 ± 1.0 | 7.0 ± 1.0 | 5 ± 1 | 3.5 ± 1.5 |" in table
  without_units = [{k: v for k, v in r.items() if k != "units_reset"} for r in records]
  table = feature_report.features_table({("r", "m"): (RunInfo("p", {}, {}, without_units, []),
                                                      False)})
  assert "| 5 ± 1 | — |" in table
  assert feature_report.features_table({("r", "m"): (RunInfo("p", {}, {}, [], []), False)}) is None


def _expect_units_reset(want, changed, fresh, layer, units):
  """In the numpy expectation: dense<layer>'s ``units`` take fresh incoming weights and bias and
  zero outgoing weights; ``changed`` marks every weight that moves."""
  for leaf in ("kernel", "bias"):
    want[f"dense{layer}"][leaf][..., units] = np.asarray(fresh[f"dense{layer}"][leaf])[..., units]
    changed[f"dense{layer}"][leaf][..., units] = True
  want[f"dense{layer + 1}"]["kernel"][units, :] = 0.0
  changed[f"dense{layer + 1}"]["kernel"][units, :] = True


def _assert_params_and_adam_moments(out, want, changed):
  """The event's parameters equal ``want``; Adam's moments zero exactly on ``changed``, count kept."""
  for got, ref in zip(jax.tree.leaves(out.variables["params"]), jax.tree.leaves(want)):
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
  adam = out.opt_state[0]
  for moments in (adam.mu, adam.nu):  # zero exactly on the changed weights, kept elsewhere
    for m, c in zip(jax.tree.leaves(moments), jax.tree.leaves(changed)):
      assert np.all((np.asarray(m) == 0) == c)
  assert int(adam.count) == 1


def test_redo_as_a_step_event_resets_dormant_units_and_their_adam_moments():
  """ReDo from the registry inside the step: the dead units' incoming weights fresh, outgoing 0,
  and with optimizer_policy='mask' exactly those weights' Adam moments zero (count kept)."""
  model = models.create("mlp", 3, input_shape=(5,), widths=(8, 6))
  tx = optax.adam(1e-2)
  state = init_state(model, None, tx, jax.random.PRNGKey(0), 0, False, step_events=True)
  params = state.variables["params"]
  params["dense1"]["bias"] = params["dense1"]["bias"].at[:3].set(-50.0)  # units 0-2 never fire
  grads = jax.tree.map(jnp.ones_like, params)
  _, opt_state = tx.update(grads, tx.init(params), params)  # moments not zero anywhere
  state = state.replace(variables={**state.variables, "params": params}, opt_state=opt_state)
  after = step_fns.make_step_event(model, methods.get("redo"), tx, every=2, trigger="every",
                                   threshold=1.0, optimizer_policy="mask",
                                   batch_stats_policy="reset")
  out = after(_at(state, 4), jnp.float32(1.0), X)
  fresh = step_draw(model, 0, 4)["params"]
  # Expected, in numpy: dormant = mean|h| ≤ 0.1 × the layer's mean, layer by layer.
  hidden = [np.abs(np.asarray(h)).mean(0) for h in model.block_outputs(state.variables, X)[:-1]]
  want = jax.tree.map(lambda p: np.asarray(p, np.float64).copy(), params)
  changed = jax.tree.map(lambda p: np.zeros(p.shape, bool), params)
  for i, a in enumerate(hidden, start=1):
    d = a <= 0.1 * a.mean()
    assert d[:3].all() if i == 1 else True, d  # dense1's dead units
    assert d.any() and not d.all(), (i, d)  # each layer: some units reset, some kept
    _expect_units_reset(want, changed, fresh, i, d)
  _assert_params_and_adam_moments(out, want, changed)
  assert int(out.step_events["units_reset"]) == sum(
      int((a <= 0.1 * a.mean()).sum()) for a in hidden)


def test_redo_runs_in_the_engine_and_is_refused_on_a_conv_model(tmp_path):
  c = tiny_config(method="redo", seeds=(0, 1), every_steps=2, optimizer_policy="mask",
                  hparams={"tau": 0.6}, feature_diagnostics=True)
  summary = train.run(c, str(tmp_path / "redo"))
  assert summary["params_digest"]
  with open(tmp_path / "redo" / "metrics.jsonl") as f:
    trains = [json.loads(line) for line in f if '"split": "train"' in line]
  assert all(r["units_reset"] >= 0 for r in trains) and trains[-1]["units_reset"] > 0
  with pytest.raises(ValueError, match=r"^config\.reinit\.method='redo' is invalid.*chain"):
    train.validate(tiny_config(method="redo", every_steps=2, model__name="scnn_tiny",
                               dataset="fashion_mnist", batch_size=16))
  with pytest.raises(ValueError, match=r"^config\.reinit\.method='redo' is invalid.*chain"):
    train.validate(tiny_config(method="redo", every_steps=2, model__num_blocks=2))


def test_continual_backprop_across_step_events_matches_its_definition():
  """Continual backprop from the registry as a step-level event at every step, parameters held
  still between events so the utilities have a closed form: after n events u_i = (1 − ηⁿ)·c_i,
  c_i = mean|h_i|·Σ_k|w_ik|; ages count events; with m = 2 nothing is replaced before the third
  event, which replaces ⌊ρ·n⌋ lowest-utility units per layer (2 of 8, 1 of 6 with 0.5 owed),
  zeroes their Adam moments (count kept), utility and age."""
  model = models.create("mlp", 3, input_shape=(5,), widths=(8, 6))
  tx = optax.adam(1e-2)
  method = methods.get("continual_backprop", replacement_rate=0.25, decay=0.9, maturity=2)
  state = init_state(model, method, tx, jax.random.PRNGKey(0), 0, False, step_events=True)
  params = state.variables["params"]
  grads = jax.tree.map(jnp.ones_like, params)
  _, opt_state = tx.update(grads, tx.init(params), params)  # moments not zero anywhere
  state = state.replace(opt_state=opt_state)
  after = step_fns.make_step_event(model, method, tx, every=1, trigger="every", threshold=1.0,
                                   optimizer_policy="mask", batch_stats_policy="reset")
  hidden = [np.abs(np.asarray(h, np.float64)).mean(0)
            for h in model.block_outputs(state.variables, X)[:-1]]
  contribution = [a * np.abs(np.asarray(params[f"dense{i + 1}"]["kernel"])).sum(1)
                  for i, a in enumerate(hidden, start=1)]
  for n in (1, 2):
    state = after(_at(state, n), jnp.float32(1.0), X)
    units = state.context.carry["units"]
    for u, c in zip(units.utility, contribution):
      np.testing.assert_allclose(u, (1 - 0.9 ** n) * c, rtol=1e-5)
    assert [np.asarray(a).tolist() for a in units.age] == [[n] * 8, [n] * 6]
    # nothing mature yet: nothing replaced, no moment touched (the event skipped its edits)
    for leaf, ref in zip(jax.tree.leaves((state.variables["params"], state.opt_state)),
                         jax.tree.leaves((params, opt_state))):
      np.testing.assert_array_equal(leaf, ref)
  out = after(_at(state, 3), jnp.float32(1.0), X)
  fresh = step_draw(model, 0, 3)["params"]
  units = out.context.carry["units"]
  want = jax.tree.map(lambda p: np.asarray(p, np.float64).copy(), params)
  changed = jax.tree.map(lambda p: np.zeros(p.shape, bool), params)
  for i, (c, count) in enumerate(zip(contribution, (2, 1)), start=1):
    replaced = np.zeros(len(c), bool)
    replaced[np.argsort(c, kind="stable")[:count]] = True
    assert np.asarray(out.context.carry["replaced"][i - 1]).tolist() == replaced.tolist()
    np.testing.assert_array_equal(np.asarray(units.age[i - 1]) == 0, replaced)
    np.testing.assert_array_equal(np.asarray(units.utility[i - 1]) == 0, replaced)
    _expect_units_reset(want, changed, fresh, i, replaced)
  np.testing.assert_allclose([float(d) for d in units.owed], [0.0, 0.5])
  assert int(out.step_events["units_reset"]) == 3
  _assert_params_and_adam_moments(out, want, changed)


def test_a_unit_event_that_resets_nothing_still_applies_the_reset_policy():
  """Skipping an event that resets no unit is an optimization: with optimizer_policy='reset' the
  optimizer state is still re-created, as the stage event would."""
  model = models.create("mlp", 3, input_shape=(5,), widths=(8,))
  tx = optax.adam(1e-2)
  state = init_state(model, None, tx, jax.random.PRNGKey(0), 0, False, step_events=True)
  params = state.variables["params"]
  params["dense1"]["bias"] = params["dense1"]["bias"] + 5.0  # every unit active: none dormant
  _, moved = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  state = state.replace(variables={**state.variables, "params": params}, opt_state=moved)
  for policy, want in (("reset", tx.init(params)), ("mask", moved), ("keep", moved)):
    after = step_fns.make_step_event(model, methods.get("redo", tau=0.0), tx, every=1,
                                     trigger="every", threshold=1.0, optimizer_policy=policy,
                                     batch_stats_policy="reset")
    out = after(_at(state, 1), jnp.float32(1.0), X)
    assert int(out.step_events["events"]) == 1 and int(out.step_events["units_reset"]) == 0
    for got, ref in zip(jax.tree.leaves(out.opt_state), jax.tree.leaves(want)):
      np.testing.assert_array_equal(got, ref, err_msg=policy)


def test_continual_backprop_needs_its_carry_advanced():
  model = models.create("mlp", 3, input_shape=(5,), widths=(8,))
  method = methods.get("continual_backprop")
  variables = model.init(jax.random.PRNGKey(0))
  context = method.prepare(jax.random.PRNGKey(1), variables["params"],
                           methods.make_context(model, variables["params"]))
  with pytest.raises(ValueError, match="advance_context"):
    events.apply_event(method, model, variables, variables, None, None, 1, jax.random.key(0),
                       context, X, optimizer_policy="keep")
  with pytest.raises(ValueError, match="advance_context"):
    method(variables["params"], variables["params"], 1, jax.random.key(0),
           methods.make_context(model, variables["params"]))


def test_continual_backprop_in_the_engine_resumes_bitwise_and_is_refused_without_steps(tmp_path):
  def config(rate=0.2, **kw):  # units replaced at every step from the second on
    return tiny_config(method="continual_backprop", seeds=(0, 1), every_steps=1,
                       optimizer_policy="mask", max_steps_per_call=1,
                       hparams={"replacement_rate": rate, "maturity": 1}, **kw)
  idle = train.run(config(rate=0.0), str(tmp_path / "idle"))
  whole = train.run(config(), str(tmp_path / "whole"))
  assert whole["params_digest"] != idle["params_digest"]
  train.run(config(stop_after_steps=3), str(tmp_path / "resumed"))
  resumed = train.run(config(), str(tmp_path / "resumed"))
  assert resumed["params_digest"] == whole["params_digest"]
  with pytest.raises(ValueError, match=r"^config\.reinit\.every_steps=0 is invalid.*continual"):
    train.validate(tiny_config(method="continual_backprop"))
  with pytest.raises(ValueError, match=r"^config\.reinit\.method='continual_backprop'.*chain"):
    train.validate(tiny_config(method="continual_backprop", every_steps=1, model__num_blocks=2))


def test_unit_events_on_the_vmapped_run_axis_equal_each_run_alone():
  """ReDo as a step event on 3 runs, some with dead units and one without: under the engine's vmap
  (the skip-cond taken when any run resets) every run gets what it gets alone (lax.map)."""
  model = models.create("mlp", 3, input_shape=(5,), widths=(8, 6))
  tx = optax.adam(1e-2)
  runs = []
  for seed, shift in ((0, -50.0), (1, 5.0), (2, 5.0)):  # -50: three more dead units
    st = init_state(model, None, tx, jax.random.PRNGKey(seed), seed, False, step_events=True)
    params = st.variables["params"]
    params["dense1"]["bias"] = params["dense1"]["bias"].at[:3].add(shift)
    params["dense2"]["bias"] = params["dense2"]["bias"] + 5.0
    _, opt_state = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    runs.append(_at(st.replace(variables={**st.variables, "params": params}, opt_state=opt_state),
                    2))
  batched = jax.tree.map(lambda *a: jnp.stack(a), *runs)
  after = step_fns.make_step_event(model, methods.get("redo", tau=0.0), tx, every=2,
                                   trigger="every", threshold=1.0, optimizer_policy="mask",
                                   batch_stats_policy="reset")
  together = step_fns.over_runs(after, (0, None, None), "vmap")(batched, jnp.float32(1.0), X)
  alone = step_fns.over_runs(after, (0, None, None), "map")(batched, jnp.float32(1.0), X)
  counts = together.step_events["units_reset"].tolist()
  assert counts[0] >= 3 and 0 in counts, counts  # runs that reset units beside one that does not
  for a, b in zip(jax.tree.leaves(together), jax.tree.leaves(alone)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
