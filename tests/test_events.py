"""Events ([AA] §4, [LW] §3, [Z] §3): optimizer-state policies by path, BatchNorm resets, fresh
draws, one compile."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reinit_jax import events, masks, methods, models


def _grads(params):
  return jax.tree.map(lambda p: jnp.ones_like(p) * 0.5, params)


def _momentum_like(state):
  """Every float array in the state with a parameter's shape (trace, mu, nu)."""
  return [x for x in jax.tree.leaves(state) if hasattr(x, "ndim") and x.ndim >= 1]


@pytest.mark.parametrize("tx", [
    optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9)),
    optax.adam(1e-3),
    optax.chain(optax.clip_by_global_norm(1.0), optax.add_decayed_weights(1e-4),
                optax.sgd(optax.cosine_decay_schedule(0.1, 100), momentum=0.9, nesterov=True)),
], ids=["wd+sgd_momentum", "adam", "clip+wd+nesterov_schedule"])
def test_optimizer_mask_policy_zeroes_exactly_the_reinitialized_entries(tx):
  model = models.create("mlp", 8)
  params = model.init(jax.random.key(0))["params"]
  state = tx.init(params)
  for _ in range(3):
    _, state = tx.update(_grads(params), state, params)
  mask = masks.after_block(params, model.blocks, 1)  # dense2, dense3
  elementwise = masks.random_fraction(jax.random.key(1), params, 0.3)
  # block mask, checked by path in the state's own key paths (independent of tree_map_params)
  new = events.optimizer_state("mask", tx, state, params, mask)
  assert jax.tree.structure(new) == jax.tree.structure(state)
  old_by_path = {jax.tree_util.keystr(kp): x for kp, x in jax.tree_util.tree_flatten_with_path(state)[0]}
  n_checked = 0
  for kp, x in jax.tree_util.tree_flatten_with_path(new)[0]:
    path, old = jax.tree_util.keystr(kp), old_by_path[jax.tree_util.keystr(kp)]
    if "'dense2'" in path or "'dense3'" in path:
      assert float(jnp.abs(x).sum()) == 0 and float(jnp.abs(old).sum()) > 0, path
      n_checked += 1
    else:
      np.testing.assert_array_equal(x, old)
  assert n_checked >= 4
  # element-wise mask: zero exactly at the selected entries
  new_e = events.optimizer_state("mask", tx, state, params, elementwise)
  sel = optax.tree_map_params(tx, lambda s_, m_: jnp.broadcast_to(m_, s_.shape), state, elementwise,
                              transform_non_params=lambda x: jnp.zeros(jnp.shape(x), bool))
  for old, nw, mm in zip(*(jax.tree.leaves(t) for t in (state, new_e, sel))):
    old, nw, mm = np.asarray(old), np.asarray(nw), np.asarray(mm)
    assert np.all(nw[mm] == 0)
    np.testing.assert_array_equal(nw[~mm], old[~mm])
  assert sum(int(np.asarray(m_).sum()) for m_ in jax.tree.leaves(sel)) > 0
  # counts (schedules, adam's bias correction) are not parameter state: kept
  counts_old = [x for x in jax.tree.leaves(state) if hasattr(x, "ndim") and x.ndim == 0]
  counts_new = [x for x in jax.tree.leaves(new) if hasattr(x, "ndim") and x.ndim == 0]
  assert [int(c) for c in counts_old] == [int(c) for c in counts_new]
  reset = events.optimizer_state("reset", tx, state, params)
  assert all(float(jnp.abs(x).sum()) == 0 for x in _momentum_like(reset))
  assert events.optimizer_state("keep", tx, state, params) is state
  with pytest.raises(ValueError, match="optimizer_policy must be one of"):
    events.optimizer_state("zero", tx, state, params)


def test_batch_stats_of_reinitialized_layers_reset_others_kept():
  params = {"conv": {"kernel": jnp.ones((3, 3))}, "bn": {"scale": jnp.ones(3), "bias": jnp.zeros(3)},
            "blk": {"bn": {"scale": jnp.ones(2)}, "dense": {"kernel": jnp.ones((2, 2))}}}
  stats = {"bn": {"mean": jnp.full(3, 5.0), "var": jnp.full(3, 7.0)},
           "blk": {"bn": {"mean": jnp.full(2, 5.0), "var": jnp.full(2, 7.0)}}}
  fresh = jax.tree.map(lambda x: jnp.zeros_like(x) if x.shape else x, stats)
  m = masks.by_path(params, r"^blk/bn/")
  out = events.reset_batch_stats(stats, fresh, m)
  np.testing.assert_array_equal(out["blk"]["bn"]["mean"], 0.0)
  np.testing.assert_array_equal(out["bn"]["mean"], 5.0)
  m = masks.by_path(params, r"^bn/")
  out = events.reset_batch_stats(stats, fresh, m)
  np.testing.assert_array_equal(out["bn"]["var"], 0.0)
  np.testing.assert_array_equal(out["blk"]["bn"]["var"], 7.0)
  assert events.reset_batch_stats(stats, fresh, m, "keep") is stats


def test_fresh_draws_come_from_the_models_own_initializer_and_differ_between_events():
  model = models.create("mlp", 8, widths=(256, 256))
  key = jax.random.key(0)
  first = model.init(jax.random.fold_in(key, 12345))["params"]
  draws = [events.fresh_variables(model, key, seed=0, stage=t)["params"] for t in (1, 2)]
  for name in ("dense1", "dense2", "dense3"):
    fan_in = first[name]["kernel"].shape[0]
    for d in draws:
      ratio = float(jnp.var(d[name]["kernel"]) / jnp.var(first[name]["kernel"]))
      assert 0.85 < ratio < 1.15, (name, ratio)
      assert abs(float(jnp.var(d[name]["kernel"])) * fan_in / 2.0 - 1.0) < 0.15  # He: 2/fan_in
    assert not np.array_equal(draws[0][name]["kernel"], draws[1][name]["kernel"])
  other_seed = events.fresh_variables(model, key, seed=1, stage=1)["params"]
  assert not np.array_equal(other_seed["dense1"]["kernel"], draws[0]["dense1"]["kernel"])


def test_event_compiles_once_for_every_stage():
  model = models.create("mlp", 8)
  v = model.init(jax.random.key(0))
  ctx = methods.make_context(model, v["params"])
  tx = optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.05, momentum=0.9))
  R = methods.get("layerwise", events_per_block=2)
  x = jax.random.normal(jax.random.key(1), (32, 128))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def event(v, opt_state, stage):
    fresh = events.fresh_variables(model, jax.random.key(9), 0, stage)
    return events.apply_event(R, model, v, fresh, opt_state, tx, stage, jax.random.key(3), ctx, x,
                              optimizer_policy="mask")

  opt_state = tx.init(v["params"])
  for t in range(1, 6):
    v, opt_state = event(v, opt_state, jnp.int32(t))
  # after stage 5 with M = 2: block ceil(5/2) = 3 normalized
  assert float(v["layerwise_norm"]["lwnorm3"]["sigma"]) != 1.0


@pytest.mark.parametrize("policy", ["set", "skip"])
def test_idle_norm_policy_only_changes_an_event_that_reinitializes_nothing(policy):
  # MLP 128-32-32-8 with K = 3: the event after stage 3 keeps every layer (the output layer is
  # block 3), so 'skip' leaves lwnorm3 at identity while 'set' divides the logits by their std.
  model = models.create("mlp", 8)
  v = model.init(jax.random.key(0))
  ctx = methods.make_context(model, v["params"])
  tx = optax.sgd(0.05)
  R = methods.get("layerwise")
  x = jax.random.normal(jax.random.key(1), (64, 128))
  fresh = events.fresh_variables(model, jax.random.key(9), 0, 1)
  out = {}
  for t in (1, 3):
    out[t], _ = events.apply_event(R, model, v, fresh, tx.init(v["params"]), tx, jnp.int32(t),
                                   jax.random.key(3), ctx, x, idle_norm_policy=policy)
  # k = 1 re-initializes blocks 2-3: both policies measure lwnorm1 (sigma of a ReLU layer's output)
  z1 = model.block_outputs(v, x)[0]
  np.testing.assert_allclose(out[1]["layerwise_norm"]["lwnorm1"]["sigma"], jnp.std(z1), rtol=1e-5)
  sigma3 = float(out[3]["layerwise_norm"]["lwnorm3"]["sigma"])
  logits_std = float(jnp.std(model.block_outputs(v, x)[2]))
  if policy == "set":
    np.testing.assert_allclose(sigma3, logits_std, rtol=1e-5)
    assert abs(sigma3 - 1.0) > 1e-3
  else:
    assert sigma3 == 1.0 and float(out[3]["layerwise_norm"]["lwnorm3"]["mu"]) == 0.0


def test_idle_norm_skip_still_normalizes_before_a_reinitialized_head():
  # scnn's head (fc1, classifier) is fresh after the k = K event, so 'skip' must still set lwnorm4.
  model = models.create("scnn_tiny", 10)
  v = model.init(jax.random.key(0))
  ctx = methods.make_context(model, v["params"])
  tx = optax.sgd(0.05)
  x = jax.random.normal(jax.random.key(1), (8, *model.input_shape))
  fresh = events.fresh_variables(model, jax.random.key(9), 0, 4)
  out, _ = events.apply_event(methods.get("layerwise"), model, v, fresh, tx.init(v["params"]), tx,
                              jnp.int32(model.num_blocks), jax.random.key(3), ctx, x,
                              idle_norm_policy="skip")
  z = model.block_outputs(v, x)[-1]
  np.testing.assert_allclose(out["layerwise_norm"][model.blocks[-1].norm]["sigma"], jnp.std(z),
                             rtol=1e-4)


def test_idle_norm_policy_rejects_unknown_values():
  model = models.create("mlp", 8)
  v = model.init(jax.random.key(0))
  tx = optax.sgd(0.05)
  with pytest.raises(ValueError, match="idle_norm_policy must be one of"):
    events.apply_event(methods.get("layerwise"), model, v, v, tx.init(v["params"]), tx, 1,
                       jax.random.key(3), methods.make_context(model, v["params"]),
                       jnp.zeros((4, 128)), idle_norm_policy="never")
