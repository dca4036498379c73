"""Config validation before any compute, and resolution of the [Z] §4 setting presets.

Every check raises ``ValueError`` with one line that names the field (``config.optim.schedule``)
and its allowed values, so a bad sweep entry fails in milliseconds instead of after a compile.
Types and ranges come from :data:`reinit_jax.train.config.SCHEMA`; the registries (models, methods,
data sets) check their own names and options.
"""

from __future__ import annotations

import contextlib
import difflib
from typing import Any, NamedTuple

import jax
import ml_collections
import optax

from reinit_jax.schema import fail
from reinit_jax.train.config import SCHEMA, TOP, fields

OPTIMIZERS = tuple(n for n in ("sgd", "adam", "adamw", "nadam", "nadamw", "radam", "rmsprop",
                               "adagrad", "adamax", "adamaxw", "amsgrad", "adabelief", "lamb",
                               "lars", "lion", "yogi", "novograd", "noisy_sgd", "sm3", "fromage")
                   if hasattr(optax, n))


def _unknown(name: str, known) -> None:
  near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
  hint = f"; did you mean config.{near[0]}?" if near else ""
  raise ValueError(f"config.{name} is not a field{hint} (launch.py --help lists them)")


def check_fields(c) -> None:
  """Every field of the schema present with an allowed value; no unknown section or field."""
  known = fields()
  for key in c.keys():
    if key not in SCHEMA and key not in TOP:
      _unknown(key, known)
  for dotted, f in known.items():
    section, _, leaf = dotted.rpartition(".")
    if section and section not in c:
      raise ValueError(f"config.{section} is missing; start from reinit_jax.train.base_config()")
    holder = c[section] if section else c
    if leaf not in holder:
      raise ValueError(f"config.{dotted} is missing; start from reinit_jax.train.base_config()")
    try:
      good = f.check(holder[leaf])
    except TypeError:
      good = False
    if not good:
      fail(dotted, holder[leaf], f.allowed)
  for section in SCHEMA:
    for leaf in c[section].keys():
      if f"{section}.{leaf}" not in known:
        _unknown(f"{section}.{leaf}", known)


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy with the [Z] §4 setting preset applied.

  A one-name tuple of methods becomes that name. Ø ('none'): no augmentation, constant LR, no
  weight decay; D: + ``setting_augmentation``;
  DC: + cosine annealing restarted every stage (for ``standard`` this is SGDR, [Z] §5.3);
  DCW: + weight decay ``setting_weight_decay``. ``setting=''`` keeps the explicit fields.
  """
  names = method_names(config)
  c = with_method(config, names[0] if len(names) == 1 else names)  # ('x',) is the method x
  s = c.optim.setting
  if s:
    c.data.augmentation = c.optim.setting_augmentation if "D" in s else "none"
    c.optim.schedule = "cosine_per_stage" if "C" in s else "constant"
    c.optim.weight_decay = float(c.optim.setting_weight_decay) if "W" in s else 0.0
  return c


class Checked(NamedTuple):
  """A validated config and the parts validation built from it, each built once for the run:
  ``config`` (resolved), ``model`` (for the data set's classes and input shape, which the config
  decides: ``data.registry.example_shape``), ``methods`` ({name: method with its hyperparameters}
  of every method named; a study's several) and ``tx`` (the optimizer)."""

  config: ml_collections.ConfigDict
  model: Any
  methods: dict
  tx: Any


def check(config: ml_collections.ConfigDict) -> Checked:
  """Checks every field of ``config`` and the constraints between them; returns it resolved, with
  the model, methods and optimizer that the checks built.

  Checked: types and ranges (the schema), method / model / data set names against their
  registries, the method's hyperparameters, stages ≤ epochs and a multiple of layerwise's M,
  online chunks = stages, batch size a multiple of the device count, optimizer options. Imports
  ``run.modules`` first, so a user's registered method is known.

  The config's own checks come first; then each module below builds its part once, in order
  (optimizer, data options, model), and what depends on a built part is checked where it is
  built, so the config goes down the layers without coming back here.
  """
  check_fields(config)
  c = resolve(config)
  names = _check_names(c)
  _check_constraints(c, config, names)
  built_methods = _build_methods(c, names)
  try:
    return _build(c, built_methods)
  except _BuildError as e:  # a module below refused the config: one line with the field's value
    section, leaf = e.field.split(".")
    fail(e.field, c[section][leaf], e.message)


def for_pack(checked: Checked, traced: tuple) -> Checked:
  """``checked`` (a pack's first point) for the pack's runs, whose values ``traced`` ride on the
  run axis (train/pack.py). Only a traced weight decay changes what was built: the optimizer keeps
  its weight-decay stage whatever the first point's value, so it alone is built again."""
  if "weight_decay" not in traced:
    return checked
  return checked._replace(tx=_optimizer(checked.config, decay=True))


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """:func:`check`'s resolved config, for callers that build nothing."""
  return check(config).config


def for_method(study: Checked, name: str) -> Checked:
  """Method ``name``'s run of a checked study (``reinit.method`` a tuple of names): its config
  (that method, the hyperparameters of ``reinit.hparams`` it declares) with the study's model and
  optimizer, built once for all its methods, and its own built method."""
  c = with_method(study.config, name)
  c.reinit.hparams = method_hparams(study.config, name)
  return Checked(c, study.model, {name: study.methods[name]}, study.tx)


def _check_names(c) -> list:
  """Imports ``run.modules``; checks the model, method and data set names against their
  registries. Returns the method names."""
  from reinit_jax import data, methods, models
  try:
    methods.import_modules(tuple(c.run.modules))
  except (ValueError, TypeError, ImportError) as e:  # a malformed name, not a user module's bug
    fail("run.modules", tuple(c.run.modules), " ".join(str(e).split()))
  if c.model.name not in models.names():
    fail("model.name", c.model.name, ", ".join(models.names()))
  names = method_names(c)
  for m in names:
    if m not in methods.names():
      fail("reinit.method", m, ", ".join(methods.names()))
  if c.data.dataset not in data.names():
    fail("data.dataset", c.data.dataset, ", ".join(data.names()))
  return names


def _check_constraints(c, config, names: list) -> None:
  """The constraints between fields of the resolved ``c`` (and ``config``'s setting preset)."""
  from reinit_jax import data
  if not c.reinit.stages <= c.optim.epochs:
    fail("reinit.stages", c.reinit.stages, f"an integer in [1, optim.epochs={c.optim.epochs}]")
  if c.optim.optimizer not in OPTIMIZERS:
    fail("optim.optimizer", c.optim.optimizer, ", ".join(OPTIMIZERS))
  if config.optim.setting_augmentation not in data.AUGMENTATIONS:
    fail("optim.setting_augmentation", config.optim.setting_augmentation,
         ", ".join(data.AUGMENTATIONS))
  if c.run.distributed:  # the device count below starts the backend: join the other processes first
    from reinit_jax.train import multihost
    multihost.initialize()
  n_dev = jax.device_count()
  if c.data.batch_size % n_dev:
    fail("data.batch_size", c.data.batch_size,
         f"a multiple of the device count {n_dev} (0: full batch)")
  if c.reinit.every_steps and "standard" in names:
    fail("reinit.every_steps", c.reinit.every_steps, "0 with method 'standard' (a step-level event "
         "of R = identity would only apply the optimizer policy; run the baseline with 0)")
  if c.data.chunks > 1 and c.data.chunks != c.reinit.stages:
    fail("data.chunks", c.data.chunks,
         f"1 or equal to reinit.stages={c.reinit.stages} (online: stage t sees chunks 1..t)")
  if c.data.per_seed and c.data.dataset != "synthetic":
    fail("data.per_seed", True, "False for a TFDS data set (True: the synthetic task only)")
  if c.data.per_seed and c.data.chunks > 1:
    fail("data.per_seed", True, "False with online chunks (data.chunks > 1)")
  if c.data.per_seed and c.data.seed is not None:
    fail("data.seed", c.data.seed, "None with data.per_seed=True (each seed draws its own data "
         "set from its seed)")


class _BuildError(ValueError):
  """A module below refused what ``field`` asked for (one line naming it); :func:`check` adds the
  field's value."""

  def __init__(self, field: str, message: str):
    super().__init__(f"config.{field}: {message}")
    self.field, self.message = field, message


@contextlib.contextmanager
def _field_errors(field: str):
  """Any TypeError/ValueError/KeyError raised inside becomes a :class:`_BuildError` naming
  ``field``; a message that already names its field (``config.…``) goes out as it is."""
  try:
    yield
  except (TypeError, ValueError, KeyError) as e:
    msg = " ".join(str(e).split())
    if msg.startswith("config."):
      raise ValueError(msg) from None
    raise _BuildError(field, msg or type(e).__name__) from None


def _build_methods(c, names) -> dict:
  """{name: method with its hyperparameters}, built by the methods' registry; the checks between
  them and the config."""
  from reinit_jax import methods as methods_registry
  built = {}
  for name in names:
    hparams = method_hparams(c, name)
    with _field_errors("reinit.hparams"):
      built[name] = methods_registry.get(name, **hparams)
  _check_methods(c, built)
  return built


def _build(c, built_methods: dict) -> Checked:
  """The optimizer, the data set's options and the model, each built by its own module with that
  module's checks (one line naming the field on a failure), and the checks between them and the
  config, here in line: what a module below has read is not handed back to a helper."""
  from reinit_jax import models
  from reinit_jax.data import registry
  view = data_view(c)
  tx = _optimizer(c)
  with _field_errors("data.dataset"):  # the data package's own checks name their field
    data_options = registry.options(view)
  if not registry.in_memory(data_options):  # what a streamed data set (tf.data) rules out
    if c.run.feature_diagnostics:
      fail("run.feature_diagnostics", True, "False for a streamed data set (the probe is the "
           "stage's training view in memory)")
    if c.reinit.distill and not c.reinit.distill_live:
      fail("reinit.distill_live", False, "True for a streamed data set (no teacher cache)")
    if c.run.eval_train != "off" and c.data.label_noise > 0:
      fail("run.eval_train", c.run.eval_train, "'off' for a streamed data set with "
           "data.label_noise > 0 (the noisy/clean splits need the training set in memory)")
  num_classes, input_shape = registry.example_shape(data_options)
  options = c.model.options.to_dict()
  given = options.setdefault("input_shape", input_shape)
  if not isinstance(given, (tuple, list)) or tuple(given) != input_shape:
    fail("model.options", c.model.options, f"input_shape left out or {input_shape} (the data's "
         "examples after the augmentation preset)")
  with _field_errors("model.options"):
    model = models.create(c.model.name, num_classes, num_blocks=c.model.num_blocks, **options)
  if any(method.uses_activations for method in built_methods.values()):
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))["params"]
    with _field_errors("reinit.method"):
      models.layer_chain(model.blocks, shapes)
  if c.run.feature_diagnostics and len(model.blocks) < 2:
    fail("run.feature_diagnostics", True, "False for a model of one block (no penultimate "
         "features; set model.num_blocks >= 2)")
  return Checked(c, model, built_methods, tx)


def _optimizer(c, decay: bool | None = None):
  """The optimizer of ``c`` (its options checked); ``decay=True``: with its weight-decay stage
  whatever ``c``'s value (a pack's traced weight decay)."""
  from reinit_jax.train import schedules
  with _field_errors("optim.options"):
    return schedules.make_optimizer(c.optim.optimizer, c.optim.weight_decay, c.optim.momentum,
                                    c.optim.options.to_dict(), decay=decay)


def _check_methods(c, built: dict) -> None:
  """A study's hyperparameters (each taken by some method), layerwise's M, a carry's step events."""
  if len(built) > 1:  # a study: every key of hparams taken by at least one of its methods
    for key in c.reinit.hparams:
      if not any(key in method.declaration.hparams for method in built.values()):
        fail("reinit.hparams", c.reinit.hparams,
             f"hyperparameters of {', '.join(built)}; none of them declares {key!r}")
  for name, method in built.items():
    m = getattr(method, "events_per_block", None)
    if m and c.reinit.stages % m:
      fail("reinit.stages", c.reinit.stages, f"a multiple of layerwise events_per_block M={m}")
    if method.carries_state and not c.reinit.every_steps:
      fail("reinit.every_steps", 0, f">= 1 with method {name!r} (it keeps per-unit state from "
           "step to step; 1: the paper's every step)")


def check_pack(configs: list, per_run_data: bool) -> None:
  """A grid's pack (train/pack.py) of validated point ``configs``: points whose data sets differ
  cannot share a pack on a streamed data set (the pack would hold one data set per run)."""
  from reinit_jax.data import registry
  if per_run_data and not registry.in_memory(registry.options(data_view(configs[0]))):
    fail("run.pack", configs[0].run.pack, "'off' for a grid whose points differ in data values "
         "on a streamed data set (a pack would hold one data set per run)")


def check_batch_sizes(c, stage_examples: list, devices: int) -> None:
  """The one check that runs after the data is read: a stage's training examples (a TFDS split's
  size less the hold-out, a subset, online chunks) are known only then. Every stage's batch (a
  full batch: all its examples) must split over the ``devices`` and fit in the stage."""
  for n in stage_examples:
    b = c.data.batch_size or n
    if b % devices or b > n:
      fail("data.batch_size", c.data.batch_size, f"a multiple of the device count {devices}, at "
           f"most the {n} training examples of a stage")


def method_hparams(c, name: str) -> dict:
  """The hyperparameters of ``reinit.hparams`` that method ``name`` takes: all of them for a
  single method (an unknown one fails there), in a study those ``name`` declares."""
  from reinit_jax import methods
  hparams = c.reinit.hparams.to_dict()
  if len(method_names(c)) == 1:
    return hparams
  return {k: v for k, v in hparams.items() if k in methods.get(name).declaration.hparams}


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


def data_view(c: ml_collections.ConfigDict, seed: int | None = None) -> ml_collections.ConfigDict:
  """The ``data`` section as ``reinit_jax.data.build`` reads it, with the data seed filled in
  (``seed``, else ``data.seed``, else the first run seed); the engine's own fields (batch_size,
  per_seed) left out, so runs that differ only in them share their data."""
  view = ml_collections.ConfigDict(c.data.to_dict())
  if seed is None:
    seed = c.run.seeds[0] if c.data.seed is None else c.data.seed
  view.seed = int(seed)
  del view["per_seed"], view["batch_size"]
  return view
