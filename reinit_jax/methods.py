"""Re-initialization methods ``R(params, fresh, stage, key, context, **hparams) -> params``.

Between stages the next start is θ_{t+1} = R(θ_t, θ_init, t), θ_init a fresh draw from the model's
own initializer for every event ([Z] §3; README.md, "Composing a re-initialization method"). Every
method here is an element-wise blend of θ and θ_init under a mask or coefficients, built from
:func:`blend`, :func:`shrink_perturb`, :func:`rescale_to_norms` and :mod:`reinit_jax.masks`. All
are jit-able with ``stage`` traced (one compilation for every event of a run).

Every method, built-in or yours, is declared the same way, with :func:`register`::

    def head_mask(params, stage, key, context, **hparams):
      return masks.head(params, context.head)

    @methods.register("head_shrink_perturb", mask=head_mask,
                      hparams={"shrink": methods.unit_interval(0.4),
                               "perturb": methods.unit_interval(0.1)})
    def head_sp(params, fresh, stage, key, context, shrink, perturb):
      mask = head_mask(params, stage, key, context)
      return methods.shrink_perturb(params, fresh, shrink, perturb, mask=mask)

    R = methods.get("head_shrink_perturb", shrink=0.6)  # get(..., shrik=0.6): ValueError

A declaration has, besides R itself (each part optional):

* ``hparams``: ``{name: Hparam}``, each with its default and the values it allows
  (:func:`unit_interval`, :func:`positive_int`, :func:`integer`, or your own :class:`Hparam`).
  :func:`get` rejects an unknown name and a value out of range with one line. Without
  ``hparams``, R's keyword defaults are the hyperparameters and any value passes.
* ``mask(params, stage, key, context, **hparams) -> mask``: where θ_init gets weight at this event
  (the optimizer's 'mask' policy and BatchNorm resets follow it). Without it, the mask is found by
  calling R a second time with θ_init = θ + 1 and taking every entry R changed: exact for blends,
  at the cost of a second R per event.
* ``prepare(key, params, context, **hparams) -> mask``: a mask drawn once before training, handed to
  R and ``mask`` as ``context.fixed_mask`` at every event (``fixed_subset``).
* ``normalize(stage, **hparams) -> int32``: the 1-based block after which the event measures the
  layer-wise normalization ([LW] §3; clipped to the model's K blocks); without it, none.
* ``activations=True``: R reads ``context.activations``, every block's output on the event's batch
  (``events.advance_context`` computes them; ``redo`` scores its units on them).
* ``carry=Carry(init, update)``: state kept from event to event in ``context.carry`` (with
  ``activations=True``): ``init(params, context, **hparams)`` before training, ``update(carry,
  params, context, **hparams)`` before every event, from its activations (``continual_backprop``'s
  utility and age per unit). The engine keeps the advanced context in the run's state.

A method from your own file: register it in a module and import that module before the method is
looked up, with ``methods.import_modules(("my_pkg.my_methods", "path/to/methods.py"))`` (dotted
names or .py paths); a run's config lists such modules in one field, as big_vision does for its
preprocessing ops.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from reinit_jax import masks, plasticity
from reinit_jax.models.base import layer_chain
from reinit_jax.method_registry import (Carry, Context, Declaration, Hparam, Method,  # noqa: F401
                                        get, import_modules, integer, is_unit, names,
                                        positive_int, register, unit_interval)

PyTree = Any


# ----------------------------------------------------------------------------- primitives


def blend(params: PyTree, fresh: PyTree, mask: PyTree) -> PyTree:
  """θ_init where ``mask`` is true, θ elsewhere ([LW]'s subset methods); structure, dtypes of θ."""
  masks.check_shapes(fresh, params, "fresh")
  masks.check_structure(mask, params)
  return jax.tree.map(lambda p, f, m: jnp.where(m, f.astype(p.dtype), p), params, fresh, mask)


def shrink_perturb(params: PyTree, fresh: PyTree, shrink: float = 0.4, perturb: float = 0.1,
                   mask: PyTree | None = None) -> PyTree:
  """Shrink & Perturb [AA] §4, [Z] §3: λθ + γθ_init on every selected entry, θ elsewhere.

  Applies to every parameter by default, norm scales and biases included. Leaves keep their
  shapes and dtypes.
  """
  for name, value in (("shrink", shrink), ("perturb", perturb)):
    if not is_unit(value):
      raise ValueError(f"{name} must be in [0, 1], got {value!r}")
  masks.check_shapes(fresh, params, "fresh")
  mask = masks.all_true(params) if mask is None else mask
  masks.check_structure(mask, params)

  def sp(p, f, m):
    return jnp.where(m, (shrink * p + perturb * f.astype(p.dtype)).astype(p.dtype), p)

  return jax.tree.map(sp, params, fresh, mask)


def rescale_to_norms(params: PyTree, norms: PyTree, mask: PyTree) -> PyTree:
  """Multiplies each selected tensor so its Frobenius norm equals ``norms`` ([LW] §3, step 1).

  ``norms`` holds one scalar per leaf (the first initialization's, see :func:`leaf_norms`).
  Choice (the papers leave it open): a tensor whose recorded norm is zero (biases, norm offsets)
  or whose current norm is zero is left as it is, since no scaling can reach a zero norm without
  erasing what was learned.
  """
  masks.check_structure(norms, params, "norms")
  masks.check_structure(mask, params)

  def rescale(p, n, m):
    cur = jnp.sqrt(jnp.sum(jnp.square(p.astype(jnp.float32))))
    ok = jnp.logical_and(m, jnp.logical_and(n > 0, cur > 0))
    scale = jnp.where(ok, n / jnp.where(cur > 0, cur, 1.0), 1.0)
    return (p * scale).astype(p.dtype)

  return jax.tree.map(rescale, params, norms, mask)


def leaf_norms(params: PyTree) -> PyTree:
  """Frobenius norm (float32 scalar) of every leaf, recorded once at θ_1 ([LW] §3, step 1)."""
  return jax.tree.map(lambda p: jnp.sqrt(jnp.sum(jnp.square(p.astype(jnp.float32)))), params)


# ----------------------------------------------------------------------------- context


def make_context(model, params_1: PyTree) -> Context:
  """Context of a run: the model's block declaration and the first initialization's norms."""
  return Context(blocks=tuple(model.blocks), head=tuple(model.head),
                 init_norms=leaf_norms(params_1))


# ----------------------------------------------------------------------------- the methods


def _nothing(params, stage, key, context):
  return masks.all_false(params)


def _everything(params, stage, key, context, **_):
  return masks.all_true(params)


@register("standard", mask=_nothing)
def standard(params, fresh, stage, key, context):
  """Identity: plain training; with a per-stage cosine schedule it is SGDR [Z] §5.3."""
  del fresh, stage, key, context
  return params


@register("full", mask=_everything)
def full(params, fresh, stage, key, context):
  """θ_init: a restart; with distillation, the fixed-budget Born-Again Network [Z] §3.1."""
  del stage, key, context
  return jax.tree.map(lambda p, f: f.astype(p.dtype), params, fresh)


@register("shrink_perturb", hparams={"shrink": unit_interval(0.4), "perturb": unit_interval(0.1)},
          mask=_everything)
def shrink_perturb_everywhere(params, fresh, stage, key, context, shrink, perturb):
  """λθ + γθ_init on every parameter [AA] §4, [Z] §3; λ = 0.4, γ = 0.1 by default."""
  del stage, key, context
  return shrink_perturb(params, fresh, shrink, perturb)


_FRACTION = {"fraction": unit_interval(0.2)}


def _random_mask(params, stage, key, context, fraction):
  return masks.random_fraction(jax.random.fold_in(key, jnp.asarray(stage, jnp.int32)), params, fraction,
                           context.select_impl)


@register("random_subset", hparams=_FRACTION, mask=_random_mask)
def random_subset(params, fresh, stage, key, context, fraction):
  """WELSR [LW]: θ_init on a new random fraction p of every tensor at each event."""
  return blend(params, fresh, _random_mask(params, stage, key, context, fraction))


def _magnitude_mask(params, stage, key, context, fraction):
  return masks.smallest_magnitude(params, fraction, context.select_impl)


@register("magnitude", hparams=_FRACTION, mask=_magnitude_mask)
def magnitude(params, fresh, stage, key, context, fraction):
  """DSD over many rounds [LW]: θ_init on the fraction p of each tensor smallest in |θ|."""
  return blend(params, fresh, _magnitude_mask(params, stage, key, context, fraction))


def _fixed_draw(key, params, context, fraction):
  return masks.random_fraction(key, params, fraction, context.select_impl)


def _fixed_mask(params, stage, key, context, fraction):
  if context.fixed_mask is None:
    raise ValueError("fixed_subset needs context.fixed_mask: call method.prepare(key, params, "
                     "context) once before training")
  return context.fixed_mask


@register("fixed_subset", hparams=_FRACTION, mask=_fixed_mask, prepare=_fixed_draw)
def fixed_subset(params, fresh, stage, key, context, fraction):
  """WELS [LW]: θ_init on one random fraction p of every tensor, drawn before training."""
  return blend(params, fresh, _fixed_mask(params, stage, key, context, fraction))


def _head_mask(params, stage, key, context):
  return masks.head(params, context.head)


@register("head", mask=_head_mask)
def head(params, fresh, stage, key, context):
  """FC [LW]: re-initialize the layers after the last block (the classifier head)."""
  return blend(params, fresh, _head_mask(params, stage, key, context))


def _layer_k(stage, events_per_block):
  """k = ceil(t / M), the block the event after stage t keeps up to ([LW] §3)."""
  return (jnp.asarray(stage, jnp.int32) + events_per_block - 1) // events_per_block


def _block_k(context, stage, events_per_block):
  if not context.blocks:
    raise ValueError("layerwise needs context.blocks: build the context with "
                     "methods.make_context(model, params)")
  if context.init_norms is None:
    raise ValueError("layerwise needs context.init_norms (the first initialization's norms)")
  return jnp.clip(_layer_k(stage, events_per_block), 1, len(context.blocks))


def _layerwise_mask(params, stage, key, context, events_per_block):
  return masks.after_block(params, context.blocks, _block_k(context, stage, events_per_block))


@register("layerwise", hparams={"events_per_block": positive_int(1)}, mask=_layerwise_mask,
          normalize=_layer_k)
def layerwise(params, fresh, stage, key, context, events_per_block):
  """Layer-wise re-initialization [LW] §3, [Z] §3: at the event after stage t, k = ceil(t/M).

  Blocks 1..k are kept, rescaled to their first-initialization norms; everything after block k is
  set to θ_init; :func:`reinit_jax.events.apply_event` measures a normalization after block k.
  """
  kept = masks.up_to_block(params, context.blocks, _block_k(context, stage, events_per_block))
  rescaled = rescale_to_norms(params, context.init_norms, kept)
  return blend(rescaled, fresh, masks.not_(kept))


@register("rescale_only", mask=_nothing)
def rescale_only(params, fresh, stage, key, context):
  """[LW] §1.1's ablation: every tensor rescaled to its norm at θ_1, nothing re-initialized.

  θ_init gets no weight, so it isolates the effect of resetting the norms from that of fresh
  weights. Zero-norm tensors (biases) are left as they are (:func:`rescale_to_norms`).
  """
  del fresh, stage, key
  if context.init_norms is None:
    raise ValueError("rescale_only needs context.init_norms (methods.make_context records them)")
  return rescale_to_norms(params, context.init_norms, masks.all_true(params))


def units_in_mask(blocks, mask) -> jax.Array:
  """The units a unit-level method's ``mask`` resets (int32): in every layer of the chain but the
  last, the units whose bias entry is masked (without a bias: whose whole incoming column is)."""
  count = jnp.zeros((), jnp.int32)
  for (name,) in layer_chain(blocks, mask)[:-1]:
    layer = mask[name]
    incoming = layer["bias"] if "bias" in layer else jnp.all(layer["kernel"], axis=0)
    count = count + jnp.sum(incoming, dtype=jnp.int32)
  return count


def _dormant_units(context, tau) -> list:
  """ReDo's τ-dormant units of every block but the last (its outputs are the logits)."""
  if context.activations is None:
    raise ValueError("redo scores units on the blocks' activations: apply it through "
                     "events.apply_event with a batch (a stage or step-level event)")
  return [plasticity.unit_scores(h) <= tau for h in context.activations[:-1]]


def _redo_mask(params, stage, key, context, tau):
  return plasticity.unit_param_masks(params, layer_chain(context.blocks, params),
                                     _dormant_units(context, tau))


@register("redo", mask=_redo_mask, activations=True, hparams={"tau": Hparam(
    0.1, "a number >= 0", lambda v: isinstance(v, jax.Array) or (
        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0))})
def redo(params, fresh, stage, key, context, tau):
  """ReDo (Sokar et al. 2023): every unit whose score s_i = E|h_i| / mean_j E|h_j| on the event's
  batch is ≤ τ gets fresh incoming weights and bias and zero outgoing weights.

  Its mask is every weight it changes, incoming and outgoing, so the 'mask' optimizer policy zeroes
  the moments of both (no stale moment drives a reset unit). Run it as a step-level event
  (``reinit.every_steps``, the paper's every F steps) or at stage ends; models: ``mlp``.
  """
  del stage, key
  return plasticity.reset_units(params, fresh, layer_chain(context.blocks, params),
                                _dormant_units(context, tau))


def _cbp_init(params, context, **_):
  units = plasticity.ContinualBackprop.init(params, layer_chain(context.blocks, params))
  return {"units": units, "replaced": tuple(jnp.zeros(u.shape, bool) for u in units.utility)}


def _cbp_update(carry, params, context, replacement_rate, decay, maturity):
  """One step of continual backprop's bookkeeping: the utilities from this event's activations and
  the outgoing weights, ages + 1, then the units to replace (their utility and age set to 0)."""
  layers = layer_chain(context.blocks, params)
  units = carry["units"].update(params, context.activations[:-1], layers, decay=decay)
  units, replaced = units.select(replacement_rate, maturity)
  return {"units": units, "replaced": tuple(replaced)}


def _cbp_replaced(context) -> list:
  if context.carry is None:
    raise ValueError("continual_backprop keeps a utility and an age per unit: call method.prepare "
                     "once, then events.advance_context before every event")
  return list(context.carry["replaced"])


def _cbp_mask(params, stage, key, context, **_):
  return plasticity.unit_param_masks(params, layer_chain(context.blocks, params),
                                     _cbp_replaced(context))


@register("continual_backprop", mask=_cbp_mask, activations=True,
          carry=Carry(_cbp_init, _cbp_update),
          hparams={"replacement_rate": unit_interval(1e-4), "decay": unit_interval(0.99),
                   "maturity": integer(100, 0)})
def continual_backprop(params, fresh, stage, key, context, replacement_rate, decay, maturity):
  """Continual backprop (Dohare et al. 2024, Methods): each unit's contribution utility
  u_i ← η u_i + (1 − η) E|h_i| Σ_k |w_ik| (η = ``decay``, w_ik its outgoing weights) and its age
  are kept across events; at every event ρ (``replacement_rate``) of the units older than m
  (``maturity``) are due — fractions accumulate across events — and the lowest-utility ones get
  fresh incoming weights and bias, zero outgoing weights, utility and age 0.

  The paper's step is one optimizer step: run it as a step-level event with
  ``reinit.every_steps=1`` and ``optimizer_policy='mask'`` (the moments of a replaced unit's
  incoming and outgoing weights zeroed). Its mask is those weights. Models: ``mlp``.
  """
  del stage, key, replacement_rate, decay, maturity  # the carry's update chose the units
  return plasticity.reset_units(params, fresh, layer_chain(context.blocks, params),
                                _cbp_replaced(context))


SPEC_METHODS = ("standard", "shrink_perturb", "layerwise", "random_subset", "magnitude",
                "fixed_subset", "head", "full")
"""The methods of the papers' comparisons ([AA], [LW], [Z]); ``rescale_only`` is an ablation."""
