"""Re-initialization methods as pure functions ``R(params, fresh, stage, key, context) -> params``.

SPEC §1: between stages, θ_{t+1}^start = R(θ_t^end, θ_init, t), θ_init a fresh draw from the model's
own initializer for every event. Every method here is an element-wise blend of θ and θ_init under a
mask or coefficients, built from :func:`blend`, :func:`shrink_perturb`, :func:`rescale_to_norms` and
the masks of :mod:`reinit_jax.masks`. All are jit-able with ``stage`` traced (one compilation for
every event of a run).

A new method in research code::

    @methods.register("head_shrink_perturb")
    def head_sp(params, fresh, stage, key, context, shrink=0.4, perturb=0.1):
      return methods.shrink_perturb(params, fresh, shrink, perturb,
                                    mask=masks.head(params, context.head))

    R = methods.get("head_shrink_perturb", shrink=0.6)
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax import masks as M

PyTree = Any


# ----------------------------------------------------------------------------- primitives


def _bcast(m, x):
  return jnp.broadcast_to(jnp.asarray(m, bool), jnp.shape(x))


def blend(params: PyTree, fresh: PyTree, mask: PyTree) -> PyTree:
  """θ_init where ``mask`` is true, θ elsewhere (SPEC §1). Structure and dtypes of ``params``."""
  M.check_shapes(fresh, params, "fresh")
  M.check_structure(mask, params)
  return jax.tree.map(lambda p, f, m: jnp.where(m, f.astype(p.dtype), p), params, fresh, mask)


def _check_unit(value, name):
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating)):
    if isinstance(value, jax.Array):
      return
    raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
  if not 0.0 <= float(value) <= 1.0:
    raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def shrink_perturb(params: PyTree, fresh: PyTree, shrink: float = 0.4, perturb: float = 0.1,
                   mask: PyTree | None = None) -> PyTree:
  """Shrink & Perturb [AA §4, Z §3]: λθ + γθ_init on every selected entry, θ elsewhere.

  Applies to every parameter by default, norm scales and biases included (SPEC §1).
  """
  _check_unit(shrink, "shrink")
  _check_unit(perturb, "perturb")
  M.check_shapes(fresh, params, "fresh")
  mask = M.all_true(params) if mask is None else mask
  M.check_structure(mask, params)

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
  M.check_structure(norms, params, "norms")
  M.check_structure(mask, params)

  def rescale(p, n, m):
    cur = jnp.sqrt(jnp.sum(jnp.square(p.astype(jnp.float32))))
    ok = jnp.logical_and(m, jnp.logical_and(n > 0, cur > 0))
    scale = jnp.where(ok, n / jnp.where(cur > 0, cur, 1.0), 1.0)
    return (p * scale).astype(p.dtype)

  return jax.tree.map(rescale, params, norms, mask)


def leaf_norms(params: PyTree) -> PyTree:
  """Frobenius norm (float32 scalar) of every leaf: recorded once at θ_1 for ``layerwise``."""
  return jax.tree.map(lambda p: jnp.sqrt(jnp.sum(jnp.square(p.astype(jnp.float32)))), params)


# ----------------------------------------------------------------------------- context


@flax.struct.dataclass
class Context:
  """What methods need beyond (params, fresh, stage, key); a pytree, so it can cross jit.

  Attributes:
    blocks: the model's ordered ``Block``s (static).
    head: the model's head names (static).
    init_norms: per-leaf norms of θ_1 (``layerwise``), or None.
    fixed_mask: the mask ``fixed_subset`` drew once before training, or None.
  """

  blocks: tuple = flax.struct.field(pytree_node=False, default=())
  head: tuple = flax.struct.field(pytree_node=False, default=())
  init_norms: Any = None
  fixed_mask: Any = None


def make_context(model, params_1: PyTree) -> Context:
  """Context of a run: the model's block declaration and the first initialization's norms."""
  return Context(blocks=tuple(model.blocks), head=tuple(model.head),
                 init_norms=leaf_norms(params_1))


# ----------------------------------------------------------------------------- Method


def _identity_prepare(key, params, context, **_):
  del key, params
  return context


def _no_normalization(stage, **_):
  del stage
  return jnp.zeros((), jnp.int32)


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity, so jax.jit(R) works
class Method:
  """A named re-initialization R with one calling convention (SPEC §1).

  ``R(params, fresh, stage, key, context) -> params``: ``stage`` is the stage just finished (t ≥ 1,
  Python int or traced int32), ``key`` a PRNG key for the event (methods fold ``stage`` into it
  again, so a reused key never repeats a draw), ``context`` a :class:`Context`.
  """

  name: str
  fn: Callable
  hparams: dict = dataclasses.field(default_factory=dict)
  mask_fn: Callable | None = None
  prepare_fn: Callable = _identity_prepare
  normalize_fn: Callable = _no_normalization
  events_per_block: int | None = None

  def __call__(self, params, fresh, stage, key, context: Context | None = None):
    _check_stage(stage)
    context = Context() if context is None else context
    return self.fn(params, fresh, stage, key, context, **self.hparams)

  def reinit_mask(self, params, stage, key, context: Context | None = None) -> PyTree:
    """Where θ_init enters θ at this event (drives optimizer 'mask' and batch-stat resets).

    A registered function without an explicit mask reports the entries its R changes when
    θ_init = θ + 1, i.e. exactly where θ_init has any weight.
    """
    _check_stage(stage)
    context = Context() if context is None else context
    if self.mask_fn is not None:
      return self.mask_fn(params, stage, key, context, **self.hparams)
    probe = jax.tree.map(lambda p: p + jnp.ones_like(p), params)
    out = self.fn(params, probe, stage, key, context, **self.hparams)
    return jax.tree.map(lambda a, b: a != b, out, params)

  def prepare(self, key, params, context: Context) -> Context:
    """Called once before training (``fixed_subset`` draws its mask here)."""
    return self.prepare_fn(key, params, context, **self.hparams)

  def normalize_block(self, stage) -> jax.Array:
    """1-based block whose output gets a measured normalization after this event; 0 for none."""
    return self.normalize_fn(stage, **self.hparams)

  @property
  def uses_normalization(self) -> bool:
    return self.normalize_fn is not _no_normalization


def _check_stage(stage):
  if isinstance(stage, (bool, np.bool_)):
    raise ValueError(f"stage must be an integer ≥ 1, got {stage!r}")
  if isinstance(stage, (int, np.integer)) and stage < 1:
    raise ValueError(f"stage must be an integer ≥ 1 (the stage just finished), got {stage}")


_REGISTRY: dict[str, Callable[..., Method]] = {}


def register(name: str, *, mask: Callable | None = None):
  """Registers a method by name.

  Decorates either a factory ``(**hparams) -> Method`` (mark it with ``factory=True`` attribute via
  :func:`_factory`), or a plain function ``R(params, fresh, stage, key, context, **hparams)``; its
  keyword defaults are the method's hyperparameters, overridable in :func:`get`. ``mask`` optionally
  gives ``(params, stage, key, context, **hparams) -> mask`` (see :meth:`Method.reinit_mask`).
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"name must be a non-empty string, got {name!r}")

  def deco(fn):
    if getattr(fn, "_is_factory", False):
      _REGISTRY[name] = fn
    else:
      defaults = {k: p.default for k, p in inspect.signature(fn).parameters.items()
                  if p.default is not inspect.Parameter.empty}

      def factory(**hparams):
        _check_hparams(name, hparams, defaults)
        for unit in ("shrink", "perturb", "fraction"):  # coefficients of a blend live in [0, 1]
          if unit in hparams:
            _check_unit(hparams[unit], unit)
        return Method(name, fn, {**defaults, **hparams}, mask_fn=mask)

      _REGISTRY[name] = factory
    return fn

  return deco


def _factory(fn):
  fn._is_factory = True
  return fn


def _check_hparams(name, given, allowed):
  unknown = sorted(set(given) - set(allowed))
  if unknown:
    raise ValueError(f"method {name!r} has no hyperparameter {unknown[0]!r}; allowed: "
                     f"{sorted(allowed) or 'none'}")


def names() -> tuple[str, ...]:
  """Registered method names."""
  return tuple(sorted(_REGISTRY))


def get(name: str, **hparams) -> Method:
  """The method ``name`` with hyperparameters bound, e.g. ``get('shrink_perturb', shrink=0.6)``."""
  if name not in _REGISTRY:
    raise ValueError(f"method must be one of {names()}, got {name!r}")
  return _REGISTRY[name](**hparams)


# ----------------------------------------------------------------------------- SPEC §1 methods


@register("standard", mask=lambda params, stage, key, context: M.all_false(params))
def standard(params, fresh, stage, key, context):
  """Identity: plain training; with a per-stage cosine schedule it is SGDR [Z §5.3]."""
  del fresh, stage, key, context
  return params


@register("full", mask=lambda params, stage, key, context: M.all_true(params))
def full(params, fresh, stage, key, context):
  """θ_init: restart from scratch; with distillation, the fixed-budget Born-Again Network [Z §3.1]."""
  del stage, key, context
  return jax.tree.map(lambda p, f: f.astype(p.dtype), params, fresh)


def _sp_mask(params, stage, key, context, shrink=0.4, perturb=0.1):
  return M.all_true(params)


@register("shrink_perturb", mask=_sp_mask)
def _shrink_perturb_method(params, fresh, stage, key, context, shrink=0.4, perturb=0.1):
  """λθ + γθ_init on every parameter [AA §4; Z §3]; λ = 0.4, γ = 0.1 by default."""
  return shrink_perturb(params, fresh, shrink, perturb)


def _subset_factory(name, select, doc):
  def fn(params, fresh, stage, key, context, fraction=0.2):
    return blend(params, fresh, select(params, stage, key, context, fraction))

  def mask_fn(params, stage, key, context, fraction=0.2):
    return select(params, stage, key, context, fraction)

  @_factory
  def factory(fraction=0.2, **rest):
    _check_hparams(name, rest, ("fraction",))
    M._check_fraction(fraction)
    return Method(name, fn, {"fraction": fraction}, mask_fn=mask_fn,
                  prepare_fn=_fixed_prepare if name == "fixed_subset" else _identity_prepare)

  factory.__doc__ = doc
  register(name)(factory)


def _random_select(params, stage, key, context, fraction):
  return M.random_fraction(jax.random.fold_in(key, jnp.asarray(stage, jnp.int32)), params, fraction)


def _magnitude_select(params, stage, key, context, fraction):
  return M.smallest_magnitude(params, fraction)


def _fixed_select(params, stage, key, context, fraction):
  if context.fixed_mask is None:
    raise ValueError("fixed_subset needs context.fixed_mask: call method.prepare(key, params, "
                     "context) once before training")
  return context.fixed_mask


def _fixed_prepare(key, params, context, fraction=0.2):
  return context.replace(fixed_mask=M.random_fraction(key, params, fraction))


_subset_factory("random_subset", _random_select,
                "WELSR [LW]: blend a new random fraction p of every tensor each event.")
_subset_factory("magnitude", _magnitude_select,
                "DSD over many rounds [LW]: re-init the fraction p of each tensor smallest in |θ|.")
_subset_factory("fixed_subset", _fixed_select,
                "WELS [LW]: one random fraction p of every tensor drawn before training, reused.")


def _head_mask(params, stage, key, context):
  return M.head(params, context.head)


@register("head", mask=_head_mask)
def head(params, fresh, stage, key, context):
  """FC [LW]: re-initialize the layers after the last block (the classifier head)."""
  return blend(params, fresh, _head_mask(params, stage, key, context))


def _layer_k(stage, events_per_block, num_blocks):
  k = (jnp.asarray(stage, jnp.int32) + events_per_block - 1) // events_per_block
  return jnp.clip(k, 1, num_blocks)


def _check_context_blocks(context):
  if not context.blocks:
    raise ValueError("layerwise needs context.blocks: build the context with "
                     "methods.make_context(model, params)")
  if context.init_norms is None:
    raise ValueError("layerwise needs context.init_norms (the first initialization's norms)")


@_factory
def _layerwise_factory(events_per_block=1, **rest):
  """Layer-wise re-initialization [LW §3; Z §3]: at the event after stage t, k = ceil(t/M);
  keep blocks 1..k rescaled to their first-initialization norms, set everything after block k to
  θ_init, and (in :func:`reinit_jax.events.apply_event`) measure a normalization after block k."""
  _check_hparams("layerwise", rest, ("events_per_block",))
  if isinstance(events_per_block, bool) or not isinstance(events_per_block, (int, np.integer)) \
      or events_per_block < 1:
    raise ValueError(f"events_per_block (M) must be an integer ≥ 1, got {events_per_block!r}")

  def mask_fn(params, stage, key, context, events_per_block):
    _check_context_blocks(context)
    k = _layer_k(stage, events_per_block, len(context.blocks))
    return M.after_block(params, context.blocks, k)

  def fn(params, fresh, stage, key, context, events_per_block):
    _check_context_blocks(context)
    k = _layer_k(stage, events_per_block, len(context.blocks))
    kept = M.up_to_block(params, context.blocks, k)
    rescaled = rescale_to_norms(params, context.init_norms, kept)
    return blend(rescaled, fresh, M.not_(kept))

  def normalize_fn(stage, events_per_block):
    # K is only known from the context; clipping to K happens in events.apply_event.
    return (jnp.asarray(stage, jnp.int32) + events_per_block - 1) // events_per_block

  return Method("layerwise", fn, {"events_per_block": int(events_per_block)}, mask_fn=mask_fn,
                normalize_fn=normalize_fn, events_per_block=int(events_per_block))


register("layerwise")(_layerwise_factory)

SPEC_METHODS = ("standard", "shrink_perturb", "layerwise", "random_subset", "magnitude",
                "fixed_subset", "head", "full")
