"""The registry behind :mod:`reinit_jax.methods`: declarations, bound methods, hyperparameters.

Use it through :mod:`reinit_jax.methods` (``methods.register``, ``methods.get``, ...), whose
docstring describes a declaration; this module holds the machinery, methods.py the methods.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from typing import Any, Callable, Mapping, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def is_unit(value) -> bool:
  """A number in [0, 1], or a jax array (it may be traced: checked by whoever made it)."""
  if isinstance(value, jax.Array):
    return True
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                   np.floating)):
    return False
  return 0.0 <= float(value) <= 1.0


# ----------------------------------------------------------------------------- context


@flax.struct.dataclass
class Context:
  """What methods need beyond (params, fresh, stage, key); a pytree, so it can cross jit.

  Attributes:
    blocks: the model's ordered ``Block``s (static).
    head: the model's head names (static).
    init_norms: per-leaf norms of θ_1 (``layerwise``, ``rescale_only``), or None.
    fixed_mask: the mask the method's ``prepare`` drew once before training, or None.
    select_impl: the k-smallest selection of ``magnitude`` / ``random_subset`` / ``fixed_subset``
      (static; :mod:`reinit_jax.selection`; None: $REINIT_SELECT_IMPL, else 'auto'). The engine
      sets it from ``reinit.select_impl`` for the event's call only (the state keeps None).
    activations: the output of every block on the event's batch, for a method declared with
      ``activations=True`` (``redo``); set by ``events.advance_context`` for the event only.
    carry: the state a method declared with ``carry=`` keeps from event to event (continual
      backprop's utility and age per unit), or None; made by ``prepare``, advanced by
      ``events.advance_context`` before every event.
  """

  blocks: tuple = flax.struct.field(pytree_node=False, default=())
  head: tuple = flax.struct.field(pytree_node=False, default=())
  init_norms: Any = None
  fixed_mask: Any = None
  select_impl: str | None = flax.struct.field(pytree_node=False, default=None)
  activations: Any = None
  carry: Any = None


# ----------------------------------------------------------------------------- hyperparameters


@dataclasses.dataclass(frozen=True)
class Hparam:
  """A method's hyperparameter: its default, the values it allows (in words and as a test)."""

  default: Any
  allowed: str = "any value"
  valid: Callable[[Any], bool] = lambda value: True
  convert: Callable[[Any], Any] = lambda value: value


def unit_interval(default: float) -> Hparam:
  """A coefficient or fraction in [0, 1] (a jax array passes unchecked: it may be traced)."""
  return Hparam(default, "in [0, 1]", is_unit)


def integer(default: int, low: int) -> Hparam:
  """An integer ≥ ``low`` (a Python or numpy integer, not a bool), stored as a Python int."""
  def valid(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) \
        and value >= low
  return Hparam(default, f"an integer >= {low}", valid, int)


def positive_int(default: int) -> Hparam:
  """An integer ≥ 1, stored as a Python int."""
  return integer(default, 1)


# ----------------------------------------------------------------------------- Method, registry


@dataclasses.dataclass(frozen=True)
class Carry:
  """A method's state across events (``context.carry``): ``init(params, context, **hparams)``
  makes it before training (with ``prepare``); ``update(carry, params, context, **hparams)``
  advances it before each event, from the event's activations (``context.activations``), and R
  and the mask read the advanced value."""

  init: Callable
  update: Callable


@dataclasses.dataclass(frozen=True)
class Declaration:
  """What :func:`register` records for a method (see the module docstring for each field)."""

  name: str
  fn: Callable
  hparams: Mapping[str, Hparam]
  mask: Callable | None = None
  prepare: Callable | None = None
  normalize: Callable | None = None
  activations: bool = False
  carry: Carry | None = None


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity, so jax.jit(R) works
class Method:
  """A registered method with its hyperparameters bound: what :func:`get` returns.

  ``R(params, fresh, stage, key, context) -> params``: ``stage`` is the stage just finished (t ≥ 1,
  Python int or traced int32), ``key`` a PRNG key for the event (methods fold ``stage`` into it
  again, so a reused key never repeats a draw), ``context`` a :class:`Context`.
  """

  declaration: Declaration
  hparams: dict

  @property
  def name(self) -> str:
    return self.declaration.name

  def __call__(self, params, fresh, stage, key, context: Context | None = None) -> PyTree:
    _check_stage(stage)
    context = Context() if context is None else context
    return self.declaration.fn(params, fresh, stage, key, context, **self.hparams)

  def reinit_mask(self, params, stage, key, context: Context | None = None) -> PyTree:
    """Where θ_init enters θ at this event: the declared mask, or the probe fallback."""
    _check_stage(stage)
    context = Context() if context is None else context
    if self.declaration.mask is not None:
      return self.declaration.mask(params, stage, key, context, **self.hparams)
    probe = jax.tree.map(lambda p: p + jnp.ones_like(p), params)
    out = self.declaration.fn(params, probe, stage, key, context, **self.hparams)
    return jax.tree.map(lambda a, b: a != b, out, params)

  @property
  def uses_activations(self) -> bool:
    """Whether R reads ``context.activations`` (the blocks' outputs on the event's batch)."""
    return self.declaration.activations

  @property
  def carries_state(self) -> bool:
    """Whether the method keeps state across events (``context.carry``; declared ``carry=``)."""
    return self.declaration.carry is not None

  @property
  def prepares(self) -> bool:
    """Whether :meth:`prepare` adds anything to the context (a fixed mask, a carry)."""
    return self.declaration.prepare is not None or self.carries_state

  def prepare(self, key, params, context: Context) -> Context:
    """Called once before training: stores the declared ``prepare`` mask as ``fixed_mask`` and
    the declared carry's initial value as ``carry``."""
    decl = self.declaration
    if decl.prepare is not None:
      context = context.replace(fixed_mask=decl.prepare(key, params, context, **self.hparams))
    if decl.carry is not None:
      context = context.replace(carry=decl.carry.init(params, context, **self.hparams))
    return context

  def advance(self, params, context: Context) -> Context:
    """The context with the carry advanced for this event (``context.activations`` set); the
    context unchanged for a method without one."""
    if self.declaration.carry is None:
      return context
    if context.carry is None or context.activations is None:
      raise ValueError(f"method {self.name!r} keeps state across events: call method.prepare "
                       "once, then events.advance_context before every event")
    return context.replace(carry=self.declaration.carry.update(context.carry, params, context,
                                                                **self.hparams))

  def normalize_block(self, stage) -> jax.Array:
    """1-based block whose output gets a measured normalization after this event; 0 for none."""
    if self.declaration.normalize is None:
      return jnp.zeros((), jnp.int32)
    return self.declaration.normalize(stage, **self.hparams)

  @property
  def uses_normalization(self) -> bool:
    return self.declaration.normalize is not None

  @property
  def events_per_block(self) -> int | None:
    """M of a method that normalizes per block and has hyperparameter ``events_per_block``."""
    return self.hparams.get("events_per_block") if self.uses_normalization else None


def _check_stage(stage):
  if isinstance(stage, (bool, np.bool_)):
    raise ValueError(f"stage must be an integer ≥ 1, got {stage!r}")
  if isinstance(stage, (int, np.integer)) and stage < 1:
    raise ValueError(f"stage must be an integer ≥ 1 (the stage just finished), got {stage}")


_REGISTRY: dict[str, Declaration] = {}
_ARGS = ("params", "fresh", "stage", "key", "context")


def _declared_hparams(name: str, fn: Callable, hparams: Mapping[str, Hparam] | None) -> dict:
  """R's hyperparameters; a declared one that R does not accept fails at registration."""
  sig = inspect.signature(fn).parameters
  if tuple(sig)[:5] != _ARGS:
    raise ValueError(f"method {name!r}: R must take {', '.join(_ARGS)} first, got "
                     f"{', '.join(sig)}")
  extra = {k: p for k, p in sig.items() if k not in _ARGS and p.kind not in (p.VAR_KEYWORD,
                                                                             p.VAR_POSITIONAL)}
  if hparams is None:
    return {k: Hparam(p.default) for k, p in extra.items() if p.default is not p.empty}
  if not all(isinstance(h, Hparam) for h in hparams.values()):
    raise ValueError(f"method {name!r}: hparams must map names to methods.Hparam, got {hparams!r}")
  takes_any = any(p.kind == p.VAR_KEYWORD for p in sig.values())
  for k, p in extra.items():
    if k not in hparams:
      raise ValueError(f"method {name!r}: R's argument {k!r} is not a declared hyperparameter; "
                       f"declared: {', '.join(sorted(hparams)) or 'none'}")
    if p.default is not p.empty and p.default != hparams[k].default:
      raise ValueError(f"method {name!r}: R's default {k}={p.default!r} differs from the "
                       f"declared default {hparams[k].default!r}")
  missing = sorted(set(hparams) - set(extra))
  if missing and not takes_any:
    raise ValueError(f"method {name!r}: R takes no argument {missing[0]!r} (declared in hparams)")
  return dict(hparams)


def register(name: str, *, hparams: Mapping[str, Hparam] | None = None,
             mask: Callable | None = None, prepare: Callable | None = None,
             normalize: Callable | None = None, activations: bool = False,
             carry: Carry | None = None) -> Callable:
  """Decorator registering ``R(params, fresh, stage, key, context, **hparams)`` as method ``name``.

  Every argument is described in the module docstring (the one way to declare a method). A name
  already registered from another function fails; registering the same function again (a
  re-imported module) replaces it. Returns R unchanged.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"method name must be a non-empty string, got {name!r}")
  if carry is not None and not (isinstance(carry, Carry) and activations):
    raise ValueError(f"method {name!r}: carry must be a methods.Carry and needs activations=True "
                     "(its update reads the event's activations)")

  def deco(fn):
    old = _REGISTRY.get(name)
    if old is not None and (old.fn.__module__, old.fn.__qualname__) != (fn.__module__,
                                                                        fn.__qualname__):
      raise ValueError(f"method {name!r} is already registered by "
                       f"{old.fn.__module__}.{old.fn.__qualname__}; choose another name")
    _REGISTRY[name] = Declaration(name, fn, _declared_hparams(name, fn, hparams), mask, prepare,
                                  normalize, activations, carry)
    return fn

  return deco


def names() -> tuple[str, ...]:
  """Registered method names."""
  return tuple(sorted(_REGISTRY))


def get(name: str, **hparams) -> Method:
  """The method ``name`` with hyperparameters bound, e.g. ``get('shrink_perturb', shrink=0.6)``.

  Raises a one-line ValueError for an unknown method, an unknown hyperparameter (listing the
  allowed ones) or a value outside its declared range.
  """
  if name not in _REGISTRY:
    raise ValueError(f"method must be one of {names()}, got {name!r}")
  decl = _REGISTRY[name]
  for k in sorted(hparams):
    if k not in decl.hparams:
      near = difflib.get_close_matches(k, decl.hparams, n=1)
      hint = f" (did you mean {near[0]!r}?)" if near else ""
      raise ValueError(f"{name}: no hyperparameter {k!r}{hint}; allowed: "
                       f"{', '.join(sorted(decl.hparams)) or 'none'}")
  bound = {}
  for k, h in decl.hparams.items():
    value = hparams.get(k, h.default)
    if not h.valid(value):
      raise ValueError(f"{name}: {k} must be {h.allowed}, got {value!r}")
    bound[k] = h.convert(value)
  return Method(decl, bound)


def import_modules(modules: Sequence[str]) -> tuple:
  """Imports each module (a dotted name, or the path of a .py file) so its methods are registered.

  For a config field listing the user's modules, imported before methods are looked up. A file is
  imported once per process under a name derived from its absolute path. Returns the modules.
  """
  if isinstance(modules, str):
    modules = (modules,)
  out = []
  for entry in modules:
    if not isinstance(entry, str) or not entry:
      raise ValueError(f"modules: each entry must be a module name or a .py path, got {entry!r}")
    if entry.endswith(".py") or os.sep in entry:
      out.append(_import_file(entry))
      continue
    try:
      out.append(importlib.import_module(entry))
    except ModuleNotFoundError as e:
      if e.name is None or not (entry == e.name or entry.startswith(e.name + ".")):
        raise  # the module exists but something it imports does not: keep the real error
      raise ValueError(f"modules: cannot import {entry!r} (no module named {e.name!r})") from None
  return tuple(out)


def _import_file(entry: str):
  path = os.path.abspath(os.path.expanduser(entry))
  if not os.path.isfile(path):
    raise ValueError(f"modules: no file {entry!r} (looked at {path})")
  stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
  modname = f"_reinit_user_{stem}_{hashlib.sha1(path.encode()).hexdigest()[:8]}"
  if modname in sys.modules:
    return sys.modules[modname]
  spec = importlib.util.spec_from_file_location(modname, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[modname] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[modname]
    raise
  return module
