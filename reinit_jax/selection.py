"""Exact k-smallest selection per tensor, one implementation per backend ([LW] DSD, WELSR, WELS).

:func:`reinit_jax.masks.smallest_magnitude` and :func:`reinit_jax.masks.random_fraction` rank each
tensor's entries by an int32 key (|θ|'s float bits, or random bits) and select the round(p·n)
smallest, ties by position. ``select_impl`` chooses how (bench/README.md, "Events per backend"):

* ``'bracket'``: a sampled bracket, a few counting passes and one small ``top_k`` per tensor.
  XLA:CPU sorts slowly, and a handful of passes over memory is what a CPU does fast.
* ``'sort'``: one stable sort of (key, position) pairs per tensor, the tensors of <= 1,024 entries
  padded into one sort. Accelerators sort fast and pay for every small kernel that a loop of
  counting passes launches. One tensor per sort is what XLA:GPU hands to CUB's device-wide radix
  sort (its sort rewriter takes 32-bit keys at batch 1 above 22,000 entries, and batches of 2-26
  large rows only with many rows; xla/service/gpu/transforms/sort_rewriter.cc).
* ``'sort_batched'``: the same with tensors of equal size stacked into one sort (fewer, larger
  calls; XLA's own sort kernel on a GPU). Which of the two is faster is for bench/gpu_all.sh.
* ``'approx'`` (opt-in, never chosen by 'auto'): ``lax.approx_min_k`` with recall target
  :data:`APPROX_RECALL` = 0.95 on the tensors above 1,024 entries: exactly round(p·n) entries, of
  which on average 95% are among the true smallest (the others lie near the cut; ties in any
  order). Only TPUs run an approximate algorithm; other backends fall back to an exact sort.
* ``'auto'`` (default): the backend's choice (``reinit_jax.backends.choices``): 'bracket' on the
  CPU backend, else 'sort'.

'bracket' finishes with a float ``top_k`` (the fast one on XLA:CPU) over the keys' float reading:
exact where subnormal floats are kept (CPU, GPU); on a TPU, which flushes them to zero, use 'sort'.

The exact paths select the entries a stable argsort ranks first (tests/test_masks.py), so they give
identical masks for the same inputs and keys. The choice is read when a function is
traced: the argument ``select_impl=`` (the methods pass ``methods.Context.select_impl``, which the
engine sets from ``reinit.select_impl``), else the environment variable ``REINIT_SELECT_IMPL``, else
'auto'. No process-wide setting: a jitted function keeps the choice it was traced with.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax import backends


SELECT_IMPLS = ("auto", "bracket", "sort", "sort_batched", "approx")
APPROX_RECALL = 0.95  # lax.approx_min_k's recall target on the 'approx' path
ENV_SELECT_IMPL = "REINIT_SELECT_IMPL"


def _check_impl(impl, name="select_impl"):
  if impl not in SELECT_IMPLS:
    raise ValueError(f"{name} must be one of {SELECT_IMPLS}, got {impl!r}")


def resolve_select_impl(select_impl: str | None = None) -> str:
  """The implementation to trace: the argument, else $REINIT_SELECT_IMPL, else 'auto'.

  'auto' is 'bracket' on the CPU backend and 'sort' on every other (see the module docstring).
  """
  impl, name = select_impl, "select_impl"
  if impl is None and os.environ.get(ENV_SELECT_IMPL):
    impl, name = os.environ[ENV_SELECT_IMPL], ENV_SELECT_IMPL
  impl = "auto" if impl is None else impl
  _check_impl(impl, name)
  if impl == "auto":
    return backends.choices().select_impl
  return impl


def exact_k(n: int, fraction: float) -> int:
  """round(p·n): how many of a tensor's n entries a fraction p selects."""
  return int(round(float(fraction) * n))


# Selection keys are int32 >= 0 whose float32 reading is a non-negative float (at most +inf): the
# order of the ints is the order of the floats, so one top_k on the floats can finish a search.
_MAX_KEY = 0x7F800000  # +inf's bits
_CAP = 1024  # a band of at most this many keys is finished by one top_k
_BRACKET_MIN = 1 << 14  # below this, the sample costs more than the passes it saves
_SAMPLE = 4096
_PROBES = 6  # interpolation probes before falling back to halving


def float_keys(scores: jax.Array) -> jax.Array:
  """(n,) int32 selection keys of any-shaped float ``scores`` (>= 0 expected; NaN ranks as +inf)."""
  f = scores.reshape(-1).astype(jnp.float32)
  # On the bits, not with float arithmetic: XLA:CPU flushes subnormals to zero in jnp.maximum,
  # which tied every subnormal |θ| with 0 (ranked by position, not value). Negative floats and
  # −0.0 have the sign bit set (int32 < 0) and read as 0.
  bits = jax.lax.bitcast_convert_type(f, jnp.int32)
  return jnp.where(jnp.isnan(f), jnp.int32(_MAX_KEY), jnp.maximum(bits, 0))


def _count_le(keys, v):
  return jnp.sum(keys <= v, dtype=jnp.int32)


def _bracket(keys: jax.Array, k: int):
  """(lo, hi, count(keys < lo), count(keys <= hi)) around the k-th smallest key, from a sample.

  The k-th smallest of n lies within ±4σ of the sample's (k·m/n)-th (binomial σ = √(m·q·(1−q))),
  so two exact counts usually confirm a band of ≈ 5% of the entries. The sample is a fixed
  multiplicative-hash spread of positions (a plain stride would read one column of a matrix). When
  the band misses, the side of it that holds the answer is the bracket instead.
  """
  n, m = keys.size, _SAMPLE
  pos = (np.arange(m, dtype=np.int64) * 2654435761) % n
  sample = jnp.sort(keys[jnp.asarray(pos, jnp.int32)])
  q = k / n
  margin = int(4 * np.sqrt(m * q * (1 - q))) + 2
  a, b = int(q * m) - margin, int(q * m) + margin
  lo = sample[a] if a >= 0 else jnp.int32(0)
  hi = sample[b] if b < m else jnp.int32(_MAX_KEY)
  c1, c2 = jnp.sum(keys < lo, dtype=jnp.int32), _count_le(keys, hi)
  below, above = c1 >= k, c2 < k
  pick = lambda b_, a_, mid: jnp.where(below, b_, jnp.where(above, a_, mid))
  return (pick(0, hi + 1, lo), pick(lo - 1, _MAX_KEY, hi), pick(0, c2, c1), pick(c1, n, c2))


def _narrow(keys, k, lo, hi, c_lo, c_hi):
  """Shrink [lo, hi] (invariant c_lo = #keys < lo < k <= c_hi = #keys <= hi) to <= _CAP keys.

  Each pass counts at one probe: the linear interpolation of the count between lo and hi, moved
  3·√B (the empirical CDF's typical wobble over a band of B keys) towards the farther end, so each
  pass cuts the far side off just beyond the answer. On scnn's 2.1 M-entry fc1 kernel (|θ| or
  random keys, p = 0.2 or 0.5) three passes suffice, e.g. 114 k → 26 k → 1.7 k → 551 keys. After
  _PROBES passes it halves instead, so adversarial data costs at most 31 more passes. Under vmap
  the loop runs the most passes any member needs.
  """
  def cond(s):
    lo, hi, c_lo, c_hi, _ = s
    return (c_hi - c_lo > _CAP) & (lo < hi)

  def body(s):
    lo, hi, c_lo, c_hi, i = s
    width = (hi - lo).astype(jnp.float32)
    band = (c_hi - c_lo).astype(jnp.float32)
    est = (k - c_lo - 0.5).astype(jnp.float32) / band * width
    delta = jnp.maximum(3.0 * width / jnp.sqrt(band), 1.0)
    probe = jnp.where(est < width - est, est + delta, est - delta)
    probe = jnp.where(i < _PROBES, probe, 0.5 * width)
    g = lo + jnp.clip(jnp.floor(jnp.clip(probe, 0.0, width)).astype(jnp.int32), 0, hi - lo - 1)
    c = _count_le(keys, g)
    ok = c >= k
    return (jnp.where(ok, lo, g + 1), jnp.where(ok, g, hi), jnp.where(ok, c_lo, c),
            jnp.where(ok, c, c_hi), i + 1)

  return jax.lax.while_loop(cond, body, (lo, hi, c_lo, c_hi, jnp.int32(0)))[:3]


def lowest_k(keys: jax.Array, k: int, shape) -> jax.Array:
  """Boolean mask of ``shape``: exactly the ``k`` smallest of the flat int32 ``keys``, ties by position.

  Equals ranking by a stable argsort (tests/test_masks.py), but a full sort per tensor made an event
  cost several train steps, and 32 bisection passes plus a cumsum still cost more than a step at
  batch 16. Instead: a sampled bracket, a few interpolation passes, and one top_k on the ≤ _CAP keys
  left give the k-th smallest key t; every key below t is in, and of those equal to t the first by
  position (a bisection over positions, which runs only when the ties do not all fit).
  """
  n = keys.size
  if k <= 0:
    return jnp.zeros(shape, bool)
  if k >= n:
    return jnp.ones(shape, bool)
  if n <= _CAP:  # small (biases, norms): one stable sort compiles to less than the search below
    ranks = jnp.zeros((n,), jnp.int32).at[jnp.argsort(keys, stable=True)].set(
        jnp.arange(n, dtype=jnp.int32))
    return (ranks < k).reshape(shape)
  lo, hi, c_lo, c_hi = jnp.int32(0), jnp.int32(_MAX_KEY), jnp.int32(0), jnp.int32(n)
  if n >= _BRACKET_MIN:
    lo, hi, c_lo, c_hi = _bracket(keys, k)
  lo, hi, c_lo = _narrow(keys, k, lo, hi, c_lo, c_hi)
  in_band = (keys >= lo) & (keys <= hi)
  band = jax.lax.bitcast_convert_type(jnp.where(in_band, keys, _MAX_KEY), jnp.float32)
  smallest = -jax.lax.top_k(-band, _CAP)[0]  # ascending
  kth = jax.lax.bitcast_convert_type(smallest[jnp.clip(k - c_lo - 1, 0, _CAP - 1)], jnp.int32)
  t = jnp.where(lo == hi, lo, kth)  # a band wider than _CAP is left only when lo == hi
  start = jnp.where(_count_le(keys, t) == k, n - 1, 0)

  def first(p):  # keys below t, and those equal to t at positions <= p
    # The iota is built where it is used, so it fuses instead of being a 2 M-entry loop operand.
    return (keys < t) | ((keys == t) & (jax.lax.iota(jnp.int32, n) <= p))

  def body(lo_hi):  # the smallest p with #first(p) >= k
    lo, hi = lo_hi
    mid = lo + (hi - lo) // 2
    ok = jnp.sum(first(mid), dtype=jnp.int32) >= k
    return jnp.where(ok, lo, mid + 1), jnp.where(ok, mid, hi)

  last = jax.lax.while_loop(lambda s: s[0] < s[1], body, (start, jnp.int32(n - 1)))[0]
  return first(last).reshape(shape)


def _sorted_rows(keys: jax.Array, ks) -> jax.Array:
  """(m, w) bool: the ``ks[i]`` smallest of row i's int32 ``keys``, ties by position (static ks).

  One stable sort of (key, position) pairs per call. The ks[i]-th pair, (t, p), is the cut: every
  key below t is in, and of the keys equal to t those at positions <= p, i.e. a stable argsort's
  first ks[i]. Rows padded with _MAX_KEY after their n real keys keep k <= n and never select a pad.
  """
  m, w = keys.shape
  ks = np.asarray(ks, np.int64)
  pos = jax.lax.broadcasted_iota(jnp.int32, (m, w), 1)
  sorted_keys, perm = jax.lax.sort((keys, pos), dimension=1, is_stable=True, num_keys=1)
  j = np.clip(ks - 1, 0, w - 1)
  if (j == j[0]).all():  # a slice, not a gather, for a group of equal sizes
    t, p = sorted_keys[:, j[0]:j[0] + 1], perm[:, j[0]:j[0] + 1]
  else:
    cut = jnp.asarray(j, jnp.int32)[:, None]
    t, p = jnp.take_along_axis(sorted_keys, cut, 1), jnp.take_along_axis(perm, cut, 1)
  return ((keys < t) | ((keys == t) & (pos <= p))) & jnp.asarray(ks > 0)[:, None]


def _approx_rows(keys: jax.Array, k: int) -> jax.Array:
  """(m, n) bool: exactly k entries per row, the k smallest at recall APPROX_RECALL (TPU only)."""
  m, n = keys.shape
  if k <= 0 or k >= n:
    return jnp.full((m, n), k > 0)
  f = jax.lax.bitcast_convert_type(keys, jnp.float32)
  _, idx = jax.lax.approx_min_k(f, k, recall_target=APPROX_RECALL)
  return jnp.zeros((m, n), bool).at[jnp.arange(m)[:, None], idx].set(True)


def select_grouped(leaves, fraction, impl, rows_of):
  """Masks of ``leaves`` by a sorting path: 'sort', 'sort_batched' or 'approx' (batched as well).

  ``rows_of(n, idx) -> (len(idx), n) int32``: the keys of the leaves ``idx`` (all of n entries).
  Tensors of <= _CAP entries (biases, norm scales: many sizes, little work) share one padded sort.
  """
  groups = {}
  for i, x in enumerate(leaves):
    n = int(np.size(x))
    if n:  # empty tensors: nothing to select (all-False below)
      groups.setdefault(n if impl != "sort" or n <= _CAP else (n, i), (n, []))[1].append(i)
  out = [None] * len(leaves)
  small = [(n, idx) for n, idx in groups.values() if n <= _CAP]
  for n, idx in groups.values():
    if n > _CAP:
      k = exact_k(n, fraction)
      keys = rows_of(n, idx)
      sel = _approx_rows(keys, k) if impl == "approx" else _sorted_rows(keys, [k] * len(idx))
      for r, i in enumerate(idx):
        out[i] = sel[r]
  if small:
    w = max(n for n, _ in small)
    keys = jnp.concatenate([jnp.pad(rows_of(n, idx), ((0, 0), (0, w - n)), constant_values=_MAX_KEY)
                            for n, idx in small])
    sel = _sorted_rows(keys, [exact_k(n, fraction) for n, idx in small for _ in idx])
    rows = [(n, i) for n, idx in small for i in idx]
    for r, (n, i) in enumerate(rows):
      out[i] = sel[r, :n]
  return [jnp.zeros(jnp.shape(x), bool) if o is None else o.reshape(jnp.shape(x))
          for o, x in zip(out, leaves)]
