"""Parameter norms through training ([Z] Fig. 3, "weight norm of the parameters").

All functions are pure and jit-able; paths are ``'/'.join`` of the pytree keys, the convention that
:mod:`reinit_jax.masks` uses to address parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def path_str(path) -> str:
  """``'/'``-joined keys of a ``jax.tree_util`` key path (dict keys, attributes or indices)."""
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def global_norm(params: Any) -> jax.Array:
  """L2 norm of all parameters concatenated, a float32 scalar ([Z] Fig. 3).

  Accumulates in float32 so bfloat16 parameters do not lose the sum; an empty tree gives 0.
  """
  leaves = jax.tree_util.tree_leaves(params)
  total = sum((jnp.sum(jnp.square(jnp.asarray(x, jnp.float32))) for x in leaves),
              jnp.zeros((), jnp.float32))
  return jnp.sqrt(total)


def leaf_norms(params: Any) -> Any:
  """Frobenius norm of every leaf: a pytree of float32 scalars with ``params``' structure."""
  return jax.tree_util.tree_map(lambda x: jnp.linalg.norm(jnp.asarray(x, jnp.float32).ravel()),
                                params)


def norms_by_path(params: Any) -> dict[str, float]:
  """``{path: norm}`` for every leaf, as Python floats (host side; for logging and plots)."""
  flat = jax.tree_util.tree_flatten_with_path(leaf_norms(params))[0]
  return {path_str(p): float(v) for p, v in flat}


def norms_by_top_level(params: Any) -> dict[str, float]:
  """L2 norm per top-level submodule (the units of a model's block declaration, [LW] §3).

  ``params`` must be a mapping (a Flax ``'params'`` collection); returns ``{name: norm}``.
  """
  if not hasattr(params, "items"):
    raise ValueError(f"params must be a mapping of top-level modules, got {type(params).__name__}")
  return {name: float(global_norm(sub)) for name, sub in params.items()}
