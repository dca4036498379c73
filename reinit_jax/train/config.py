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

import ml_collections

from reinit_jax.data.registry import FIELDS as DATA_FIELDS
from reinit_jax.schema import (Field, flag, host, integer, is_int, is_number, keywords, one_of,
                               optional, text)


def _method_value(v):
  if isinstance(v, str):
    return bool(v)
  return (isinstance(v, (tuple, list)) and len(v) > 0 and len(set(v)) == len(v)
          and all(isinstance(m, str) and m for m in v))


def _seeds(v):
  return (isinstance(v, (tuple, list)) and len(v) > 0 and len(set(v)) == len(v)
          and all(is_int(s) and s >= 0 for s in v))


SCHEMA: dict[str, dict[str, Field]] = {
  # The data set's own fields (reinit_jax/data/registry.py) and two the engine reads.
  "data": {
    **DATA_FIELDS,
    "batch_size": integer(0, 0, "global batch; 0: full batch (gradient descent, [LW] §1.1)"),
    "per_seed": host(flag(
      False, "True: every seed draws its own data set from its seed (synthetic task)")),
  },
  "model": {
    "name": text("mlp", "model name (reinit_jax.models.names())"),
    "num_blocks": optional(int, lambda v: is_int(v) and v >= 1, "an integer >= 1",
                       "merge the declared blocks into K groups (layerwise K)"),
    "options": keywords("model options: normalization, initializer, dropout, width, dtype, conv_impl"),
  },
  "optim": {
    "optimizer": text("sgd", "an optax optimizer name"),
    "options": keywords("keyword arguments of optax.<optimizer>"),
    "momentum": Field(0.9, lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)",
                      "SGD momentum (sgd only)"),
    "learning_rate": Field(0.05, lambda v: is_number(v) and v > 0, "a finite number > 0",
                           "base learning rate"),
    "schedule": one_of("constant", ("constant", "cosine_per_stage", "cosine"),
                        "learning-rate schedule; cosine_per_stage restarts at every event"),
    "weight_decay": Field(0.0, lambda v: is_number(v) and v >= 0, "a finite number >= 0",
                          "L2 added to the gradient (PyTorch SGD style)"),
    "l2_init": Field(0.0, lambda v: is_number(v) and v >= 0, "a finite number >= 0",
                     "L2 Init (Kumar et al. 2023): λ of λ‖θ − θ₀‖² added to the loss, θ₀ the "
                     "run's first initialization; 0: off"),
    "epochs": integer(1800, 1, "budget N in epochs (full batch: steps), split into the stages"),
    "setting": host(one_of(
      "", ("", "none", "D", "DC", "DCW"),
      "[Z] §4 preset: '' keeps the fields; none | D | DC | DCW")),
    "setting_weight_decay": host(Field(
      5e-4, lambda v: is_number(v) and v >= 0, "a finite number >= 0", "the W of DCW")),
    "setting_augmentation": host(text("cifar", "the D of D/DC/DCW")),
  },
  "reinit": {
    "method": Field("standard", _method_value, "a method name or a tuple of distinct names",
                    "re-initialization method R (reinit_jax.methods.names()); a tuple is a study, "
                    "one run per method", object),
    "hparams": keywords("hyperparameters, e.g. shrink=0.4, perturb=0.1 (a study: each method takes "
                  "those it declares)"),
    "stages": integer(9, 1, "T stages of floor(N/T) epochs; T − 1 events"),
    "optimizer_policy": one_of("reset", ("reset", "keep", "mask"),
                                "optimizer state at events: re-created | kept | zeroed where "
                                "re-initialized"),
    "batch_stats_policy": one_of("reset", ("reset", "keep"),
                                  "BatchNorm statistics of re-initialized layers at events"),
    "idle_norm_policy": one_of("set", ("set", "skip"),
                                "layerwise event that re-initializes nothing (k = K): set the "
                                "normalization after block K anyway, or skip it"),
    "select_impl": one_of("auto", ("auto", "bracket", "sort", "sort_batched", "approx"),
                           "k-smallest selection of magnitude/random_subset: auto = bracket on "
                           "CPU, one sort per tensor on GPU/TPU; approx = lax.approx_min_k (opt-in)"),
    "every_steps": integer(0, 0, "step-level events: R also every N optimizer steps inside the "
                           "train call, decided per run (0: at stage ends only; docs/methods.md)"),
    "step_trigger": one_of("every", ("every", "fit"),
                           "a step-level event fires at every N-th step | only when the run's "
                           "training accuracy over those N steps is >= step_threshold"),
    "step_threshold": Field(0.99, lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]",
                            "training accuracy of step_trigger='fit'"),
    "norm_batch_size": integer(256, 1, "training examples measuring layer-wise normalizations"),
    "distill": flag(False, "self-distillation from the previous stage's network ([Z] §3.1)"),
    "distill_beta": Field(2.0, lambda v: is_number(v) and v >= 0, "a finite number >= 0",
                          "β of β·KL(teacher ‖ student)"),
    "distill_live": flag(False, "teacher forward on the augmented batch (False: cached per stage)"),
  },
  "run": {
    "seeds": host(Field(
      (0,), _seeds, "a non-empty tuple of distinct integers >= 0",
      "seeds trained together on the run axis")),
    "eval_every_epochs": host(integer(0, 0, "0: evaluate at the end of every stage only")),
    "eval_batch_size": host(integer(1000, 1, "evaluation batch")),
    "eval_train": host(one_of(
      "off", ("off", "stage", "eval", "call"),
      "also evaluate the stage's training view (train_fit; with label noise train_noisy, "
      "train_noisy_clean, train_clean; [Z] §6): at the end of every stage | at every evaluation "
      "| after every train call (train/train_set_eval.py)")),
    "fit_threshold": host(Field(
      0.99, lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]",
      "training accuracy counted as fitting a stage (summary epochs_to_fit with "
      "eval_train='eval' or 'call'; [AA] §4: 99%)")),
    "feature_diagnostics": host(flag(
      False,
      "at every evaluation, on the first 512 examples of the stage's training view: dormant "
      "fraction at τ ∈ {0, 0.025, 0.1} of every block's units, effective rank and srank of the "
      "penultimate block's features (docs/methods.md)")),
    "max_steps_per_call": integer(256, 1, "steps per jitted call (a scan over whole epochs)"),
    "checkpoint_every": host(integer(
      0, 0, "steps between checkpoints; 0: end of every stage only")),
    # Two at least: a corrupt newest checkpoint falls back to the one before it.
    "keep_checkpoints": host(integer(
      2, 2, "checkpoints kept (a corrupt newest falls back to the previous)")),
    "progress": host(one_of("auto", ("auto", "bar", "log", "off"), "progress display")),
    "distributed": host(flag(False, "call jax.distributed.initialize() (multi-process / TPU pod)")),
    "stop_after_steps": host(integer(
      0, 0, "stop (after a checkpoint) once this many steps ran; 0: never")),
    "nan_policy": one_of("stop", ("stop", "skip"), "a NaN/inf step: stop (last good checkpoint "
                          "kept) | skip its update"),
    "restart": host(flag(False, "discard the workdir's previous outputs and start over")),
    "mesh": host(one_of(
      "auto", ("auto", "data", "runs"),
      "devices: 'data' splits batches over all devices; 'runs' splits the seeds (whole batches "
      "per device); 'auto': 'runs' on the CPU backend, 'data' elsewhere")),
    "pack": host(one_of(
      "auto", ("auto", "off"),
      "--sweep=all: grid points that differ only in values (learning rate, weight decay, β, "
      "S&P's λ and γ, per-seed data such as the synthetic α) train together on the run axis, "
      "one compiled call for all (train/pack.py) | every point alone")),
    "pack_max_runs": host(integer(
      300, 1,
      "the most runs (points × seeds) in one pack: a pack holds its per-run data sets together "
      "(300 synthetic-task runs: 3.7 GB on CPU)")),
    "tune_cpu_allocator": host(flag(
      True, "CPU backend only: malloc keeps freed pages (backends/cpu_host.py)")),
    "compilation_cache": host(Field(
      "auto", lambda v: isinstance(v, str) and v != "", "a directory, 'auto' or 'off'",
      "launch.py: directory of JAX's persistent compilation cache, shared by every process (a "
      "grid's --sweep=<i> points, re-runs); 'auto': $REINIT_JAX_CACHE or "
      "~/.cache/reinit_jax/xla; 'off': none")),
    "modules": Field((), lambda v: isinstance(v, (tuple, list)) and all(isinstance(m, str)
                                                                        for m in v),
                     "a tuple of module names or .py paths",
                     "imported before the run, e.g. to register a method"),
  },
}
TOP: dict[str, Field] = {"name": host(text("base", "run name (default workdir runs/<name>)"))}
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
