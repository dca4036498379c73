"""Exact k-smallest selection per tensor, one implementation per backend ([LW] DSD, WELSR, WELS).

:func:`reinit_jax.masks.smallest_magnitude` and :func:`reinit_jax.masks.random_fraction` rank each
tensor's entries by an int32 key (|θ|'s float bits, or random bits) and select the round(p·n)
smallest, ties by position. ``select_impl`` chooses how (bench/README.md, "Events per backend"):

* ``'bracket'``: per tensor, a few passes that each count the keys at four probes (a sampled
  bracket, then interpolation), one pass counting the last band's keys per row, small ``top_k``\ s
  over the rows that hold them, and the pass that writes the mask. XLA:CPU sorts slowly, and a
  handful of passes over memory is what a CPU does fast.
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
# order of the ints is the order of the floats, so a float top_k can rank a handful of them.
_MAX_KEY = 0x7F800000  # +inf's bits
_CAP = 1024  # tensors of at most this many entries take one stable argsort
_BRACKET_MIN = 1 << 16  # below this, the sample costs more than the passes it saves
_SAMPLE = 4096
_PROBES = 4  # keys counted at this many probes per pass: one variadic reduce
_BAND = 256  # a band of at most this many keys is finished from its rows (_cut_in_band)
_ROW = 32  # row width of the finish: a band's keys lie in at most _BAND rows of _ROW entries
_INTERPOLATED = 4  # interpolation rounds before the probes are spread evenly
# Where the probes go, in the band's own spread: ±σ of the sample's ranks (the bracket), ±√B keys of
# a band of B (the interpolation rounds). Dense in the middle, where the k-th key most likely lies.
_SAMPLE_SPREAD = np.array([-3.0, -0.8, 0.8, 3.0])
_BAND_SPREAD = np.array([-2.0, -0.5, 0.5, 2.0])
assert len(_SAMPLE_SPREAD) == len(_BAND_SPREAD) == _PROBES


def float_keys(scores: jax.Array) -> jax.Array:
  """(n,) int32 selection keys of any-shaped float ``scores`` (>= 0 expected; NaN ranks as +inf)."""
  f = scores.reshape(-1).astype(jnp.float32)
  # On the bits, not with float arithmetic: XLA:CPU flushes subnormals to zero in jnp.maximum,
  # which tied every subnormal |θ| with 0 (ranked by position, not value). Negative floats and
  # −0.0 have the sign bit set (int32 < 0) and read as 0.
  bits = jax.lax.bitcast_convert_type(f, jnp.int32)
  return jnp.where(jnp.isnan(f), jnp.int32(_MAX_KEY), jnp.maximum(bits, 0))


def _count_le_each(keys, probes):
  """(P,) int32: how many keys are <= each of the P probes, in one pass over ``keys``.

  One variadic reduce: XLA:CPU runs it as one loop, and 2-4 counts take less time than a lone
  ``jnp.sum(keys <= v)`` (0.44 against 0.6-0.9 ms over scnn's 2.1 M-entry fc1 kernel; 8: 0.7 ms).
  """
  hits = tuple((keys <= probes[j]).astype(jnp.int32) for j in range(probes.shape[0]))
  add = lambda a, b: tuple(x + y for x, y in zip(a, b))
  return jnp.stack(jax.lax.reduce(hits, (jnp.int32(0),) * len(hits), add, (0,)))


def _tighten(band, probes, c, k):
  """The band (lo, hi, c_lo, c_hi) around the k-th key, after counts ``c`` (#keys <= probe).

  Invariant: c_lo = #keys < lo, c_hi = #keys <= hi and c_lo < k <= c_hi, i.e. the k-th smallest
  key lies in [lo, hi]. Counts grow with the probe, so the highest probe holding fewer than k keys
  and the lowest holding at least k are the new ends.
  """
  lo, hi, c_lo, c_hi = band
  ok = c >= k
  return (jnp.maximum(lo, jnp.max(jnp.where(ok, lo, probes + 1))),
          jnp.minimum(hi, jnp.min(jnp.where(ok, probes, hi))),
          jnp.maximum(c_lo, jnp.max(jnp.where(ok, c_lo, c))),
          jnp.minimum(c_hi, jnp.min(jnp.where(ok, c, c_hi))))


def _sample_probes(keys: jax.Array, k: int) -> jax.Array:
  """_PROBES keys of a sample around the k-th smallest: the first pass's probes (a bracket).

  The k-th smallest of n lies near the sample's (k·m/n)-th (binomial σ = √(m·q·(1−q)) ranks), so
  the ranks at ±0.8σ and ±3σ usually leave a band of 1.6-2.2σ ranks (1-1.4% of the entries, 20-30 k
  keys of scnn's fc1 kernel at p = 0.2). The sample is a fixed multiplicative-hash spread of
  positions (a plain stride would read one column of a matrix). A band that misses is still a
  band: the side of the probes that holds the answer.
  """
  n, m = keys.size, _SAMPLE
  pos = (np.arange(m, dtype=np.int64) * 2654435761) % n
  sample = jnp.sort(keys[jnp.asarray(pos, jnp.int32)])
  q = k / n
  ranks = np.clip(np.round(q * m + _SAMPLE_SPREAD * (np.sqrt(m * q * (1 - q)) + 1)), 0, m - 1)
  return sample[jnp.asarray(ranks, jnp.int32)]


def _probes_in(band, k, round_):
  """_PROBES keys in [lo, hi − 1]: around the interpolated k-th key, or evenly spread.

  Interpolating the count linearly over the key range puts the k-th key within about √B/2 of its
  estimate (the empirical CDF's wobble over a band of B keys), so the probes at ±0.5 and ±2 √B cut
  a band to √B-1.5√B keys. After _INTERPOLATED rounds (data that interpolation misjudges) the probes
  spread evenly: each pass then divides the key range by _PROBES + 1, at most 14 more passes.
  """
  lo, hi, c_lo, c_hi = band
  width = (hi - lo).astype(jnp.float32)
  keys_in = (c_hi - c_lo).astype(jnp.float32)
  estimate = (k - c_lo - 0.5).astype(jnp.float32) / keys_in * (width + 1.0)
  around = estimate + jnp.asarray(_BAND_SPREAD, jnp.float32) * (width + 1.0) / jnp.sqrt(keys_in)
  even = width * jnp.arange(1, _PROBES + 1, dtype=jnp.float32) / (_PROBES + 1)
  offsets = jnp.where(round_ < _INTERPOLATED, around, even)
  return lo + jnp.clip(jnp.floor(jnp.clip(offsets, 0.0, width)).astype(jnp.int32), 0, hi - lo - 1)


def _narrow(keys, k, first_probes=None):
  """A band around the k-th smallest key holding <= _BAND keys or one key value (see _tighten).

  Each pass counts the keys at _PROBES probes: the sample's (``first_probes``, if given), then
  interpolated ones. On scnn's 2.1 M-entry fc1 kernel (|θ| or random keys, p = 0.2 or 0.5) two
  passes usually leave 10-250 keys. Under vmap the loop runs the most passes any member needs.
  """
  n = keys.size
  whole = (jnp.int32(0), jnp.int32(_MAX_KEY), jnp.int32(0), jnp.int32(n))
  sampled = first_probes is not None

  def cond(state):
    (lo, hi, c_lo, c_hi), round_ = state
    return ((c_hi - c_lo > _BAND) & (lo < hi)) | (sampled & (round_ == 0))

  def body(state):
    band, round_ = state
    probes = _probes_in(band, k, round_ - sampled)
    if sampled:
      probes = jnp.where(round_ == 0, first_probes, probes)
    return _tighten(band, probes, _count_le_each(keys, probes), k), round_ + 1

  return jax.lax.while_loop(cond, body, (whole, jnp.int32(0)))[0]


def _cut_in_band(keys, r, lo, row_counts):
  """(t, p) of a band of <= _BAND keys from lo up: its r-th smallest (key, position).

  Its keys lie in at most _BAND rows; those rows, gathered in position order, hold _BAND·_ROW keys,
  and a float top_k of them ranks the band (equal keys: the lower index, i.e. position, first).
  Keys above the band rank after it, so only those below it (and the padding) are left out. The
  key read as a float is shifted down by one when lo > 0, so that no band key reads as +inf and
  every key left out (read as +inf) ranks after the band.
  """
  n, rows = keys.size, row_counts.shape[0]
  # The rows holding the band, ascending: top_k ranks equal values by index, so the 1.0s come first.
  picked = jax.lax.top_k((row_counts > 0).astype(jnp.float32), min(_BAND, rows))[1]
  pos = (picked[:, None] * _ROW + jnp.arange(_ROW, dtype=jnp.int32)).reshape(-1)
  key = keys[jnp.minimum(pos, n - 1)]
  shifted = jnp.where((key >= lo) & (pos < n), key - (lo > 0).astype(jnp.int32), _MAX_KEY)
  # −float by flipping the sign bit: no float arithmetic, so subnormal keys stay apart
  negated = jax.lax.bitcast_convert_type(shifted | jnp.int32(-2**31), jnp.float32)
  j = jax.lax.top_k(negated, _BAND)[1][r - 1]
  return key[j], pos[j]


def _cut_in_ties(keys, r, t, row_counts):
  """(t, p): p the position of the r-th key equal to t (a band of any number of copies of t)."""
  n = keys.size
  before = jnp.cumsum(row_counts) - row_counts  # keys equal to t in the rows before each row
  row = jnp.sum(before < r, dtype=jnp.int32) - 1  # the last row with fewer than r before it
  pos = row * _ROW + jnp.arange(_ROW, dtype=jnp.int32)
  hit = (keys[jnp.minimum(pos, n - 1)] == t) & (pos < n)
  return t, row * _ROW + jnp.sum(jnp.cumsum(hit) < r - before[row], dtype=jnp.int32)


def _mask_from_band(keys, k, band):
  """The mask of the k smallest keys from a band of <= _BAND keys or of one key value (_narrow).

  One pass counts the band's keys per row of _ROW; the rows give the cut: the k-th smallest key t
  and the position p of the last key equal to t that is in; a last pass writes the mask. Both run
  inside a ``lax.cond`` (the band of one value may hold any number of copies: its own branch),
  whose operand is the keys as computed once: outside a loop or branch, XLA:CPU would fuse their
  producer (random_subset's 20-round hash) into each of the two passes and recompute it in each.
  """
  lo, hi, c_lo, _ = band
  n = keys.size
  rows = -(-n // _ROW)

  def mask_by(cut):
    def branch(keys, lo, hi, r):
      in_band = jnp.pad((keys >= lo) & (keys <= hi), (0, rows * _ROW - n)).reshape(rows, _ROW)
      t, p = cut(keys, r, lo, jnp.sum(in_band, axis=1, dtype=jnp.int32))
      # The iota is built where it is used, so it fuses into the mask's one pass.
      return (keys < t) | ((keys == t) & (jax.lax.iota(jnp.int32, n) <= p))
    return branch

  return jax.lax.cond(lo == hi, mask_by(_cut_in_ties), mask_by(_cut_in_band),
                      keys, lo, hi, k - c_lo)


def lowest_k(keys: jax.Array, k: int, shape) -> jax.Array:
  """Boolean mask of ``shape``: exactly the ``k`` smallest of the flat int32 ``keys``, ties by position.

  Equals ranking by a stable argsort (tests/test_masks.py), but a full sort per tensor made an event
  cost several train steps on XLA:CPU. Instead, passes that each count the keys at _PROBES probes
  (a sampled bracket, then interpolation) narrow a band around the k-th smallest key t to at most
  _BAND keys or to t alone; one pass more counts the band's keys per row, and the few rows holding
  them give t and, of the keys equal to t, the position p of the last one in. On scnn's fc1 kernel
  (2.1 M entries): usually two counting passes, the row pass and the pass writing the mask, 2 ms
  (bench/README.md, "Event time ÷ step time").
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
  band = _narrow(keys, k, _sample_probes(keys, k) if n >= _BRACKET_MIN else None)
  return _mask_from_band(keys, k, band).reshape(shape)


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
