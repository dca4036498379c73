"""Config validation before any compute, and resolution of the setting presets (SPEC §3).

Every check raises ``ValueError`` with one line that names the field and its allowed values, so a
bad sweep entry fails in milliseconds instead of after a compile.
"""

from __future__ import annotations

import jax
import ml_collections
import optax

SETTINGS = ("", "none", "D", "DC", "DCW")
SCHEDULES = ("constant", "cosine_per_stage", "cosine")
OPTIMIZERS = tuple(n for n in ("sgd", "adam", "adamw", "nadam", "nadamw", "radam", "rmsprop",
                               "adagrad", "adamax", "adamaxw", "amsgrad", "adabelief", "lamb",
                               "lars", "lion", "yogi", "novograd", "noisy_sgd", "sm3", "fromage")
                   if hasattr(optax, n))
OPTIMIZER_POLICIES = ("reset", "keep", "mask")
BATCH_STATS_POLICIES = ("reset", "keep")
PROGRESS = ("auto", "bar", "log", "off")


def _fail(field, value, allowed):
  raise ValueError(f"config.{field}={value!r} is invalid; allowed: {allowed}")


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
  c = resolve(config)
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
  if c.progress not in PROGRESS:
    _fail("progress", c.progress, ", ".join(PROGRESS))
  seeds = tuple(c.seeds)
  if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
    _fail("seeds", c.seeds, "a non-empty tuple of distinct integers >= 0")
  for name in ("batch_size", "eval_every_epochs", "checkpoint_every", "stop_after_steps"):
    if not isinstance(c[name], int) or c[name] < 0:
      _fail(name, c[name], "an integer >= 0")
  for name in ("eval_batch_size", "norm_batch_size", "max_steps_per_call", "keep_checkpoints",
               "chunks"):
    if not isinstance(c[name], int) or c[name] < 1:
      _fail(name, c[name], "an integer >= 1")
  n_dev = jax.device_count()
  if c.batch_size % n_dev:
    _fail("batch_size", c.batch_size, f"a multiple of the device count {n_dev} (0: full batch)")
  if c.chunks > 1 and c.chunks != c.stages:
    _fail("chunks", c.chunks, f"1 or equal to stages={c.stages} (online: stage t sees chunks 1..t)")
  method = methods.get(c.method, **c.method_kwargs.to_dict())  # raises on a bad hyperparameter
  m = getattr(method, "events_per_block", None)
  if m and c.stages % m:
    _fail("stages", c.stages, f"a multiple of layerwise events_per_block M={m}")
  data.registry.options(_data_view(c))  # the data package's own checks (augmentation, label_noise, ...)
  num_classes = 8 if c.dataset == "synthetic" else data.registry.DATASETS[c.dataset].num_classes
  # Building the module is cheap (no parameters drawn) and checks the model's own options.
  models.create(c.model, num_classes, num_blocks=c.num_blocks, **c.model_kwargs.to_dict())
  return c


def _data_view(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The fields ``reinit_jax.data.build`` reads, with the data seed filled in."""
  fields = ("dataset", "data_dir", "manual_dir", "validation_fraction", "augmentation",
            "image_size", "label_noise", "chunks", "train_subset", "synthetic_alpha",
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
