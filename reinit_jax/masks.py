"""Pytree masks: which parameter entries a re-initialization touches ([LW] §3, [AA] §4, [Z] §3).

A mask has the tree structure of ``params``; each leaf is either a boolean array of the leaf's shape
(element-wise selection) or a boolean scalar (the whole tensor). Every method of the papers
(docs/methods.md, "The registry") is a blend of θ and θ_init under such a mask,
so masks are the unit of composition: build one here, hand it to :func:`reinit_jax.methods.blend`
or :func:`reinit_jax.methods.shrink_perturb`.

Paths are the '/'-joined dict keys of a leaf, e.g. ``'block1/conv/kernel'``; the block declaration
of a model (``Model.blocks``, ``Model.head``) names top-level keys, i.e. the first path component.
All functions are pure and jit-able; block indices may be traced integers.

The exact k-smallest selection of :func:`smallest_magnitude` and :func:`random_fraction` has one
implementation per backend, chosen by ``select_impl`` ('auto' | 'bracket' | 'sort' | 'sort_batched'
| 'approx'; see :mod:`reinit_jax.selection`): an argument, else $REINIT_SELECT_IMPL, else 'auto'.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax import backends, selection
from reinit_jax.selection import (APPROX_RECALL, ENV_SELECT_IMPL, SELECT_IMPLS,  # noqa: F401
                                  resolve_select_impl)

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


def random_fraction(key: jax.Array, params: PyTree, fraction: float,
                    select_impl: str | None = None) -> PyTree:
  """A uniformly random subset of exactly round(p·n) entries of every tensor ([LW] WELSR/WELS).

  Shapes: each leaf's mask has the leaf's shape. Each leaf gets its own key (split from ``key``) and
  the same draw on every path (the sorting paths draw a group's leaves under one vmap, which gives
  each key's own bits), so the exact paths return identical masks. ``select_impl``: see
  :mod:`reinit_jax.selection`.
  """
  _check_fraction(fraction)
  impl = resolve_select_impl(select_impl)
  leaves, treedef = jax.tree.flatten(params)
  if str(jax.random.key_impl(key)) == "threefry2x32":  # a plain threefry key (the engine's come
    key = backends.draw_key(key)  # through draw_key): the same bits, drawn ~10x faster on the CPU
  keys = jax.random.split(key, max(len(leaves), 1))

  # 30 random bits as the key: the same order as jax.random.uniform's 23 (its top bits), with ties
  # at the cut 128× rarer, so the search for the first tied positions almost never runs.
  def draw(k, n):
    return (jax.random.bits(k, (n,), jnp.uint32) >> 2).astype(jnp.int32)

  if impl == "bracket":
    out = [selection.lowest_k(draw(k, np.size(x)), selection.exact_k(np.size(x), fraction), jnp.shape(x))
           for k, x in zip(keys, leaves)]
  else:
    out = selection.select_grouped(leaves, fraction, impl, lambda n, idx: jax.vmap(lambda k: draw(k, n))(
        keys[np.asarray(idx)]))
  return jax.tree.unflatten(treedef, out)


def smallest_magnitude(params: PyTree, fraction: float, select_impl: str | None = None) -> PyTree:
  """The round(p·n) entries of every tensor smallest in |θ| ([LW] DSD). Ties broken by position.

  Shapes: each leaf's mask has the leaf's shape; NaN ranks as +inf. ``select_impl``: see
  :mod:`reinit_jax.selection` (the exact paths return identical masks).
  """
  _check_fraction(fraction)
  impl = resolve_select_impl(select_impl)
  if impl == "bracket":
    return jax.tree.map(lambda x: selection.lowest_k(selection.float_keys(jnp.abs(x)),
                                             selection.exact_k(np.size(x), fraction), jnp.shape(x)), params)
  leaves, treedef = jax.tree.flatten(params)
  out = selection.select_grouped(leaves, fraction, impl, lambda n, idx: jnp.stack(
      [selection.float_keys(jnp.abs(leaves[i])) for i in idx]))
  return jax.tree.unflatten(treedef, out)


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
  """Selects everything after block k: blocks k+1..K and the head ([LW] §3, re-initialized)."""
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
