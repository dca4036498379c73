"""One re-initialization event: R on the parameters plus everything the model and optimizer carry.

At each event between stages ([Z] §3) the optimizer state is re-created (default) or kept, or zeroed
only where parameters were re-initialized; running statistics of re-initialized BatchNorm layers are
reset to a fresh module's (as [AA]'s code, which builds a new module); ``layerwise`` measures the
normalization after block k on a batch of training data ([LW] §3). docs/methods.md, "Events",
lists the policies.
:func:`apply_event` does all of it as one pure function, jit-able with ``stage`` traced, so a run
compiles its event once however many stages it has.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from reinit_jax import masks
from reinit_jax.models.base import LAYERWISE_NORM

PyTree = Any
OPTIMIZER_POLICIES = ("reset", "keep", "mask")
BATCH_STATS_POLICIES = ("reset", "keep")
IDLE_NORM_POLICIES = ("set", "skip")


def event_key(key: jax.Array, seed, stage) -> jax.Array:
  """The PRNG key of the event after ``stage`` for ``seed``: fold in seed, then stage.

  Folding the stage in is what makes every event's θ_init a new draw (a fixed key reused at every
  event drew identical "fresh" weights in public re-init code).
  """
  return jax.random.fold_in(jax.random.fold_in(key, jnp.asarray(seed, jnp.uint32)),
                            jnp.asarray(stage, jnp.uint32))


def fresh_variables(model, key: jax.Array, seed, stage) -> dict:
  """θ_init for the event after ``stage``: a new draw from the model's own ``init`` ([Z] §3)."""
  return model.init(event_key(key, seed, stage))


def optimizer_state(policy: str, tx: optax.GradientTransformation, opt_state: PyTree,
                    params: PyTree, mask: PyTree | None = None) -> PyTree:
  """The optimizer state after an event (docs/methods.md, "Events").

  Args:
    policy: 'reset' (``tx.init(params)``: momentum zero, schedule counts restart), 'keep', or
      'mask' (zero every per-parameter state entry where ``mask`` is true; counts and other
      non-parameter state kept). 'mask' addresses state by parameter path through
      ``optax.tree_map_params``, so it works for any chain (e.g. add_decayed_weights + sgd with
      momentum, adam) — never by position in the state tuple.
    tx: the optimizer. opt_state: its state. params: the new parameters.
    mask: where parameters were re-initialized (bool leaves, element-wise or scalar).
  """
  if policy == "reset":
    return tx.init(params)
  if policy == "keep":
    return opt_state
  if policy == "mask":
    if mask is None:
      raise ValueError("optimizer policy 'mask' needs the re-initialization mask")
    masks.check_structure(mask, params)
    zero_where = lambda s, m: jnp.where(m, jnp.zeros_like(s), s)
    return optax.tree_map_params(tx, zero_where, opt_state, mask,
                                 transform_non_params=lambda x: x)
  raise ValueError(f"optimizer_policy must be one of {OPTIMIZER_POLICIES}, got {policy!r}")


def _module_any(mask: PyTree) -> dict[str, jax.Array]:
  """For every module path (every proper prefix of a parameter path): does the mask touch it?"""
  out: dict[str, jax.Array] = {}
  for kp, m in jax.tree_util.tree_flatten_with_path(mask)[0]:
    parts = masks.path_of(kp).split("/")
    hit = jnp.any(m)
    for i in range(1, len(parts)):
      prefix = "/".join(parts[:i])
      out[prefix] = jnp.logical_or(out[prefix], hit) if prefix in out else hit
  return out


def reset_batch_stats(batch_stats: PyTree, fresh_batch_stats: PyTree, mask: PyTree,
                      policy: str = "reset") -> PyTree:
  """Running statistics of re-initialized layers reset to a fresh module's (as [AA]'s code).

  A statistic at ``a/b/mean`` belongs to module ``a/b``; it is reset when the mask selects any
  parameter of that module (or, for a norm without parameters, of the nearest enclosing module).
  """
  if policy == "keep":
    return batch_stats
  if policy != "reset":
    raise ValueError(f"batch_stats_policy must be one of {BATCH_STATS_POLICIES}, got {policy!r}")
  touched = _module_any(mask)

  def reset(kp, old, new):
    parts = masks.path_of(kp).split("/")[:-1]
    for i in range(len(parts), 0, -1):
      prefix = "/".join(parts[:i])
      if prefix in touched:
        return jnp.where(touched[prefix], new, old)
    return old

  return jax.tree_util.tree_map_with_path(reset, batch_stats, fresh_batch_stats)


def measure_normalization(model, variables: dict, x: jax.Array, k) -> dict:
  """Sets the layer-wise normalization after block ``k`` from a forward pass on ``x`` ([LW] §3).

  ``mu``/``sigma`` are the mean and standard deviation of block k's whole raw output on ``x``
  (B, *input_shape), measured through the current (rescaled) network in eval mode; normalizations
  of other blocks stay as they are. ``k`` is 1-based and may be traced; k = 0 changes nothing.
  sigma is floored at 1e-6 so a dead block cannot produce inf.
  Returns ``variables`` with an updated ``'layerwise_norm'`` collection.
  """
  outs = model.block_outputs(variables, x)
  norms = dict(variables[LAYERWISE_NORM])
  for i, (blk, z) in enumerate(zip(model.blocks, outs), start=1):
    z = z.astype(jnp.float32)
    mu, sigma = jnp.mean(z), jnp.maximum(jnp.std(z), 1e-6)
    old = norms[blk.norm]
    hit = jnp.asarray(k) == i
    norms[blk.norm] = {"mu": jnp.where(hit, mu, old["mu"]),
                       "sigma": jnp.where(hit, sigma, old["sigma"])}
  out = dict(variables)
  out[LAYERWISE_NORM] = norms
  return out


def advance_context(method, model, variables: dict, context, batch: jax.Array | None):
  """The context the event after this point reads: for a method declared with
  ``activations=True`` every block's output on ``batch`` (``context.activations``; e.g. redo
  scores its units on them), then for one that keeps state across events (``carry=``) its
  advanced carry (continual backprop's utilities, ages and the units to replace). Keep the returned
  context, without its activations, as the run's next context. Other methods: ``context``."""
  if not method.uses_activations:
    return context
  if batch is None:
    raise ValueError(f"method {method.name!r} reads activations: pass a batch")
  context = context.replace(activations=tuple(model.block_outputs(variables, batch)))
  return method.advance(variables["params"], context)


def apply_event(method, model, variables: dict, fresh_variables: dict, opt_state: PyTree,
                tx: optax.GradientTransformation, stage, key: jax.Array, context,
                norm_batch: jax.Array | None = None, *, optimizer_policy: str = "reset",
                batch_stats_policy: str = "reset", idle_norm_policy: str = "set",
                mask: PyTree | None = None) -> tuple[dict, PyTree]:
  """The whole event after stage ``stage`` ([Z] §3, [LW] §3): returns ``(variables, opt_state)``.

  Args:
    method: a :class:`reinit_jax.methods.Method`.
    model: the :class:`reinit_jax.models.Model` (its blocks address the normalizations).
    variables / fresh_variables: current collections and a fresh ``model.init(key(seed, t))``.
    opt_state, tx: the optimizer state and transformation.
    stage: the stage just finished, t ≥ 1 (int or traced int32).
    key: the event's PRNG key. context: the run's ``methods.Context``; for a method that keeps
      state across events, the one :func:`advance_context` returned.
    norm_batch: training inputs (B, *input_shape), preprocessed; needed by ``layerwise`` and by
      the methods that read activations.
    idle_norm_policy: at a layer-wise event that re-initializes no parameter (k = K on a model
      whose last block is its output layer, e.g. the synthetic MLP), 'set' measures the
      normalization after block K anyway ([LW] §3 read literally: it then divides the logits by a
      fixed σ) and 'skip' leaves the normalizations as they are. Not fixed by [LW]; with strong
      L2 the literal reading collapses the synthetic MLP (results/README.md, (a)).
    mask: ``method.reinit_mask`` of these arguments when the caller has it already (a step-level
      event counts a unit-level method's resets with it); computed here otherwise.
  """
  if idle_norm_policy not in IDLE_NORM_POLICIES:
    raise ValueError(f"idle_norm_policy must be one of {IDLE_NORM_POLICIES}, got "
                     f"{idle_norm_policy!r}")
  if optimizer_policy not in OPTIMIZER_POLICIES:
    raise ValueError(f"optimizer_policy must be one of {OPTIMIZER_POLICIES}, got "
                     f"{optimizer_policy!r}")
  params, fresh = variables["params"], fresh_variables["params"]
  if method.uses_activations and context.activations is None:
    if method.carries_state:  # advancing it here would lose the new carry
      raise ValueError(f"method {method.name!r} keeps state across events: call "
                       "events.advance_context first and keep the context it returns")
    context = advance_context(method, model, variables, context, norm_batch)
  new_params = method(params, fresh, stage, key, context)
  mask = method.reinit_mask(params, stage, key, context) if mask is None else mask
  out = dict(variables)
  out["params"] = new_params
  if "batch_stats" in variables:
    out["batch_stats"] = reset_batch_stats(variables["batch_stats"],
                                           fresh_variables["batch_stats"], mask,
                                           batch_stats_policy)
  if method.uses_normalization and LAYERWISE_NORM in variables:
    if norm_batch is None:
      raise ValueError(f"method {method.name!r} measures a normalization: pass norm_batch")
    k = jnp.minimum(method.normalize_block(stage), model.num_blocks)
    if idle_norm_policy == "skip":
      # Nothing fresh downstream means there is no new layer whose input scale needs matching.
      k = jnp.where(masks.count(mask, new_params) > 0, k, 0)
    out = measure_normalization(model, out, norm_batch, k)
  return out, optimizer_state(optimizer_policy, tx, opt_state, new_params, mask)
