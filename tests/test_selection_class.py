"""Class test (issue 23): every exact k-smallest selection equals a stable argsort at the cut.

reinit_jax/selection.py lists the implementations (SELECT_IMPLS); every one except 'auto' (a choice,
not an implementation) and 'approx' (approximate by design) must select exactly the entries that
``np.argsort(scores, kind='stable')[:k]`` ranks first, scores = |θ| with NaN as +inf, ties by
position (selection.py's and masks.py's docs). The masks are integer/boolean decisions on the same
float32 inputs, so they are compared exactly, on any CPU.

The values are generated to put the cut where the implementations branch:

* k = 0, 1, n − 1, n on every size class: the padded sort of tensors <= _CAP entries, the counting
  passes without the sampled bracket (_CAP < n < _BRACKET_MIN), the sampled bracket (n >=
  _BRACKET_MIN); several tensors of one size (one sort per group on 'sort_batched', reshaped back
  to different shapes), a scalar and an empty tensor;
* ties straddling the k-th position: the k-th the first tie (one of them selected), the last (all
  selected: count(<= t) == k), in between, with more than _CAP copies (the bisection over positions)
  and ties just below and above the cut;
* dense keys: every integer key of a range present, so every probe of a counting pass (an integer
  key between the bracket's ends) lands on an entry: the cut is the first or last entry of a pass;
* a gap right after or right before the k-th key (the band's last / first entry is the cut), and
  the bracket's own sample pushed to the top or bottom (the band misses on either side);
* −0.0 against 0.0 (the same |θ|: a tie broken by position), subnormal, tiny, huge, FLT_MAX, inf
  and NaN magnitudes (keys at both ends of the float range, subnormal ones next to zero).
"""

import functools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from reinit_jax import masks, selection

EXACT_IMPLS = tuple(i for i in selection.SELECT_IMPLS if i not in ("auto", "approx"))

CAP, BRACKET_MIN = selection._CAP, selection._BRACKET_MIN
INF_KEY = 0x7F800000  # +inf's bits; NaN ranks as +inf
NAN_KEY = 0x7FC00000
# Magnitude keys (float32 bits) where the key space has edges: zero, the subnormals, the smallest
# normal, 1e-30, 1.0, 1e30, the largest finite float, +inf.
BASES = (0, 1, 0x007FFFFF, 0x00800000, int(np.float32(1e-30).view(np.int32)), 0x3F800000,
         int(np.float32(1e30).view(np.int32)), 0x7F7FFFFF, INF_KEY)

# The tree: three tensors of one size (different shapes: one group on 'sort_batched'), one past the
# bracket's threshold, small ones of the padded sort (two of equal size, one of exactly _CAP),
# a scalar and an empty tensor.
N_MID = 1500
assert CAP < N_MID < BRACKET_MIN
SHAPES = {"mid0": (30, 50), "mid1": (50, 30), "mid2": (N_MID,),
          "big": (BRACKET_MIN // 128, 128),
          "small0": (37,), "small1": (37,), "cap": (8, CAP // 8), "scalar": (), "empty": (0, 4)}
SIZES = {name: int(np.prod(s)) for name, s in SHAPES.items()}

# Fractions putting k = 0, 1, n − 1, n on each size class (test_fractions_hit_the_edges; the
# tensor of _CAP entries takes the padded sort's edges, the 37-entry rows other ks beside it). Each
# (impl, fraction) compiles once: k is static.
FRACTIONS = (0.0, 1.0, 0.5, 1 / N_MID, (N_MID - 1) / N_MID, 1 / BRACKET_MIN,
             (BRACKET_MIN - 1) / BRACKET_MIN)

LAYOUTS = ("ties", "dense", "gap", "signed_zeros", "extremes", "normal")


def stable_ref(values, k):
  """The stable argsort's first k by |θ| (NaN as +inf), as a mask of ``values``' shape."""
  v = np.asarray(values, np.float32).reshape(-1)
  scores = np.where(np.isnan(v), np.float32(np.inf), np.abs(v))
  ref = np.zeros(v.size, bool)
  ref[np.argsort(scores, kind="stable")[:k]] = True
  return ref.reshape(np.shape(values))


def _from_keys(keys, rng, nan_share):
  """float32 values of magnitude keys ``keys``, random signs (−0.0 too); some +inf become NaN."""
  keys = np.asarray(keys, np.int64)
  assert keys.min(initial=0) >= 0 and keys.max(initial=0) <= INF_KEY
  keys = np.where((keys == INF_KEY) & (rng.random(keys.size) < nan_share), NAN_KEY, keys)
  signs = rng.integers(0, 2, keys.size).astype(np.uint32) << 31
  return (keys.astype(np.uint32) | signs).view(np.float32)


def _ends_biased(lo, hi):
  """An integer in [lo, hi], often one of the ends."""
  return st.one_of(st.just(lo), st.just(hi), st.integers(lo, hi))


@st.composite
def leaf_values(draw, n, k, layout=None):
  """n float32 values whose k-th smallest magnitude sits on an edge chosen by ``layout``."""
  layout = layout or draw(st.sampled_from(LAYOUTS))
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  nan_share = draw(st.sampled_from([0.0, 0.5, 1.0]))
  if n == 0:
    return np.zeros(0, np.float32)
  if layout == "ties":  # m copies of key v straddle the k-th position: a < k <= a + m
    m = min(n, draw(st.one_of(st.integers(2, 9), st.integers(CAP - 2, CAP + 40),
                              st.integers(2, max(2, n)))))
    if k > 0:
      a = draw(_ends_biased(max(0, k - m), min(k - 1, n - m)))
    else:
      a = draw(st.integers(0, n - m))
    above = n - a - m
    v = draw(st.sampled_from(BASES))
    v = min(max(v, 1 if a else 0), INF_KEY - (1 if above else 0))
    # below/above: spread 1 (another tie right next to the cut), a few keys (dense), or wide
    sb, sa = (draw(st.sampled_from([1, 3, 1 << 20, 1 << 30])) for _ in range(2))
    keys = np.concatenate([np.maximum(v - rng.integers(1, sb + 1, a), 0), np.full(m, v),
                           np.minimum(v + rng.integers(1, sa + 1, above), INF_KEY)])
  elif layout == "dense":  # every key of [v0, v0 + s) present: every probe hits an entry
    s = min(n, draw(st.sampled_from([n, max(1, n // 3), 2, 1])))
    v0 = min(draw(st.sampled_from(BASES)), INF_KEY - s + 1)
    keys = v0 + np.concatenate([np.arange(s), rng.integers(0, s, n - s)])
  elif layout == "gap":  # c keys in a low cluster, the rest far above: c = k − 1, k or k + 1
    c = min(max(k + draw(st.sampled_from([-1, 0, 1])), 0), n)
    b1, b2 = sorted(draw(st.lists(st.sampled_from(BASES), min_size=2, max_size=2, unique=True)))
    w = draw(st.sampled_from([1, 2, 1000, 1 << 22]))
    keys = np.concatenate([np.minimum(b1 + rng.integers(0, w, c), b2 - 1),
                           np.minimum(b2 + rng.integers(0, w, n - c), INF_KEY)])
  elif layout == "signed_zeros":  # z zeros of either sign around the k-th position, then normals
    z = min(n, max(0, k + draw(st.integers(-3, 3))))
    rest = np.abs(rng.standard_normal(n - z)).astype(np.float32).view(np.int32)
    keys = np.concatenate([np.zeros(z, np.int64), rest])
  elif layout == "extremes":  # a few special magnitudes, many copies of each
    pool = np.asarray(BASES + (2, 0x00800001, 0x3F800001, 0x7F7FFFFE), np.int64)
    pool = pool[rng.permutation(pool.size)[:draw(st.integers(1, pool.size))]]
    keys = pool[rng.integers(0, pool.size, n)]
  else:  # 'normal': |N(0, 1)| at a scale from subnormal to huge
    scale = draw(st.sampled_from([1e-42, 1e-38, 1.0, 1e30]))
    keys = np.abs(rng.standard_normal(n) * scale).astype(np.float32).view(np.int32)
  keys = np.asarray(keys, np.int64)
  order = draw(st.sampled_from(["shuffled", "ascending", "descending"]))
  if order == "shuffled":
    keys = keys[rng.permutation(n)]
  else:
    keys = np.sort(keys, kind="stable")[::1 if order == "ascending" else -1]
  values = _from_keys(keys, rng, nan_share)
  if n >= BRACKET_MIN:  # the bracket's own sample at the top or the bottom: its band misses
    skew = draw(st.sampled_from([None, "high", "low"]))
    if skew is not None:
      pos = (np.arange(selection._SAMPLE, dtype=np.int64) * 2654435761) % n
      values[pos] = np.float32(3e38) if skew == "high" else np.float32(0.0)
  return values


@st.composite
def trees(draw, fraction):
  return {name: draw(leaf_values(SIZES[name], selection.exact_k(SIZES[name], fraction))).reshape(
      shape) for name, shape in SHAPES.items()}


@functools.lru_cache(maxsize=None)
def _select(impl, fraction):
  """smallest_magnitude forced by the argument, jitted once per (impl, fraction): k is static."""
  return jax.jit(lambda p: masks.smallest_magnitude(p, fraction, select_impl=impl))


def _check_tree(got, params, fraction, label):
  for name, values in params.items():
    m = np.asarray(got[name])
    assert m.dtype == np.bool_ and m.shape == np.shape(values), (label, name)
    k = selection.exact_k(np.size(values), fraction)
    np.testing.assert_array_equal(m, stable_ref(values, k), err_msg=f"{label}: {name}, k={k}")


def test_the_exact_implementations_are_read_from_selection():
  assert {"bracket", "sort", "sort_batched"} <= set(EXACT_IMPLS)
  assert masks.resolve_select_impl("auto") in EXACT_IMPLS


def test_fractions_hit_the_edges():
  """Every size class gets k = 0, 1, n − 1 and n from FRACTIONS."""
  for name in ("mid0", "big", "cap", "scalar"):
    n = SIZES[name]
    ks = {selection.exact_k(n, f) for f in FRACTIONS}
    assert {0, 1, n - 1, n} <= ks, (name, sorted(ks))


@pytest.mark.parametrize("layout", LAYOUTS)
@settings(deadline=None, max_examples=25)
@given(data=st.data(), n=st.sampled_from([1, 2, 37, N_MID]), k_at=st.sampled_from(
    ["zero", "one", "mid", "n-1", "n"]))
def test_the_generator_puts_the_cut_where_it_says(layout, data, n, k_at):
  """The generated layouts are what the selection tests rely on (numpy only, no selection)."""
  k = {"zero": 0, "one": min(1, n), "mid": n // 2, "n-1": n - 1, "n": n}[k_at]
  values = data.draw(leaf_values(n, k, layout))
  assert values.dtype == np.float32 and values.shape == (n,)
  s = np.sort(np.where(np.isnan(values), np.float32(np.inf), np.abs(values)))
  if layout == "ties" and 0 < k < n and n > 1:
    # the k-th key has a copy, right next to it on one side at least
    assert s[k - 1] == s[k] or (k >= 2 and s[k - 2] == s[k - 1])
  if layout == "dense" and n > 1:
    keys = np.unique(s.view(np.int32))
    assert np.all(np.diff(keys) == 1)  # consecutive keys: no probe falls between two entries


@pytest.mark.parametrize("fraction", FRACTIONS)
@pytest.mark.parametrize("impl", EXACT_IMPLS)
@settings(deadline=None, max_examples=8, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.data_too_large])
@given(data=st.data())
def test_every_exact_impl_equals_a_stable_argsort_at_the_cut(impl, fraction, data):
  params = data.draw(trees(fraction))
  got = _select(impl, fraction)(params)
  _check_tree(got, params, fraction, f"{impl} at fraction {fraction}")


def test_negative_zero_ties_with_zero_by_position():
  """|−0.0| = |0.0|: a tie, broken by position on every exact path (and in float_keys)."""
  v = np.array([0.0, -0.0, 1.0, -0.0, 0.0, -1.0, np.nan, -np.nan, np.inf, 1e-45, -1e-45, 0.0],
               np.float32)
  keys = np.asarray(selection.float_keys(jnp.asarray(v)))
  # scores >= 0 expected; −0.0 and every negative read as 0, NaN of either sign as +inf
  assert keys[1] == keys[3] == 0 and keys[6] == keys[7] == keys[8] == INF_KEY and keys[9] == 1
  for impl in EXACT_IMPLS:
    for k in range(v.size + 1):
      got = masks.smallest_magnitude({"w": jnp.asarray(v)}, k / v.size, impl)["w"]
      np.testing.assert_array_equal(np.asarray(got), stable_ref(v, k), err_msg=f"{impl} k={k}")


def _signature(jaxpr):
  return jaxpr.count(" sort["), "while[" in jaxpr


@pytest.mark.parametrize("impl", EXACT_IMPLS)
@pytest.mark.parametrize("how", ["argument", "context", "environment"])
def test_each_way_of_forcing_an_impl_selects_the_same(impl, how, monkeypatch):
  """The argument, a method's ``Context.select_impl`` and $REINIT_SELECT_IMPL each trace ``impl``
  (its sorts and loops in the jaxpr) and give the stable argsort's mask, ties at the cut included."""
  monkeypatch.delenv(selection.ENV_SELECT_IMPL, raising=False)
  rng = np.random.default_rng(5)
  params = {"a": (np.round(rng.standard_normal((30, 50)) * 4) / 4).astype(np.float32),
            "b": (np.round(rng.standard_normal(N_MID) * 4) / 4).astype(np.float32),
            "c": np.zeros(37, np.float32)}
  arg = impl if how == "argument" else None
  fn = lambda p: masks.smallest_magnitude(p, 0.5, select_impl=arg)
  if how == "context":
    from reinit_jax import methods
    ctx = methods.Context(select_impl=impl)
    fn = lambda p: methods.get("magnitude", fraction=0.5).reinit_mask(p, 1, None, ctx)
  if how == "environment":
    monkeypatch.setenv(selection.ENV_SELECT_IMPL, impl)
  sig = _signature(str(jax.make_jaxpr(fn)(params)))
  got = jax.jit(fn)(params)
  # bracket: counting loops, one stable sort for the small tensor; sort: one per large tensor and
  # one for the small ones; sort_batched: the two of 1,500 entries share one
  assert sig == {"bracket": (1, True), "sort": (3, False), "sort_batched": (2, False)}[impl]
  _check_tree(got, params, 0.5, f"{impl} forced by {how}")


def _draw_keys(key, leaves):
  """random_fraction's keys, per leaf: 30 random bits of the leaf's own key (masks.py)."""
  return [np.asarray((jax.random.bits(k, (int(np.size(x)),), jnp.uint32) >> 2).astype(jnp.int32))
          for k, x in zip(jax.random.split(key, len(leaves)), leaves)]


@settings(deadline=None, max_examples=5)
@given(seed=st.integers(0, 2**31 - 1))
def test_random_fraction_equals_a_stable_argsort_of_its_keys(seed):
  """random_fraction ranks 30-bit random keys; at fraction 0.003 the cut lies among keys below
  2^23 (1/128 of them), whose float reading is subnormal: the bracket's float top_k must keep them
  apart. Every exact impl gives the stable argsort of the leaf's keys, hence the same mask."""
  fraction = 0.003
  params = {name: jnp.zeros(SHAPES[name]) for name in ("mid0", "mid1", "big", "small0", "small1")}
  leaves, treedef = jax.tree.flatten(params)
  key = jax.random.key(seed)
  want = [np.zeros(np.size(x), bool) for x in leaves]
  for w, keys in zip(want, _draw_keys(key, leaves)):
    w[np.argsort(keys, kind="stable")[:selection.exact_k(keys.size, fraction)]] = True
  for impl in EXACT_IMPLS:
    got = _random_fraction(impl, fraction)(key, params)
    for g, w, x in zip(jax.tree.leaves(got), want, leaves):
      np.testing.assert_array_equal(np.asarray(g).reshape(-1), w, err_msg=impl)


@functools.lru_cache(maxsize=None)
def _random_fraction(impl, fraction):
  return jax.jit(lambda k, p: masks.random_fraction(k, p, fraction, select_impl=impl))


# ----------------------------------------------------------------------------- the 'bracket' finish
# selection.lowest_k on int32 keys directly: the band (_narrow) ends either with <= _BAND keys,
# ranked from the rows that hold them (_cut_in_band), or at one key value with any number of copies,
# located by the rows' counts (_cut_in_ties); the mask is written inside that branch.
FINISH_SIZES = (CAP + 1, selection._BRACKET_MIN + 37, 1 << 21)  # no sample; sample + padded rows;
# scnn's fc1 kernel


def _finish_layouts(n, rng):
  """int32 keys (0 <= key <= +inf's bits) whose cut falls on each branch of the finish."""
  zeros_first = rng.integers(1, 2**30, n)
  zeros_first[rng.permutation(n)[:n // 5 - 3]] = 0  # the band starts at key 0 (no shift)
  return {
      "magnitudes": np.asarray(selection.float_keys(jnp.asarray(np.abs(rng.standard_normal(n)),
                                                                jnp.float32))),
      "random_30_bits": rng.integers(0, 2**30, n),
      "ties_beyond_the_band": rng.integers(0, 7, n) * 1000,  # n/7 copies of each: one key left
      "ties_within_the_band": rng.integers(0, n // 3, n),  # about three copies of each key
      "zeros_first": zeros_first,
      "near_inf": INF_KEY - rng.integers(0, 50, n),  # +inf's bits in the band (shifted by one)
      "all_equal": np.full(n, 12345),
      "ascending": np.sort(rng.integers(0, 2**31 - 2**23, n)),  # the band in a few adjacent rows
      "descending": np.sort(rng.integers(0, 100, n))[::-1],
  }


@pytest.mark.parametrize("n", FINISH_SIZES)
def test_bracket_finish_branches_equal_a_stable_argsort(n):
  rng = np.random.default_rng(n)
  layouts = {name: jnp.asarray(keys, jnp.int32) for name, keys in _finish_layouts(n, rng).items()}
  for k in (1, n // 5, n // 2, n - 1):
    select = jax.jit(lambda keys: selection.lowest_k(keys, k, (n,)))
    for name, keys in layouts.items():
      ref = np.zeros(n, bool)
      ref[np.argsort(np.asarray(keys), kind="stable")[:k]] = True
      np.testing.assert_array_equal(np.asarray(select(keys)), ref, err_msg=f"{name}, n={n}, k={k}")


def test_bracket_under_vmap_equals_each_member():
  """vmap batches the loop (the most passes any member needs) and the branch (both, a select)."""
  n, k = selection._BRACKET_MIN + 37, 20_000
  layouts = _finish_layouts(n, np.random.default_rng(3))
  stack = jnp.asarray(np.stack([layouts[name] for name in ("magnitudes", "ties_beyond_the_band",
                                                           "ties_within_the_band", "near_inf")]),
                      jnp.int32)
  got = np.asarray(jax.jit(jax.vmap(lambda keys: selection.lowest_k(keys, k, (n,))))(stack))
  for row, keys in zip(got, np.asarray(stack)):
    ref = np.zeros(n, bool)
    ref[np.argsort(keys, kind="stable")[:k]] = True
    np.testing.assert_array_equal(row, ref)


def test_one_pass_counts_every_probe():
  keys = np.random.default_rng(0).integers(0, 1000, 5000).astype(np.int32)
  probes = np.array([-1, 0, 499, 999, 1000], np.int32)
  got = np.asarray(selection._count_le_each(jnp.asarray(keys), jnp.asarray(probes)))
  np.testing.assert_array_equal(got, [(keys <= p).sum() for p in probes])
