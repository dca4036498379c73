"""Pytree masks: which parameter entries a re-initialization touches (SPEC §1).

A mask has the tree structure of ``params``; each leaf is either a boolean array of the leaf's shape
(element-wise selection) or a boolean scalar (the whole tensor). Every method of SPEC §1 is a blend
of θ and θ_init under such a mask, so masks are the unit of composition: build one here, hand it to
:func:`reinit_jax.methods.blend` or :func:`reinit_jax.methods.shrink_perturb`.

Paths are the '/'-joined dict keys of a leaf, e.g. ``'block1/conv/kernel'``; the block declaration
of a model (``Model.blocks``, ``Model.head``) names top-level keys, i.e. the first path component.
All functions are pure and jit-able; block indices may be traced integers.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def _key_str(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def path_of(key_path) -> str:
  """'/'-joined path string of a ``jax.tree_util`` key path."""
  return "/".join(_key_str(k) for k in key_path)


def paths(params: PyTree) -> PyTree:
  """A tree of the structure of ``params`` holding each leaf's path string."""
  return jax.tree_util.tree_map_with_path(lambda kp, _: path_of(kp), params)


def _check_fraction(fraction, name="fraction"):
  if isinstance(fraction, (bool, np.bool_)) or not isinstance(fraction, (int, float, np.floating)):
    raise ValueError(f"{name} must be a number in [0, 1], got {fraction!r}")
  if not 0.0 <= float(fraction) <= 1.0:
    raise ValueError(f"{name} must be in [0, 1], got {fraction!r}")


def check_structure(mask: PyTree, params: PyTree, name: str = "mask") -> None:
  """Raises a one-line ValueError when ``mask`` does not have the tree structure of ``params``."""
  ms, ps = jax.tree.structure(mask), jax.tree.structure(params)
  if ms != ps:
    mp = sorted(path_of(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(mask)[0])
    pp = sorted(path_of(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(params)[0])
    missing, extra = sorted(set(pp) - set(mp))[:3], sorted(set(mp) - set(pp))[:3]
    raise ValueError(f"{name} must have the structure of params; missing paths {missing}, "
                     f"unexpected paths {extra} ({len(mp)} leaves vs {len(pp)})")


def check_shapes(other: PyTree, params: PyTree, name: str = "fresh") -> None:
  """Raises a one-line ValueError unless ``other`` has ``params``' structure and leaf shapes."""
  check_structure(other, params, name)
  for (kp, a), b in zip(jax.tree_util.tree_flatten_with_path(other)[0], jax.tree.leaves(params)):
    if jnp.shape(a) != jnp.shape(b):
      raise ValueError(f"{name} leaf {path_of(kp)!r} has shape {jnp.shape(a)}, params has "
                       f"{jnp.shape(b)}")


def all_true(params: PyTree) -> PyTree:
  """The mask selecting every parameter (boolean scalar leaves)."""
  return jax.tree.map(lambda _: jnp.asarray(True), params)


def all_false(params: PyTree) -> PyTree:
  """The empty mask (boolean scalar leaves)."""
  return jax.tree.map(lambda _: jnp.asarray(False), params)


def by_path(params: PyTree, pattern: str) -> PyTree:
  """Selects whole tensors whose '/'-joined path matches regex ``pattern`` (``re.search``).

  Example: ``by_path(params, r'^head/')`` or ``by_path(params, r'kernel$')``.
  """
  try:
    rx = re.compile(pattern)
  except (re.error, TypeError) as e:
    raise ValueError(f"pattern must be a valid regular expression, got {pattern!r}: {e}") from None
  return jax.tree_util.tree_map_with_path(
      lambda kp, _: jnp.asarray(bool(rx.search(path_of(kp)))), params)


def _exact_k(n: int, fraction: float) -> int:
  return int(round(float(fraction) * n))


# Selection keys are int32 >= 0 whose float32 reading is a non-negative float (at most +inf): the
# order of the ints is the order of the floats, so one top_k on the floats can finish a search.
_MAX_KEY = 0x7F800000  # +inf's bits
_CAP = 1024  # a band of at most this many keys is finished by one top_k
_BRACKET_MIN = 1 << 14  # below this, the sample costs more than the passes it saves
_SAMPLE = 4096
_PROBES = 6  # interpolation probes before falling back to halving


def _float_keys(scores: jax.Array) -> jax.Array:
  f = scores.reshape(-1).astype(jnp.float32)
  f = jnp.where(jnp.isnan(f), jnp.inf, jnp.maximum(f, 0.0))
  return jax.lax.bitcast_convert_type(f, jnp.int32)


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


def _lowest_k(keys: jax.Array, k: int, shape) -> jax.Array:
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


def random_fraction(key: jax.Array, params: PyTree, fraction: float) -> PyTree:
  """A uniformly random subset of exactly round(p·n) entries of every tensor ([LW] WELSR/WELS).

  Shapes: each leaf's mask has the leaf's shape. Each leaf gets its own key (split from ``key``).
  """
  _check_fraction(fraction)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, max(len(leaves), 1))
  # 30 random bits as the key: the same order as jax.random.uniform's 23 (its top bits), with ties
  # at the cut 128× rarer, so the search for the first tied positions almost never runs.
  out = [_lowest_k((jax.random.bits(k, (np.size(x),), jnp.uint32) >> 2).astype(jnp.int32),
                   _exact_k(np.size(x), fraction), jnp.shape(x))
         for k, x in zip(keys, leaves)]
  return jax.tree.unflatten(treedef, out)


def smallest_magnitude(params: PyTree, fraction: float) -> PyTree:
  """The round(p·n) entries of every tensor smallest in |θ| ([LW] DSD). Ties broken by position."""
  _check_fraction(fraction)
  return jax.tree.map(
      lambda x: _lowest_k(_float_keys(jnp.abs(x)), _exact_k(np.size(x), fraction), jnp.shape(x)),
      params)


def _block_index_tree(params: PyTree, blocks: Sequence) -> PyTree:
  """Static per-leaf block index: i (1-based) for a leaf in block i, K+1 for the rest (head)."""
  owner = {}
  for i, block in enumerate(blocks, start=1):
    names = block.names if hasattr(block, "names") else tuple(block)
    for n in names:
      owner[n] = i
  K = len(blocks)

  def index(kp, _):
    return owner.get(_key_str(kp[0]), K + 1)

  return jax.tree_util.tree_map_with_path(index, params)


def _check_k(k, K):
  if isinstance(k, (int, np.integer)) and not 0 <= int(k) <= K:
    raise ValueError(f"block index k must be in [0, {K}], got {k}")


def up_to_block(params: PyTree, blocks: Sequence, k) -> PyTree:
  """Selects the parameters of blocks 1..k (k may be a traced integer; k = 0 selects nothing)."""
  _check_k(k, len(blocks))
  return jax.tree.map(lambda i: jnp.asarray(i) <= k, _block_index_tree(params, blocks))


def after_block(params: PyTree, blocks: Sequence, k) -> PyTree:
  """Selects everything after block k: blocks k+1..K and the head (SPEC §1, layer-wise step 2)."""
  _check_k(k, len(blocks))
  return jax.tree.map(lambda i: jnp.asarray(i) > k, _block_index_tree(params, blocks))


def block(params: PyTree, blocks: Sequence, k) -> PyTree:
  """Selects the parameters of block k alone."""
  _check_k(k, len(blocks))
  return jax.tree.map(lambda i: jnp.asarray(i) == k, _block_index_tree(params, blocks))


def head(params: PyTree, head_names: Sequence[str]) -> PyTree:
  """Selects the head: the top-level names of ``Model.head`` ([LW] 'FC')."""
  names = set(head_names)
  if not names:
    raise ValueError("head_names must name at least one top-level module (the model's head)")
  return jax.tree_util.tree_map_with_path(
      lambda kp, _: jnp.asarray(_key_str(kp[0]) in names), params)


def and_(a: PyTree, b: PyTree) -> PyTree:
  """Element-wise conjunction of two masks of the same structure."""
  check_structure(b, a, "second mask")
  return jax.tree.map(jnp.logical_and, a, b)


def or_(a: PyTree, b: PyTree) -> PyTree:
  """Element-wise disjunction of two masks of the same structure."""
  check_structure(b, a, "second mask")
  return jax.tree.map(jnp.logical_or, a, b)


def not_(a: PyTree) -> PyTree:
  """Element-wise negation of a mask."""
  return jax.tree.map(jnp.logical_not, a)


def count(mask: PyTree, params: PyTree) -> jax.Array:
  """Number of parameter entries a mask selects (scalar leaves count their whole tensor)."""
  check_structure(mask, params)
  return sum(jnp.sum(jnp.broadcast_to(m, jnp.shape(p))) for m, p in
             zip(jax.tree.leaves(mask), jax.tree.leaves(params)))
