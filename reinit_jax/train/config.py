"""Every field of a training config, defined once: default, check and meaning (docs/CONTRACTS.md).

A config is an ``ml_collections.ConfigDict`` in sections, each handed to its component:

* ``data``   the data set and its splits (``reinit_jax.data.build``), label noise [Z] §6, online
             chunks [AA] §3, the synthetic task [LW] §1.1;
* ``model``  the architecture and its options (``reinit_jax.models.create``);
* ``optim``  optimizer, learning-rate schedule, weight decay, the budget of epochs, the [Z] §4
             settings Ø/D/DC/DCW;
* ``reinit`` the method R and its hyperparameters, stages, what an event does to the optimizer,
             BatchNorm statistics and layer-wise normalizations ([LW] §3), self-distillation [Z] §3.1;
* ``run``    seeds, evaluation, checkpoints, progress, faults, user modules.

``SCHEMA`` below is the one definition: :func:`base_config` builds the defaults from it, validation
checks every field against it, and ``launch.py --help`` lists it. A field is addressed as
``section.field`` (``--config.optim.learning_rate=0.1`` on the command line).
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


def _int(v):
  return isinstance(v, int) and not isinstance(v, bool)


def _num(v):
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_dict(v):
  return isinstance(v, (dict, ml_collections.ConfigDict))


def _s(default, help_):
  return Field(default, lambda v: isinstance(v, str), "a string", help_)


def _one_of(default, values, help_):
  return Field(default, lambda v: v in values, ", ".join(repr(x) for x in values), help_)


def _b(default, help_):
  return Field(default, lambda v: isinstance(v, bool), "True or False", help_)


def _i(default, low, help_):
  return Field(default, lambda v: _int(v) and v >= low, f"an integer >= {low}", help_)


def _opt(type_, check, allowed, help_):
  return Field(None, lambda v: v is None or check(v), f"None or {allowed}", help_, type_)


def _d(help_):
  return Field({}, _is_dict, "a dict of keyword arguments", help_)


def _method_value(v):
  if isinstance(v, str):
    return bool(v)
  return (isinstance(v, (tuple, list)) and len(v) > 0 and len(set(v)) == len(v)
          and all(isinstance(m, str) and m for m in v))


def _seeds(v):
  return (isinstance(v, (tuple, list)) and len(v) > 0 and len(set(v)) == len(v)
          and all(_int(s) and s >= 0 for s in v))


SCHEMA: dict[str, dict[str, Field]] = {
  "data": {
    "dataset": _s("synthetic", "data set name (reinit_jax.data.names())"),
    "data_dir": _opt(str, lambda v: isinstance(v, str), "a path", "TFDS data_dir"),
    "manual_dir": _opt(str, lambda v: isinstance(v, str), "a path", "TFDS manual_dir"),
    "validation_fraction": _opt(float, lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)",
                                "held out of train for model selection (None: per data set)"),
    "batch_size": _i(0, 0, "global batch; 0: full batch (gradient descent, [LW] §1.1)"),
    "augmentation": _s("none", "'none' | 'flip' | 'cifar' (flip + pad-4 crop, [Z]) | 'lw224' ([LW])"),
    "image_size": _opt(int, lambda v: _int(v) and v >= 1, "an integer >= 1",
                       "resize images to this side"),
    "label_noise": Field(0.0, lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)",
                         "fraction q of training labels redrawn uniformly ([Z] §6)"),
    "chunks": _i(1, 1, "online learning when > 1: stage t trains on chunks 1..t ([AA] §3)"),
    "train_subset": _opt(int, lambda v: _int(v) and v >= 1, "an integer >= 1",
                         "use the first n training examples (after the hold-out)"),
    "in_memory": _opt(bool, lambda v: isinstance(v, bool), "True or False",
                      "None: per data set; False streams through tf.data"),
    "download": _b(False, "let TFDS download a data set that is not prepared (or set "
                   "REINIT_JAX_DOWNLOAD=1); offline, an unprepared data set fails in seconds"),
    "seed": _opt(int, lambda v: _int(v) and v >= 0, "an integer >= 0",
                 "seed of the shared data set (hold-out, subset, noise); None: the first run seed"),
    "per_seed": _b(False, "True: every seed draws its own data set from its seed (synthetic task)"),
    "synthetic_alpha": Field(1.0, _num, "a finite number", "signal strength α ([LW] §1.1)"),
    "synthetic_train": _i(256, 1, "synthetic training examples"),
    "synthetic_test": _i(10000, 1, "synthetic test examples"),
  },
  "model": {
    "name": _s("mlp", "model name (reinit_jax.models.names())"),
    "num_blocks": _opt(int, lambda v: _int(v) and v >= 1, "an integer >= 1",
                       "merge the declared blocks into K groups (layerwise K)"),
    "options": _d("model options: normalization, initializer, dropout, width, dtype, conv_impl"),
  },
  "optim": {
    "optimizer": _s("sgd", "an optax optimizer name"),
    "options": _d("keyword arguments of optax.<optimizer>"),
    "momentum": Field(0.9, lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)",
                      "SGD momentum (sgd only)"),
    "learning_rate": Field(0.05, lambda v: _num(v) and v > 0, "a finite number > 0",
                           "base learning rate"),
    "schedule": _one_of("constant", ("constant", "cosine_per_stage", "cosine"),
                        "learning-rate schedule; cosine_per_stage restarts at every event"),
    "weight_decay": Field(0.0, lambda v: _num(v) and v >= 0, "a finite number >= 0",
                          "L2 added to the gradient (PyTorch SGD style)"),
    "epochs": _i(1800, 1, "budget N in epochs (full batch: steps), split into the stages"),
    "setting": _one_of("", ("", "none", "D", "DC", "DCW"),
                       "[Z] §4 preset: '' keeps the fields; none | D | DC | DCW"),
    "setting_weight_decay": Field(5e-4, lambda v: _num(v) and v >= 0, "a finite number >= 0",
                                  "the W of DCW"),
    "setting_augmentation": _s("cifar", "the D of D/DC/DCW"),
  },
  "reinit": {
    "method": Field("standard", _method_value, "a method name or a tuple of distinct names",
                    "re-initialization method R (reinit_jax.methods.names()); a tuple is a study, "
                    "one run per method", object),
    "hparams": _d("hyperparameters, e.g. shrink=0.4, perturb=0.1 (a study: each method takes "
                  "those it declares)"),
    "stages": _i(9, 1, "T stages of floor(N/T) epochs; T − 1 events"),
    "optimizer_policy": _one_of("reset", ("reset", "keep", "mask"),
                                "optimizer state at events: re-created | kept | zeroed where "
                                "re-initialized"),
    "batch_stats_policy": _one_of("reset", ("reset", "keep"),
                                  "BatchNorm statistics of re-initialized layers at events"),
    "idle_norm_policy": _one_of("set", ("set", "skip"),
                                "layerwise event that re-initializes nothing (k = K): set the "
                                "normalization after block K anyway, or skip it"),
    "select_impl": _one_of("auto", ("auto", "bracket", "sort", "sort_batched", "approx"),
                           "k-smallest selection of magnitude/random_subset: auto = bracket on "
                           "CPU, one sort per tensor on GPU/TPU; approx = lax.approx_min_k (opt-in)"),
    "norm_batch_size": _i(256, 1, "training examples measuring layer-wise normalizations"),
    "distill": _b(False, "self-distillation from the previous stage's network ([Z] §3.1)"),
    "distill_beta": Field(2.0, lambda v: _num(v) and v >= 0, "a finite number >= 0",
                          "β of β·KL(teacher ‖ student)"),
    "distill_live": _b(False, "teacher forward on the augmented batch (False: cached per stage)"),
  },
  "run": {
    "seeds": Field((0,), _seeds, "a non-empty tuple of distinct integers >= 0",
                   "seeds trained together on the run axis"),
    "eval_every_epochs": _i(0, 0, "0: evaluate at the end of every stage only"),
    "eval_batch_size": _i(1000, 1, "evaluation batch"),
    "eval_train": _one_of("off", ("off", "stage", "eval", "call"),
                          "also evaluate the stage's training view (train_fit; with label noise "
                          "train_noisy, train_noisy_clean, train_clean; [Z] §6): at the end of "
                          "every stage | at every evaluation | after every train call "
                          "(train/fitting.py)"),
    "fit_threshold": Field(0.99, lambda v: _num(v) and 0 < v <= 1, "a number in (0, 1]",
                           "training accuracy counted as fitting a stage (summary epochs_to_fit "
                           "with eval_train='eval' or 'call'; [AA] §4: 99%)"),
    "max_steps_per_call": _i(256, 1, "steps per jitted call (a scan over whole epochs)"),
    "checkpoint_every": _i(0, 0, "steps between checkpoints; 0: end of every stage only"),
    # Two at least: a corrupt newest checkpoint falls back to the one before it.
    "keep_checkpoints": _i(2, 2, "checkpoints kept (a corrupt newest falls back to the previous)"),
    "progress": _one_of("auto", ("auto", "bar", "log", "off"), "progress display"),
    "distributed": _b(False, "call jax.distributed.initialize() (multi-process / TPU pod)"),
    "stop_after_steps": _i(0, 0, "stop (after a checkpoint) once this many steps ran; 0: never"),
    "nan_policy": _one_of("stop", ("stop", "skip"), "a NaN/inf step: stop (last good checkpoint "
                          "kept) | skip its update"),
    "restart": _b(False, "discard the workdir's previous outputs and start over"),
    "mesh": _one_of("auto", ("auto", "data", "runs"), "devices: 'data' splits batches over all "
                    "devices; 'runs' splits the seeds (whole batches per device); 'auto': 'runs' "
                    "on the CPU backend, 'data' elsewhere"),
    "pack": _one_of("auto", ("auto", "off"), "--sweep=all: grid points that differ only in "
                    "values (learning rate, weight decay, β, S&P's λ and γ, per-seed data such as "
                    "the synthetic α) train together on the run axis, one compiled call for all "
                    "(train/pack.py) | every point alone"),
    "pack_max_runs": _i(300, 1, "the most runs (points × seeds) in one pack: a pack holds its "
                        "per-run data sets together (300 synthetic-task runs: 3.7 GB on CPU)"),
    "tune_cpu_allocator": _b(True, "CPU backend only: malloc keeps freed pages (train/host.py)"),
    "compilation_cache": Field("auto", lambda v: isinstance(v, str) and v != "",
                               "a directory, 'auto' or 'off'",
                               "launch.py: directory of JAX's persistent compilation cache, "
                               "shared by every process (a grid's --sweep=<i> points, re-runs); "
                               "'auto': $REINIT_JAX_CACHE or ~/.cache/reinit_jax/xla; 'off': none"),
    "modules": Field((), lambda v: isinstance(v, (tuple, list)) and all(isinstance(m, str)
                                                                        for m in v),
                     "a tuple of module names or .py paths",
                     "imported before the run, e.g. to register a method"),
  },
}
TOP: dict[str, Field] = {"name": _s("base", "run name (default workdir runs/<name>)")}
# Fields that may differ between an interrupted run and its resumption.
RESUME_FREE = ("name", "run.stop_after_steps", "run.progress", "run.checkpoint_every", "run.mesh",
               "run.pack", "run.pack_max_runs", "run.compilation_cache",
               "run.keep_checkpoints", "run.restart", "run.nan_policy")


def _value(f: Field):
  if f.default is None or f.type is object:  # object: a value of more than one type
    return ml_collections.FieldReference(f.default, field_type=f.type)
  if isinstance(f.default, dict):
    return ml_collections.ConfigDict(dict(f.default))
  return f.default


def base_config() -> ml_collections.ConfigDict:
  """The default config (a tiny MLP on the synthetic task, standard training, one seed)."""
  c = ml_collections.ConfigDict({k: _value(f) for k, f in TOP.items()})
  for section, fields in SCHEMA.items():
    c[section] = ml_collections.ConfigDict({k: _value(f) for k, f in fields.items()})
  return c


def fields() -> dict[str, Field]:
  """Every field by its dotted name (``'optim.learning_rate'``), sections in order."""
  out = dict(TOP)
  for section, fs in SCHEMA.items():
    out.update({f"{section}.{k}": f for k, f in fs.items()})
  return out


def short_names() -> dict[str, str]:
  """Leaf name -> dotted name for every leaf that names one field only (``'learning_rate'``)."""
  count: dict[str, list[str]] = {}
  for dotted in fields():
    count.setdefault(dotted.rsplit(".", 1)[-1], []).append(dotted)
  return {leaf: names[0] for leaf, names in count.items() if len(names) == 1}


def method_names(c) -> tuple[str, ...]:
  """The method(s) of ``reinit.method``: one name, or the names of a study."""
  m = c.reinit.method
  return (m,) if isinstance(m, str) else tuple(m)


def with_method(c, method) -> ml_collections.ConfigDict:
  """A copy of ``c`` with ``reinit.method`` = ``method`` (a name or a tuple of names): a plain
  ConfigDict types a field by its first value, so the field is made anew."""
  out = ml_collections.ConfigDict(c.to_dict())
  del out.reinit["method"]
  out.reinit["method"] = ml_collections.FieldReference(
    method if isinstance(method, str) else tuple(method), field_type=object)
  return out


def get(c, dotted: str):
  """The value of ``section.field`` in ``c``."""
  for part in dotted.split("."):
    c = c[part]
  return c


def help_text(config=None) -> str:
  """Every field with its value in ``config`` (default: the schema's default) and its meaning
  (``launch.py --help``)."""
  lines = []
  for dotted, f in fields().items():
    value = f.default if config is None else get(config, dotted)
    value = value.to_dict() if hasattr(value, "to_dict") else value
    value = dict(value) if isinstance(value, dict) else value
    lines.append(f"  --config.{dotted}={value!r}\n      {f.help}; {f.allowed}")
  return "\n".join(lines)


# Leaf names that would clash once flattened: their names in a flat view of config.json.
_FLAT_NAMES = {"model.name": "model", "model.options": "model_kwargs", "data.seed": "data_seed",
               "optim.options": "optimizer_kwargs", "reinit.hparams": "method_kwargs"}


def flat(c: dict) -> dict:
  """A config.json (nested by section) as one flat dict keyed by field name (``model`` for
  model.name, ``method_kwargs`` for reinit.hparams, ...), as the analysis tables read it; a flat
  dict is returned as it is."""
  if not any(isinstance(c.get(s), dict) for s in SCHEMA):
    return dict(c)
  out = {k: v for k, v in c.items() if k not in SCHEMA}
  for section in SCHEMA:
    for k, v in (c.get(section) or {}).items():
      out[_FLAT_NAMES.get(f"{section}.{k}", k)] = v
  return out
