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


def _lowest_k(scores: jax.Array, k: int) -> jax.Array:
  """Boolean mask of exactly the ``k`` lowest entries of non-negative ``scores``, ties by position.

  Equals ranking by a stable argsort, but a full sort per tensor made an event cost several train
  steps; instead bisect on the float's bits (monotone for non-negative floats) for the k-th
  smallest value in 31 counting passes, then break ties at that value by position with a cumsum.
  """
  flat = scores.reshape(-1).astype(jnp.float32)
  if k <= 0:
    return jnp.zeros(scores.shape, bool)
  if k >= flat.size:
    return jnp.ones(scores.shape, bool)
  bits = jax.lax.bitcast_convert_type(jnp.maximum(flat, 0.0), jnp.int32)

  def body(_, lo_hi):  # invariant: count(bits <= hi) >= k > count(bits <= lo - 1)
    lo, hi = lo_hi
    mid = lo + (hi - lo) // 2
    enough = jnp.sum(bits <= mid) >= k
    return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

  lo, _ = jax.lax.fori_loop(0, 32, body, (jnp.int32(0), jnp.int32(2**31 - 1)))
  less, equal = bits < lo, bits == lo
  need = k - jnp.sum(less)
  return (less | (equal & (jnp.cumsum(equal) <= need))).reshape(scores.shape)


def random_fraction(key: jax.Array, params: PyTree, fraction: float) -> PyTree:
  """A uniformly random subset of exactly round(p·n) entries of every tensor ([LW] WELSR/WELS).

  Shapes: each leaf's mask has the leaf's shape. Each leaf gets its own key (split from ``key``).
  """
  _check_fraction(fraction)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, max(len(leaves), 1))
  out = [_lowest_k(jax.random.uniform(k, jnp.shape(x)), _exact_k(jnp.size(x), fraction))
         for k, x in zip(keys, leaves)]
  return jax.tree.unflatten(treedef, out)


def smallest_magnitude(params: PyTree, fraction: float) -> PyTree:
  """The round(p·n) entries of every tensor smallest in |θ| ([LW] DSD). Ties broken by position."""
  _check_fraction(fraction)
  return jax.tree.map(lambda x: _lowest_k(jnp.abs(x), _exact_k(jnp.size(x), fraction)), params)


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
