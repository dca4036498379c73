"""reinit_jax.plasticity against its definitions on hand-computed cases: ReDo's scores and reset,
continual backprop's utility and replacement, L2 Init, per-step S&P, plasticity injection, the
optimizer-state edit of reset units (Adam and SGD with momentum), effective rank and srank."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reinit_jax import events, plasticity as pl

LAYERS = (("dense1",), ("dense2",), ("head",))


def _params(value=1.0):
  """A 2-3-2-1 chain with distinct entries."""
  k = lambda shape, start: jnp.arange(start, start + np.prod(shape), dtype=jnp.float32).reshape(
    shape) * value
  return {"dense1": {"kernel": k((2, 3), 1), "bias": k((3,), 10)},
          "dense2": {"kernel": k((3, 2), 20), "bias": k((2,), 30)},
          "head": {"kernel": k((2, 1), 40), "bias": k((1,), 50)}}


def test_unit_scores_and_dormant_fraction_by_hand():
  h = jnp.asarray([[0.0, 1.0, 3.0, 0.0], [0.0, 3.0, 1.0, 0.2]])  # E|h| = 0, 2, 2, 0.1
  s = pl.unit_scores(h)
  np.testing.assert_allclose(s, [0, 2 / 1.025, 2 / 1.025, 0.1 / 1.025], rtol=1e-6)
  assert float(pl.dormant_fraction(h, 0.0)) == 0.25  # one dead unit
  assert float(pl.dormant_fraction(h, 0.1)) == 0.5  # and one of score 0.0976
  np.testing.assert_array_equal(pl.unit_scores(jnp.zeros((3, 2))), [0, 0])


def test_reset_units_fresh_in_zero_out_rest_kept():
  p, f = _params(), _params(-1.0)
  masks = [jnp.asarray([False, True, False]), jnp.asarray([True, False])]
  out = pl.reset_units(p, f, LAYERS, masks)
  want = jax.tree.map(np.array, p)
  want["dense1"]["kernel"][:, 1] = -np.asarray(p["dense1"]["kernel"])[:, 1]
  want["dense1"]["bias"][1] = -11.0
  want["dense2"]["kernel"][1, :] = 0.0  # outgoing of dense1's unit 1
  want["dense2"]["kernel"][:, 0] = -np.asarray(p["dense2"]["kernel"])[:, 0]
  want["dense2"]["kernel"][1, 0] = -22.0  # unit 0 of dense2 is fresh there too (incoming wins)
  want["dense2"]["bias"][0] = -30.0
  want["head"]["kernel"][0, :] = 0.0
  for got, exp in zip(jax.tree.leaves(out), jax.tree.leaves(want)):
    np.testing.assert_array_equal(got, exp)
  touched = pl.unit_param_masks(p, LAYERS, masks)
  changed = jax.tree.map(lambda a, b: np.asarray(a) != np.asarray(b), out, p)
  for t, c in zip(jax.tree.leaves(touched), jax.tree.leaves(changed)):
    assert not (np.asarray(c) & ~np.asarray(t)).any()  # nothing changes outside the mask


def test_a_reset_does_not_change_the_output_when_incoming_is_fresh_and_outgoing_zero():
  """Zero outgoing weights: the network's output right after a reset is that of the network
  without the reset units (their new activations are multiplied by 0)."""
  p, f = _params(0.01), _params(-0.02)

  def net(q, x):
    h1 = jax.nn.relu(x @ q["dense1"]["kernel"] + q["dense1"]["bias"])
    return h1 @ q["dense2"]["kernel"] + q["dense2"]["bias"]

  x = jnp.ones((4, 2))
  masks = [jnp.asarray([True, False, True]), jnp.asarray([False, False])]
  out = pl.reset_units(p, f, LAYERS, masks)
  without = jax.tree.map(lambda a: a, p)
  without = {**p, "dense2": {**p["dense2"], "kernel": p["dense2"]["kernel"].at[0].set(0).at[2].set(0)}}
  np.testing.assert_allclose(net(out, x), net(without, x), rtol=1e-6)


def test_a_chain_with_a_reshape_is_refused():
  p = _params()
  p["head"]["kernel"] = jnp.ones((5, 1))
  with pytest.raises(ValueError, match="head takes 5 inputs but dense2 has 2 units"):
    pl.reset_units(p, p, LAYERS, [jnp.ones(3, bool), jnp.ones(2, bool)])


def test_redo_resets_exactly_the_dormant_units():
  p, f = _params(), _params(-1.0)
  acts = [jnp.asarray([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]), jnp.asarray([[1.0, 1.0]])]
  out, masks = pl.redo(p, f, acts, LAYERS, tau=0.1)
  np.testing.assert_array_equal(masks[0], [True, False, False])
  np.testing.assert_array_equal(masks[1], [False, False])
  np.testing.assert_array_equal(out["dense1"]["kernel"][:, 0], -np.asarray(p["dense1"]["kernel"])[:, 0])
  np.testing.assert_array_equal(out["dense2"]["kernel"][0], [0.0, 0.0])


@pytest.mark.parametrize("tx,decays", [
  (optax.adam(0.1), False), (optax.sgd(0.1, momentum=0.9), False),
  (optax.chain(optax.add_decayed_weights(1e-3), optax.adam(0.1)), True)],
  ids=["adam", "sgd_momentum", "wd_adam"])
def test_no_stale_moment_moves_a_reset_unit_after_one_more_step(tx, decays):
  """After the reset and the state edit every moment at a reset weight is 0 (counts kept), and one
  more step with a zero gradient leaves the reset weights as reset (weight decay aside, which
  moves every weight by its own value); without the edit the stale moments move them."""
  p, f = _params(0.1), _params(-0.1)
  state = tx.init(p)
  grads = jax.tree.map(jnp.ones_like, p)
  for _ in range(3):  # build up moments everywhere
    updates, state = tx.update(grads, state, p)
    p = optax.apply_updates(p, updates)
  masks = [jnp.asarray([False, True, False]), jnp.asarray([False, False])]
  reset = pl.reset_units(p, f, LAYERS, masks)
  touched = pl.unit_param_masks(p, LAYERS, masks)
  edited = events.optimizer_state("mask", tx, state, reset, touched)
  moments = optax.tree_utils.tree_map_params(
    tx, lambda s, t: np.asarray(s)[np.asarray(t)], edited, touched,
    transform_non_params=lambda leaf: None)
  assert all(not v.any() for v in jax.tree.leaves(moments))
  counts = [x for x in jax.tree.leaves(edited) if x.dtype == jnp.int32]
  assert all(int(c) == 3 for c in counts)  # Adam's step count kept (SGD's trace has none)
  if decays:
    return
  zero = jax.tree.map(jnp.zeros_like, p)
  updates, _ = tx.update(zero, edited, reset)
  after = optax.apply_updates(reset, updates)
  for a, r, t in zip(jax.tree.leaves(after), jax.tree.leaves(reset), jax.tree.leaves(touched)):
    np.testing.assert_array_equal(np.asarray(a)[np.asarray(t)], np.asarray(r)[np.asarray(t)])
  # Without the edit the stale moments move them.
  updates, _ = tx.update(zero, state, reset)
  stale = optax.apply_updates(reset, updates)
  moved = [np.any(np.asarray(a)[np.asarray(t)] != np.asarray(r)[np.asarray(t)])
           for a, r, t in zip(jax.tree.leaves(stale), jax.tree.leaves(reset), jax.tree.leaves(touched))]
  assert any(moved)


def test_continual_backprop_utility_and_replacement_by_hand():
  p = _params()
  state = pl.ContinualBackprop.init(p, LAYERS)
  acts = [jnp.asarray([[1.0, 2.0, 0.5]]), jnp.asarray([[1.0, 1.0]])]
  state = state.update(p, acts, LAYERS, decay=0.5)
  # dense1 unit i: 0.5 · |h_i| · Σ_k |w_dense2[i, k]|, rows (20, 21), (22, 23), (24, 25)
  np.testing.assert_allclose(state.utility[0], [0.5 * 1 * 41, 0.5 * 2 * 45, 0.5 * 0.5 * 49])
  np.testing.assert_allclose(state.utility[1], [0.5 * 40, 0.5 * 41])
  np.testing.assert_array_equal(state.age[0], [1, 1, 1])
  for _ in range(2):
    state = state.update(p, acts, LAYERS, decay=0.5)
  # Maturity 2: all 3 units mature; rate 0.5 → 1.5 units: 1 now (lowest utility: unit 2), 0.5 owed.
  state, masks = state.select(rate=0.5, maturity=2)
  np.testing.assert_array_equal(masks[0], [False, False, True])
  assert float(state.owed[0]) == pytest.approx(0.5) and int(state.age[0][2]) == 0
  assert float(state.utility[0][2]) == 0.0
  # Next step: 0.5 + 0.5 · 2 mature = 1.5 → one more, the lowest utility among the mature.
  state, masks = state.select(rate=0.5, maturity=2)
  np.testing.assert_array_equal(masks[0], [True, False, False])
  # Immature units are never replaced.
  fresh = pl.ContinualBackprop.init(p, LAYERS)
  _, masks = fresh.select(rate=1.0, maturity=0)
  assert not any(bool(m.any()) for m in masks)


def test_l2_init_and_shrink_perturb_step():
  p, p0 = _params(), _params(0.5)
  want = 0.1 * sum(float(jnp.sum((a - b) ** 2)) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(p0)))
  assert float(pl.l2_init_penalty(p, p0, 0.1)) == pytest.approx(want, rel=1e-6)
  g = jax.grad(lambda q: pl.l2_init_penalty(q, p0, 0.1))(p)
  np.testing.assert_allclose(g["dense1"]["kernel"], 0.2 * (p["dense1"]["kernel"] - p0["dense1"]["kernel"]))
  out = pl.shrink_perturb_step(p, jax.random.key(0), 0.9, 0.0)
  np.testing.assert_allclose(out["head"]["bias"], 0.9 * p["head"]["bias"])
  noisy = pl.shrink_perturb_step(p, jax.random.key(0), 1.0, 0.01)
  d = np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree.leaves(noisy), jax.tree.leaves(p))])
  assert 0.005 < d.std() < 0.02 and abs(d.mean()) < 0.01


def test_injection_equals_the_old_head_then_trains_only_the_new():
  apply_head = lambda q, x: x @ q["w"] + q["b"]
  frozen = {"w": jnp.asarray([[1.0], [2.0]]), "b": jnp.asarray([0.5])}
  new0 = {"w": jnp.asarray([[-3.0], [0.25]]), "b": jnp.asarray([1.0])}
  f = pl.inject(apply_head, frozen, new0)
  x = jnp.asarray([[1.0, -1.0], [2.0, 0.5]])
  np.testing.assert_allclose(f(new0, x), apply_head(frozen, x))
  g = jax.grad(lambda q: jnp.sum(f(q, x)))(new0)
  np.testing.assert_allclose(g["w"], x.sum(0)[:, None])  # d/dw of head(x; new) alone


def test_effective_rank_and_srank_by_hand():
  f = jnp.diag(jnp.asarray([3.0, 1.0, 0.0]))  # singular values 3, 1, 0
  p = np.asarray([0.75, 0.25])
  assert float(pl.effective_rank(f)) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-5)
  assert int(pl.srank(f, 0.01)) == 2 and int(pl.srank(f, 0.3)) == 1
  assert float(pl.effective_rank(jnp.eye(4))) == pytest.approx(4.0, rel=1e-5)
