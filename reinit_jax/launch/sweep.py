"""Sweeps: a config file declares a grid of points; launch.py lists them, runs one, or runs all.

A config file that supports sweeps defines, next to ``get_config(arg)``::

    def get_sweep(arg=None):
      return sweep.product(method=("standard", "layerwise"), alpha=(0.5, 1, 2))

returning a list of points, each a dict of ``:arg`` overrides (the keys ``get_config`` accepts, so
short study knobs such as ``alpha=`` or ``q=`` go through the config's own post-processing). A point
runs exactly as ``--config=<file>:<arg>,<point>``: its overrides are appended after the command's
own, so they win. Seeds are not a grid axis: every point trains all of ``config.run.seeds`` on the
engine's run axis.

    python launch.py --config=configs/synthetic.py:seeds=100 --sweep=list   # one command per point
    python launch.py --config=configs/synthetic.py:seeds=100 --sweep=3      # point 3 only
    python launch.py --config=configs/synthetic.py:seeds=100 --sweep=all    # every point, one process

Point ``i`` writes into ``<workdir>/<point name>/`` (workdir default: ``runs/<config.name>``), the
name made of the point's ``key-value`` pairs, e.g. ``method-layerwise_alpha-0.5``. A point that sets
``method`` to one name replaces a study's tuple: it is exactly one run (one summary.json, own resume).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import shlex
import sys
from typing import Any, Iterable

import ml_collections

from reinit_jax.launch import overrides


def product(**axes: Iterable[Any]) -> list[dict]:
  """The full grid of ``axes`` (the first axis varies slowest), as a list of point dicts."""
  keys = list(axes)
  values = [tuple(v) for v in axes.values()]
  for k, v in zip(keys, values):
    if not v:
      raise ValueError(f"sweep axis {k!r} has no values")
  return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def format_value(v: Any) -> str:
  """A value as ``parse_overrides`` reads it back (tuples in parentheses with ``;``)."""
  if isinstance(v, (tuple, list)):
    return "(" + ";".join(format_value(x) for x in v) + ("" if len(v) != 1 else ";") + ")"
  if isinstance(v, float):
    return repr(v)
  return str(v)


def point_arg(point: dict) -> str:
  """``k=v,k=v`` for a point (the text appended after the config's ``:arg``)."""
  return ",".join(f"{k}={format_value(v)}" for k, v in point.items())


def point_name(point: dict) -> str:
  """A directory name for a point: ``key-value`` pairs joined by ``_``, in the point's order."""
  parts = []
  for k, v in point.items():
    text = format_value(v).strip("()").replace(";", "-")
    parts.append(f"{k.replace('.', '-')}-{text}")
  name = "_".join(parts) or "point"
  return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def split_config_path(config_path: str) -> tuple[str, str]:
  """``'configs/x.py:a=1'`` -> ``('configs/x.py', 'a=1')``."""
  path, _, arg = config_path.partition(":")
  return path, arg


def load_module(path: str):
  """Imports a config file by path (as ml_collections' config_flags does)."""
  name = "sweep_config_" + re.sub(r"\W", "_", os.path.abspath(path))
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise ValueError(f"config file {path!r} cannot be imported")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def points(config_path: str, module=None) -> list[dict]:
  """The grid declared by the config file's ``get_sweep(arg)``; ValueError if it has none.
  ``module``: the config file already imported (:func:`load_module`), else it is imported here."""
  path, arg = split_config_path(config_path)
  module = module or load_module(path)
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"{path} declares no sweep (define get_sweep(arg) returning a list of dicts)")
  grid = list(module.get_sweep(arg or None))
  if not grid:
    raise ValueError(f"{path}: get_sweep({arg!r}) returned no points")
  names = [point_name(p) for p in grid]
  dup = sorted({n for n in names if names.count(n) > 1})
  if dup:
    raise ValueError(f"{path}: sweep points share the name {dup[0]!r}; make the points distinct")
  return grid


def merged_arg(arg: str, point: dict) -> str:
  """The config's ``:arg`` followed by the point's overrides (later keys win in parse_overrides)."""
  return ",".join(s for s in (arg, point_arg(point)) if s)


def point_config(config_path: str, index: int) -> tuple[str, ml_collections.ConfigDict]:
  """(name, config) of point ``index``: ``get_config(<arg>,<point>)`` of the config file."""
  grid = point_configs(config_path)
  if not 0 <= index < len(grid):
    raise ValueError(f"sweep index {index} out of range: the grid has {len(grid)} points "
                     f"(0..{len(grid) - 1})")
  return grid[index]


def point_configs(config_path: str) -> list[tuple[str, ml_collections.ConfigDict]]:
  """(name, config) of every point, the config file imported once (``get_config`` is cheap: no
  JAX)."""
  path, arg = split_config_path(config_path)
  module = load_module(path)
  return [(point_name(p), module.get_config(merged_arg(arg, p)))
          for p in points(config_path, module)]


def default_workdir(config_path: str) -> str:
  """``runs/<config.name>`` of the config without any point applied."""
  path, arg = split_config_path(config_path)
  return os.path.join("runs", load_module(path).get_config(arg or None).name)


def commands(config_path: str, workdir: str, extra_flags: Iterable[str] = (), values=None,
             launcher: str = "python launch.py") -> list[str]:
  """One shell command per point, equivalent to ``--sweep=<index>`` (same config, same workdir).

  ``extra_flags`` (e.g. ``--config.progress=off``) are appended to every command unchanged;
  ``values``: the same flags as parsed ({dotted field: value}), applied to every point's config
  first, so a value of the wrong type fails here rather than in each point's process.
  """
  path, arg = split_config_path(config_path)
  module = load_module(path)
  grid = points(config_path, module)
  if values:
    for p in grid:
      set_overrides(module.get_config(merged_arg(arg, p)), values)
  out = []
  for p in grid:
    words = [f"--config={path}:{merged_arg(arg, p)}",
             f"--workdir={os.path.join(workdir, point_name(p))}"]
    words += list(extra_flags)
    out.append(launcher + " " + " ".join(shlex.quote(w) for w in words))
  return out


def set_overrides(config: ml_collections.ConfigDict, values: dict) -> None:
  """Applies ``--config.<dotted.field>=value`` overrides (as config_flags parsed them)."""
  for key, value in values.items():
    overrides.set_field(config, key, value)


if __name__ == "__main__":  # python -m reinit_jax.launch.sweep configs/x.py:arg  -> the commands
  for line in commands(sys.argv[1], default_workdir(sys.argv[1]), sys.argv[2:]):
    print(line)
