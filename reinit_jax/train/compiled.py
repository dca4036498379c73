"""Compiled functions shared by the runs of one process (a grid's points), keyed by their inputs.

``--sweep=all`` trains many points in one process, and most of them could share their train step,
evaluation and init: the train step does not read the method, α of the synthetic task is data, a
seed count is a shape. A built function is reused only when everything its builder may read is
equal: the whole (validated) config except the fields the schema marks ``host``
(:data:`NOT_COMPILED`) and those :data:`NOT_READ` names for that kind of function, plus what the
built data and devices decide (``derived``: shapes, stage geometry, placement). A field is in the
key unless the schema or a list says otherwise, so a field forgotten costs one more compilation,
never a reused function compiled for another value
(tests/test_compiled.py runs every listed field both ways and compares the results).

This module's ``_CACHE`` is the one piece of process-wide state the engine keeps; :func:`clear`
empties it (tests that patch a builder, benchmarks that time compilations).
"""

from __future__ import annotations

import json
from typing import Any, Callable

from reinit_jax.train.config import fields, get

_CACHE: dict[str, Any] = {}

# Read by no compiled function: the fields the schema marks ``host`` (the host loop and its outputs,
# values that reach the functions as array arguments or as shapes in ``derived``, presets already
# resolved into other fields).
NOT_COMPILED = tuple(name for name, field in fields().items() if not field.compiled)

# What only the event reads (the train step sees its result, not its settings).
_EVENT_ONLY = ("reinit.method", "reinit.hparams", "reinit.optimizer_policy",
               "reinit.batch_stats_policy", "reinit.idle_norm_policy", "reinit.select_impl",
               "reinit.norm_batch_size")
# What only training reads.
_TRAINING_ONLY = ("run.nan_policy", "run.max_steps_per_call", "reinit.distill_beta",
                  "reinit.distill_live")
_FORWARD_ONLY = tuple(f for f in fields() if f.startswith(("optim.", "reinit."))) + _TRAINING_ONLY

NOT_READ: dict[str, tuple[str, ...]] = {
  "train": _EVENT_ONLY,
  "event": _TRAINING_ONLY[:2],
  "prepare": _TRAINING_ONLY,
  "init": _EVENT_ONLY + _TRAINING_ONLY,  # the optimizer's state and whether a teacher is kept
  "eval": _FORWARD_ONLY,  # the model's forward pass in evaluation mode
  "features": _FORWARD_ONLY,
  "teacher": _FORWARD_ONLY,
  "fit": _FORWARD_ONLY,
  "norm": tuple(fields()),  # a norm of the parameters: their shapes and the placement only
}


def not_read(kind: str, config) -> tuple[str, ...]:
  """The fields a ``kind`` function does not read under ``config``: with step-level events
  (``reinit.every_steps`` > 0) the train step runs the event too, so it reads the event's fields."""
  if kind == "train" and get(config, "reinit.every_steps"):
    return ()
  return NOT_READ[kind]


def key(kind: str, config, derived) -> str:
  """The cache key of a ``kind`` function built from ``config`` and ``derived`` (JSON-able)."""
  skip = set(NOT_COMPILED) | set(not_read(kind, config))
  read = {name: get(config, name) for name in fields() if name not in skip}
  return kind + json.dumps([read, derived], sort_keys=True, default=_plain)


def _plain(value):
  to_dict = getattr(value, "to_dict", None)
  return to_dict() if to_dict is not None else str(value)


def get_or_build(kind: str, config, derived, build: Callable[[], Any]):
  """The function cached under :func:`key`, else ``build()`` (then cached)."""
  k = key(kind, config, derived)
  if k not in _CACHE:
    _CACHE[k] = build()
  return _CACHE[k]


def clear() -> None:
  """Forgets every cached function (the next run compiles its own)."""
  _CACHE.clear()
