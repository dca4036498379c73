"""Config validation before any compute, and resolution of the setting presets (SPEC §3).

Every check raises ``ValueError`` with one line that names the field and its allowed values, so a
bad sweep entry fails in milliseconds instead of after a compile.
"""

from __future__ import annotations

import difflib
import math

import jax
import ml_collections
import optax

from reinit_jax.events import BATCH_STATS_POLICIES, IDLE_NORM_POLICIES, OPTIMIZER_POLICIES
from reinit_jax.train.faults import NAN_POLICIES

SETTINGS = ("", "none", "D", "DC", "DCW")
SCHEDULES = ("constant", "cosine_per_stage", "cosine")
OPTIMIZERS = tuple(n for n in ("sgd", "adam", "adamw", "nadam", "nadamw", "radam", "rmsprop",
                               "adagrad", "adamax", "adamaxw", "amsgrad", "adabelief", "lamb",
                               "lars", "lion", "yogi", "novograd", "noisy_sgd", "sm3", "fromage")
                   if hasattr(optax, n))
PROGRESS = ("auto", "bar", "log", "off")


def _fail(field, value, allowed):
  shown = " ".join(repr(value).split())  # one line even for a nested dict
  shown = shown if len(shown) <= 80 else shown[:77] + "..."
  raise ValueError(f"config.{field}={shown} is invalid; allowed: {allowed}")


def _int(v):
  return isinstance(v, int) and not isinstance(v, bool)


def _num(v):
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# Field -> (check, allowed): the type and range of every field of defaults.base_config. Names
# (registries) and constraints between fields are checked in ``validate`` after these.
_STR = (lambda v: isinstance(v, str), "a string")
_OPT_STR = (lambda v: v is None or isinstance(v, str), "a string or None")
_BOOL = (lambda v: isinstance(v, bool), "True or False")
_DICT = (lambda v: isinstance(v, (dict, ml_collections.ConfigDict)), "a dict of keyword arguments")
_INT0 = (lambda v: _int(v) and v >= 0, "an integer >= 0")
_INT1 = (lambda v: _int(v) and v >= 1, "an integer >= 1")
_OPT_INT1 = (lambda v: v is None or (_int(v) and v >= 1), "None or an integer >= 1")
_NUM0 = (lambda v: _num(v) and v >= 0, "a finite number >= 0")
_UNIT = (lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)")
FIELDS = {
  "name": _STR, "model": _STR, "model_kwargs": _DICT, "num_blocks": _OPT_INT1, "method": _STR,
  "method_kwargs": _DICT,
  "methods": (lambda v: isinstance(v, (tuple, list)) and all(isinstance(m, str) for m in v),
              "a tuple of method names"),
  "dataset": _STR, "data_dir": _OPT_STR, "manual_dir": _OPT_STR,
  "validation_fraction": (lambda v: v is None or (_num(v) and 0 <= v < 1), "None or in [0, 1)"),
  "batch_size": _INT0, "augmentation": _STR, "image_size": _OPT_INT1, "label_noise": _UNIT,
  "chunks": _INT1, "train_subset": _OPT_INT1,
  "in_memory": (lambda v: v is None or isinstance(v, bool), "None or True or False"),
  "synthetic_alpha": (_num, "a finite number"),
  "synthetic_train": _INT1, "synthetic_test": _INT1,
  "data_seed": (lambda v: v is None or (_int(v) and v >= 0), "None or an integer >= 0"),
  "epochs": _INT1, "stages": _INT1, "setting": _STR, "setting_weight_decay": _NUM0,
  "setting_augmentation": _STR, "optimizer": _STR, "optimizer_kwargs": _DICT,
  "momentum": (lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)"),
  "learning_rate": (lambda v: _num(v) and v > 0, "a finite number > 0"),
  "schedule": _STR, "weight_decay": _NUM0, "optimizer_policy": _STR, "batch_stats_policy": _STR,
  "idle_norm_policy": _STR, "tune_cpu_allocator": _BOOL,
  "distill": _BOOL, "distill_beta": _NUM0, "distill_live": _BOOL,
  "seeds": (lambda v: isinstance(v, (tuple, list)) and len(v) > 0 and len(set(v)) == len(v)
            and all(_int(s) and s >= 0 for s in v), "a non-empty tuple of distinct integers >= 0"),
  "eval_every_epochs": _INT0, "eval_batch_size": _INT1, "norm_batch_size": _INT1,
  "max_steps_per_call": _INT1, "checkpoint_every": _INT0,
  # Two at least: a corrupt newest checkpoint falls back to the one before it.
  "keep_checkpoints": (lambda v: _int(v) and v >= 2, "an integer >= 2 (a corrupt newest "
                       "checkpoint falls back to the previous one)"),
  "progress": _STR, "distributed": _BOOL, "stop_after_steps": _INT0, "nan_policy": _STR,
  "restart": _BOOL,
}


def check_fields(c) -> None:
  """Types and ranges of every known field; an unknown field that looks like a misspelt one
  (e.g. ``seed`` for ``seeds``) fails too. Other unknown fields are a config file's own knobs
  (configs/synthetic.py's ``alpha``) and pass."""
  for field, (ok, allowed) in FIELDS.items():
    if field not in c:
      raise ValueError(f"config.{field} is missing; start from reinit_jax.train.base_config()")
    try:
      good = ok(c[field])
    except TypeError:
      good = False
    if not good:
      _fail(field, c[field], allowed)
  for field in c.keys():
    if field not in FIELDS:
      near = difflib.get_close_matches(field, FIELDS, n=1, cutoff=0.85)
      if near:
        raise ValueError(f"config.{field} is not a field; did you mean config.{near[0]}?")


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Returns a copy with the setting preset applied (SPEC §3, [Z]).

  Ø ('none'): no augmentation, constant LR, no weight decay; D: + ``setting_augmentation``;
  DC: + cosine annealing restarted every stage (for ``standard`` this is SGDR, [Z §5.3]);
  DCW: + weight decay ``setting_weight_decay``. ``setting=''`` keeps the explicit fields.
  """
  c = ml_collections.ConfigDict(config.to_dict())
  s = c.setting
  if s not in SETTINGS:
    _fail("setting", s, "'' (explicit fields), 'none', 'D', 'DC', 'DCW'")
  if s:
    c.augmentation = c.setting_augmentation if "D" in s else "none"
    c.schedule = "cosine_per_stage" if "C" in s else "constant"
    c.weight_decay = float(c.setting_weight_decay) if "W" in s else 0.0
  return c


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Checks every field of a (resolved) config; returns the resolved config.

  Checked: method / model / dataset names (against their registries), method hyperparameters,
  stages ≤ epochs, stages a multiple of M for layerwise, lr > 0, weight decay ≥ 0, β ≥ 0, schedule,
  optimizer, policies, setting, seeds, batch size divisible by the device count, online chunks.
  """
  from reinit_jax import data, methods, models
  from reinit_jax.data import registry as _registry  # noqa: F401  (data.registry below)
  check_fields(config)
  c = resolve(config)
  check_fields(c)
  if c.model not in models.names():
    _fail("model", c.model, ", ".join(models.names()))
  if c.method not in methods.names():
    _fail("method", c.method, ", ".join(methods.names()))
  for m in c.methods:
    if m not in methods.names():
      _fail("methods", m, ", ".join(methods.names()))
  if c.dataset not in data.names():
    _fail("dataset", c.dataset, ", ".join(data.names()))
  if not isinstance(c.epochs, int) or c.epochs < 1:
    _fail("epochs", c.epochs, "an integer >= 1")
  if not isinstance(c.stages, int) or not 1 <= c.stages <= c.epochs:
    _fail("stages", c.stages, f"an integer in [1, epochs={c.epochs}]")
  if not c.learning_rate > 0:
    _fail("learning_rate", c.learning_rate, "a number > 0")
  if not c.weight_decay >= 0:
    _fail("weight_decay", c.weight_decay, "a number >= 0")
  if not c.distill_beta >= 0:
    _fail("distill_beta", c.distill_beta, "a number >= 0")
  if c.schedule not in SCHEDULES:
    _fail("schedule", c.schedule, ", ".join(SCHEDULES))
  if c.optimizer not in OPTIMIZERS:
    _fail("optimizer", c.optimizer, ", ".join(OPTIMIZERS))
  if c.optimizer_policy not in OPTIMIZER_POLICIES:
    _fail("optimizer_policy", c.optimizer_policy, ", ".join(OPTIMIZER_POLICIES))
  if c.batch_stats_policy not in BATCH_STATS_POLICIES:
    _fail("batch_stats_policy", c.batch_stats_policy, ", ".join(BATCH_STATS_POLICIES))
  if c.idle_norm_policy not in IDLE_NORM_POLICIES:
    _fail("idle_norm_policy", c.idle_norm_policy, ", ".join(IDLE_NORM_POLICIES))
  if c.progress not in PROGRESS:
    _fail("progress", c.progress, ", ".join(PROGRESS))
  if config.setting_augmentation not in data.AUGMENTATIONS:  # checked even when no preset uses it
    _fail("setting_augmentation", config.setting_augmentation, ", ".join(data.AUGMENTATIONS))
  if c.nan_policy not in NAN_POLICIES:
    _fail("nan_policy", c.nan_policy, ", ".join(NAN_POLICIES))
  n_dev = jax.device_count()
  if c.batch_size % n_dev:
    _fail("batch_size", c.batch_size, f"a multiple of the device count {n_dev} (0: full batch)")
  if c.chunks > 1 and c.chunks != c.stages:
    _fail("chunks", c.chunks, f"1 or equal to stages={c.stages} (online: stage t sees chunks 1..t)")
  method = _checked("method_kwargs", c.method_kwargs,
                     lambda: methods.get(c.method, **c.method_kwargs.to_dict()))
  m = getattr(method, "events_per_block", None)
  if m and c.stages % m:
    _fail("stages", c.stages, f"a multiple of layerwise events_per_block M={m}")
  # The data package's own checks (augmentation, label_noise, ...) name their field.
  _checked("dataset", c.dataset, lambda: data.registry.options(_data_view(c)))
  num_classes = 8 if c.dataset == "synthetic" else data.registry.DATASETS[c.dataset].num_classes
  # Building the module is cheap (no parameters drawn) and checks the model's own options.
  _checked("model_kwargs", c.model_kwargs, lambda: models.create(
    c.model, num_classes, num_blocks=c.num_blocks, **c.model_kwargs.to_dict()))
  from reinit_jax.train import schedules  # builds optax transformations only: no compute
  _checked("optimizer_kwargs", c.optimizer_kwargs, lambda: schedules.make_optimizer(
    c.optimizer, c.weight_decay, c.momentum, c.optimizer_kwargs.to_dict()))
  return c


def _checked(field, value, build):
  """``build()``, with any TypeError/ValueError it raises turned into one line naming ``field``."""
  try:
    return build()
  except (TypeError, ValueError, KeyError) as e:
    msg = " ".join(str(e).split())
    if msg.startswith("config."):
      raise ValueError(msg) from None
    head = msg.split("=", 1)[0].split(" ", 1)[0]
    if head in FIELDS:  # the data package names its own field (e.g. "augmentation='x' is ...")
      raise ValueError(f"config.{msg}") from None
    _fail(field, value, msg or type(e).__name__)


def _data_view(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The fields ``reinit_jax.data.build`` reads, with the data seed filled in."""
  fields = ("dataset", "data_dir", "manual_dir", "validation_fraction", "augmentation",
            "image_size", "label_noise", "chunks", "train_subset", "in_memory", "synthetic_alpha",
            "synthetic_train", "synthetic_test")
  view = ml_collections.ConfigDict({f: c[f] for f in fields})
  view.batch_size = c.batch_size if c.batch_size else 1
  view.seed = c.seeds[0] if c.data_seed is None else c.data_seed
  if view.validation_fraction is None:
    del view["validation_fraction"]
  return view


def data_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Public accessor for the data view of a validated config (docs/CONTRACTS.md, Data)."""
  return _data_view(c)
