"""Overrides of a config: the ``:k=v,...`` of ``--config=file.py:arg`` and ``--config.<field>=v``.

In ``:arg`` a key is one of the config file's own study knobs (``alpha=``, ``q=``, ``grid=``), a
dotted field (``optim.learning_rate=0.1``, ``model.options.width=0.5``) or the leaf name of a field
that no other section shares (``learning_rate=0.1``, ``stages=5``, ``seeds=(0;1;2)``). Values are
Python literals where they parse (tuples in parentheses with ``;`` between items), else strings;
``seeds=n`` means seeds 0..n−1 (``seeds=(5;)`` is seed 5 alone).
Every mistake is one ValueError line naming the key.
"""

from __future__ import annotations

import ast
import difflib
from typing import Any

import ml_collections

from reinit_jax.train.config import fields, short_names


def parse_value(text: str) -> Any:
  """``'0.1'`` -> 0.1, ``'(0;1)'`` -> (0, 1), ``'(standard;full)'`` -> ('standard', 'full'),
  ``'True'`` -> True, anything else -> the string."""
  try:
    return ast.literal_eval(text.replace(";", ","))
  except (ValueError, SyntaxError):
    pass
  inner = text.strip()
  if inner.startswith("(") and inner.endswith(")") and ";" in inner:  # items written bare
    return tuple(parse_value(item.strip()) for item in inner[1:-1].split(";") if item.strip())
  return text


def split_arg(arg: str | None) -> list[tuple[str, str]]:
  """``'a=1,b=x'`` -> [('a', '1'), ('b', 'x')]; a malformed item raises one line."""
  out = []
  for item in (arg or "").split(","):
    if not item.strip():
      continue
    if "=" not in item:
      raise ValueError(f"config override {item.strip()!r} must look like key=value")
    key, value = (s.strip() for s in item.split("=", 1))
    out.append((key, value))
  return out


def dotted_name(key: str) -> str | None:
  """The dotted field a ``:arg`` key names (itself, or a unique leaf's section), else None."""
  known = fields()
  if key in known:
    return key
  head = key.split(".")
  short = short_names()
  for n in range(len(head) - 1, 0, -1):  # a key inside a dict field: model.options.width
    field = ".".join(head[:n])
    field = field if field in known else short.get(field)
    if field is not None and isinstance(known[field].default, dict):
      return ".".join([field, *head[n:]])
  return short.get(key)


def known_name(key: str) -> str:
  """``dotted_name(key)``; an unknown key fails in one line with the nearest field's name."""
  dotted = dotted_name(key)
  if dotted is None:
    near = difflib.get_close_matches(key, list(fields()) + list(short_names()), n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]}?" if near else ""
    raise ValueError(f"config has no field {key!r}{hint} (launch.py --help lists them)")
  return dotted


def set_field(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """Sets field ``key`` (dotted or a unique leaf name) to ``value``, converted to the field's type
  (an int for a float field, one item for a tuple field); one ValueError line on any mistake."""
  dotted = known_name(key)
  *parents, leaf = dotted.split(".")
  target = config
  for p in parents:
    if p not in target:
      target[p] = ml_collections.ConfigDict()
    target = target[p]
  old = target.get(leaf) if leaf in target else None
  free_type = dotted in fields() and fields()[dotted].type is object  # reinit.method: str or tuple
  if isinstance(old, (tuple, list)) and not isinstance(value, (tuple, list)) and not free_type:
    value = (value,)
  if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  try:
    with config.unlocked():
      target[leaf] = value
  except (TypeError, ValueError) as e:  # ConfigDict's type check: one line naming the field
    want = type(old).__name__ if old is not None else "another type"
    raise ValueError(f"config.{dotted}={value!r} is invalid: expected {want} "
                     f"({' '.join(str(e).split())})") from None


def apply(config: ml_collections.ConfigDict, arg: str | None, **knobs: Any) -> dict[str, Any]:
  """Applies ``arg`` to ``config``; returns the study ``knobs`` (defaults updated from ``arg``).

  A knob's value takes the type of its default (``seeds=3`` for an int knob, ``q=0`` for a float
  one); a value that does not convert raises one line naming the knob.
  """
  out = dict(knobs)
  for key, text in split_arg(arg):
    value = parse_value(text)
    if key in knobs:
      out[key] = _as_type(key, value, knobs[key], text)
    elif dotted_name(key) == "run.seeds":
      set_field(config, key, seeds_from(value))
    else:
      set_field(config, key, value)
  return out


def _as_type(key, value, default, text):
  if default is None or isinstance(value, type(default)):
    return value
  if isinstance(default, bool) or (isinstance(default, (int, float)) and isinstance(value, str)):
    raise ValueError(f"config override {key}={text!r} is invalid: expected "
                     f"{type(default).__name__}")
  if isinstance(default, float) and isinstance(value, int):
    return float(value)
  if isinstance(default, tuple):
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)
  return value


def seeds_from(value) -> tuple[int, ...]:
  """``seeds=n`` (an int) means seeds 0..n−1; a tuple is kept as it is."""
  if isinstance(value, bool) or not isinstance(value, (int, tuple, list)):
    raise ValueError(f"config override seeds={value!r} is invalid: expected an integer n "
                     "(seeds 0..n-1) or a tuple such as (0;1;2)")
  return tuple(range(value)) if isinstance(value, int) else tuple(value)
