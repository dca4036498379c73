"""Masks ([LW] §3, DSD, WELSR): exact fractions, smallest magnitudes, blocks, paths, combinators.

The exactness tests run every exact selection implementation ('bracket', the CPU default, and
'sort', the accelerators' default, forced here) against numpy's stable argsort.
"""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from reinit_jax import masks, models, selection

EXACT_IMPLS = ("bracket", "sort")

# Every new leaf shape compiles new sort kernels: few, small shapes keep this test cheap.
SETTINGS = settings(max_examples=10, deadline=None)


def _params(shapes, seed=0):
  rng = np.random.default_rng(seed)
  return {f"layer{i}": {"kernel": jnp.asarray(rng.normal(size=s), jnp.float32)}
          for i, s in enumerate(shapes)}


shapes_st = st.lists(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=7),
                     min_size=1, max_size=3)


@SETTINGS
@given(shapes=shapes_st, fraction=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_random_fraction_selects_exact_fraction_of_every_tensor(shapes, fraction, seed):
  params = _params(shapes, seed)
  mask = masks.random_fraction(jax.random.key(seed), params, fraction)
  for m, p in zip(jax.tree.leaves(mask), jax.tree.leaves(params)):
    assert m.shape == p.shape and m.dtype == jnp.bool_
    assert abs(int(m.sum()) - fraction * p.size) <= 1


@SETTINGS
@given(shapes=shapes_st, fraction=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_smallest_magnitude_picks_exactly_the_smallest(shapes, fraction, seed):
  params = _params(shapes, seed)
  mask = masks.smallest_magnitude(params, fraction)
  for m, p in zip(jax.tree.leaves(mask), jax.tree.leaves(params)):
    m, a = np.asarray(m), np.abs(np.asarray(p))
    assert abs(int(m.sum()) - fraction * p.size) <= 1
    if m.any() and (~m).any():
      assert a[m].max() <= a[~m].min()


def test_smallest_magnitude_with_ties_is_exact_count():
  params = {"b": jnp.zeros((10,))}
  m = masks.smallest_magnitude(params, 0.3)
  assert int(m["b"].sum()) == 3


def test_random_fraction_differs_by_key_and_by_leaf():
  params = {"a": jnp.zeros((50,)), "b": jnp.zeros((50,))}
  m1 = masks.random_fraction(jax.random.key(0), params, 0.5)
  m2 = masks.random_fraction(jax.random.key(1), params, 0.5)
  assert not np.array_equal(m1["a"], m2["a"])
  assert not np.array_equal(m1["a"], m1["b"])  # leaves get independent draws


def test_by_path_regex_on_joined_path():
  params = {"block1": {"conv": {"kernel": jnp.ones(3), "bias": jnp.ones(3)}},
            "head": {"kernel": jnp.ones(2)}}
  m = masks.by_path(params, r"kernel$")
  assert bool(m["block1"]["conv"]["kernel"]) and bool(m["head"]["kernel"])
  assert not bool(m["block1"]["conv"]["bias"])
  m = masks.by_path(params, r"^block1/conv/")
  assert bool(m["block1"]["conv"]["bias"]) and not bool(m["head"]["kernel"])
  with pytest.raises(ValueError, match="pattern"):
    masks.by_path(params, "(")


def test_block_masks_follow_the_declaration():
  model = models.create("mlp", 8)
  params = model.init(jax.random.key(0))["params"]
  up = masks.up_to_block(params, model.blocks, 2)
  after = masks.after_block(params, model.blocks, 2)
  assert [bool(up[f"dense{i}"]["kernel"]) for i in (1, 2, 3)] == [True, True, False]
  assert [bool(after[f"dense{i}"]["kernel"]) for i in (1, 2, 3)] == [False, False, True]
  only2 = masks.block(params, model.blocks, 2)
  assert [bool(only2[f"dense{i}"]["bias"]) for i in (1, 2, 3)] == [False, True, False]
  hd = masks.head(params, model.head)
  assert [bool(hd[f"dense{i}"]["kernel"]) for i in (1, 2, 3)] == [False, False, True]
  # a traced k gives the same masks: one compilation for every event
  traced = jax.jit(lambda k: masks.after_block(params, model.blocks, k))(jnp.int32(2))
  assert jax.tree.map(bool, traced) == jax.tree.map(bool, after)
  with pytest.raises(ValueError, match="block index k"):
    masks.up_to_block(params, model.blocks, 4)


def test_combinators():
  params = {"a": jnp.zeros((4,)), "b": jnp.zeros((4,))}
  x = {"a": jnp.array([True, False, True, False]), "b": jnp.asarray(True)}
  y = {"a": jnp.array([True, True, False, False]), "b": jnp.asarray(False)}
  assert np.array_equal(masks.and_(x, y)["a"], [True, False, False, False])
  assert np.array_equal(masks.or_(x, y)["a"], [True, True, True, False])
  assert np.array_equal(masks.not_(x)["a"], [False, True, False, True])
  assert int(masks.count(masks.or_(x, y), params)) == 3 + 4
  with pytest.raises(ValueError, match="structure of params"):
    masks.and_(x, {"a": x["a"]})


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", True])
def test_bad_fraction_is_one_clear_line(bad):
  with pytest.raises(ValueError, match="fraction must") as e:
    masks.random_fraction(jax.random.key(0), {"a": jnp.ones(3)}, bad)
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("impl", EXACT_IMPLS)
@SETTINGS
@given(values=hnp.arrays(np.float32, st.integers(1, 40),
                         elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5, 1e-30, 1e30])),
       fraction=st.floats(0, 1))
def test_selection_equals_a_stable_argsort_ranking_with_ties(impl, values, fraction):
  k = int(round(fraction * values.size))
  ref = np.zeros(values.size, bool)
  ref[np.argsort(np.abs(values), kind="stable")[:k]] = True
  got = masks.smallest_magnitude({"w": jnp.asarray(values)}, fraction, select_impl=impl)["w"]
  np.testing.assert_array_equal(np.asarray(got), ref)


def _large_cases():
  # Sizes past selection._BRACKET_MIN, so the sampled bracket and the interpolation passes run.
  rng = np.random.default_rng(0)
  n = 80_000
  assert n >= selection._BRACKET_MIN
  pos = (np.arange(selection._SAMPLE, dtype=np.int64) * 2654435761) % n  # the bracket's sample
  huge_sample = np.abs(rng.standard_normal(n)).astype(np.float32)
  huge_sample[pos] = 1e6 + np.arange(pos.size)  # the bracket misses: the answer lies below it
  zero_sample = np.abs(rng.standard_normal(n)).astype(np.float32)
  zero_sample[pos] = 0.0  # ... and above it
  return {
      "normal": rng.standard_normal(n),
      "ties_at_the_cut": np.round(rng.standard_normal(n) * 10) / 10,
      "half_zeros": np.where(rng.random(n) < 0.5, 0.0, rng.standard_normal(n)),
      "heavy_tailed": np.exp(rng.standard_normal(n) * 10),  # poor interpolation: even probes
      "sorted": np.sort(np.abs(rng.standard_normal(n))),
      "huge_sample": huge_sample,
      "zero_sample": zero_sample,
      "inf_and_nan": np.concatenate([rng.standard_normal(n - 4000), [np.inf] * 2000, [np.nan] * 2000]),
  }


@pytest.mark.parametrize("impl", EXACT_IMPLS)
@pytest.mark.parametrize("case", sorted(_large_cases()))
def test_large_tensor_selection_equals_a_stable_argsort(case, impl):
  values = _large_cases()[case].astype(np.float32)
  scores = np.where(np.isnan(values), np.inf, np.abs(values))  # NaN ranks as +inf
  select = jax.jit(lambda w, f: masks.smallest_magnitude({"w": w}, f, impl)["w"], static_argnums=1)
  for fraction in (0.0001, 0.2, 0.5, 0.9999):
    k = int(round(fraction * values.size))
    ref = np.zeros(values.size, bool)
    ref[np.argsort(scores, kind="stable")[:k]] = True
    got = np.asarray(select(jnp.asarray(values.reshape(200, -1)), fraction)).reshape(-1)
    np.testing.assert_array_equal(got, ref, err_msg=f"{case} at fraction {fraction} ({impl})")


@pytest.mark.parametrize("impl", EXACT_IMPLS)
def test_random_fraction_agrees_with_ranking_uniform_draws(impl):
  # The keys are 30 random bits whose top 23 are jax.random.uniform's: without a tie at the cut
  # the selection is the k smallest uniforms of the leaf's own key, on large tensors too.
  params = {"a": jnp.zeros((64, 64)), "b": jnp.zeros((300, 100))}
  mask = masks.random_fraction(jax.random.key(7), params, 0.3, select_impl=impl)
  for leaf_key, name in zip(jax.random.split(jax.random.key(7), 2), ("a", "b")):
    u = np.asarray(jax.random.uniform(leaf_key, params[name].shape)).reshape(-1)
    k = int(round(0.3 * u.size))
    assert np.sort(u)[k - 1] < np.sort(u)[k]  # no tie at the cut for this seed
    np.testing.assert_array_equal(np.asarray(mask[name]).reshape(-1), u <= np.sort(u)[k - 1])


@pytest.mark.parametrize("impl", EXACT_IMPLS)
@pytest.mark.parametrize("n", [selection._CAP, selection._CAP + 1, 5000])
def test_sizes_around_the_search_paths_equal_a_stable_argsort(n, impl):
  # <= _CAP: one stable sort (the 'sort' path: the padded group of small tensors); above it without
  # the sampled bracket (n < _BRACKET_MIN): probes from the whole key range, where the
  # interpolation is poor and halving has to finish.
  values = (np.round(np.random.default_rng(n).standard_normal(n) * 8) / 8).astype(np.float32)
  for fraction in (0.1, 0.5):
    k = int(round(fraction * n))
    ref = np.zeros(n, bool)
    ref[np.argsort(np.abs(values), kind="stable")[:k]] = True
    got = masks.smallest_magnitude({"w": jnp.asarray(values)}, fraction, select_impl=impl)["w"]
    np.testing.assert_array_equal(np.asarray(got), ref)
