"""A config field, defined once: its default, a check of a value, the allowed values in words and
its meaning; and the small constructors the schemas are written with.

The engine's schema (reinit_jax/train/config.py) is made of sections; the data section's fields
are the data package's own (reinit_jax/data/registry.py ``FIELDS``), so ``data.build`` on a
partial dict and a training config read the same defaults and run the same checks. This module
imports nothing of reinit_jax, so any layer can define fields.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import ml_collections


class Field(NamedTuple):
  """One config field: its default, a check of a value, the allowed values in words, its meaning."""

  default: Any
  check: Callable[[Any], bool]
  allowed: str
  help: str
  type: type | None = None  # for a None default: the type a later value takes
  # False: no compiled function reads the field (host-side: the loop, outputs, values that reach
  # the functions as arrays or shapes); train/compiled.py leaves it out of the functions' keys.
  compiled: bool = True


def host(field: Field) -> Field:
  """``field``, read by no compiled function (so runs that differ in it share their compiled
  functions, reinit_jax/train/compiled.py). Forgetting it costs a compilation, never a wrong reuse."""
  return field._replace(compiled=False)


def is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_dict(v) -> bool:
  return isinstance(v, (dict, ml_collections.ConfigDict))


def text(default, help_) -> Field:
  return Field(default, lambda v: isinstance(v, str), "a string", help_)


def one_of(default, values, help_) -> Field:
  return Field(default, lambda v: v in values, ", ".join(repr(x) for x in values), help_)


def flag(default, help_) -> Field:
  return Field(default, lambda v: isinstance(v, bool), "True or False", help_)


def integer(default, low, help_) -> Field:
  return Field(default, lambda v: is_int(v) and v >= low, f"an integer >= {low}", help_)


def optional(type_, check, allowed, help_) -> Field:
  return Field(None, lambda v: v is None or check(v), f"None or {allowed}", help_, type_)


def keywords(help_) -> Field:
  return Field({}, is_dict, "a dict of keyword arguments", help_)


def fail(field: str, value, allowed: str):
  """Raises the one-line ValueError for ``config.<field>=<value>`` (``field`` dotted); a config
  section (a ConfigDict, whose repr is YAML) is shown as the dict it holds."""
  value = value.to_dict() if hasattr(value, "to_dict") else value
  shown = " ".join(repr(value).split())  # one line even for a nested dict
  shown = shown if len(shown) <= 80 else shown[:77] + "..."
  raise ValueError(f"config.{field}={shown} is invalid; allowed: {allowed}")


def check(field: Field, value) -> bool:
  """``field.check(value)``, False where the check cannot compare the value's type."""
  try:
    return bool(field.check(value))
  except TypeError:
    return False
