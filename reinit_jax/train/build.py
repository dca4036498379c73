"""What training builds once, before its first step: data, geometry, schedule, jitted pieces.

:class:`Built` takes what validation checked and built (``validation.check``: the resolved config,
the model, method and optimizer) and builds the rest, each component from its own section; the
stage loop (``loop.py``) only calls what is built here. Data is built from the data seed and
shared by the seeds of the run axis (their init, batch order, augmentation, dropout and events
differ); with ``data.per_seed`` every seed draws its own data set (the synthetic task).

What a run builds is grouped by what it is: :class:`Inputs` (seeds, data, device placement),
:class:`Geometry` (stages, epochs, batches, steps), :class:`Parts` (validation's model, method
and optimizer; the schedule) and :class:`Compiled` (the jitted functions), each built by its own
function below.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax import data as data_
from reinit_jax import backends
from reinit_jax.train import compiled, faults, feed, multihost, schedules
from reinit_jax.train import step as step_
from reinit_jax.train import validation
from reinit_jax.train import pack as pack_
from reinit_jax.train.state import base_keys


@dataclasses.dataclass(frozen=True)
class Inputs:
  """What the runs train and evaluate on. ``seeds``: the run axis (a pack's runs); ``data``: the
  first run's data set; ``run_data``: every run's, when ``per_run`` (``data.per_seed``, or a pack
  whose points differ in their data), else None; ``streaming``: the data set is streamed, not held
  in memory; ``place``: the devices (``feed.Placement``); ``eval_sets``: {split: (x, y, index
  batches, weights)} on the devices for the non-empty held-out splits (empty when streamed)."""

  seeds: list
  data: Any
  run_data: list | None
  per_run: bool
  streaming: bool
  place: feed.Placement
  eval_sets: dict = dataclasses.field(default_factory=dict)

  def arrays(self, pick):
    """``pick(data).x, .y`` on the devices (replicated); per-run data: stacked (S, N, ...), split
    over the mesh's 'runs' axis with the seeds."""
    if not self.per_run:
      split = pick(self.data)
      return self.place.replicate(split.x), self.place.replicate(split.y)
    splits = [pick(d) for d in self.run_data]
    return (self.place.seeded(np.stack([s.x for s in splits])),
            self.place.seeded(np.stack([s.y for s in splits])))


@dataclasses.dataclass(frozen=True)
class Geometry:
  """The stage geometry: ``stages`` (T) of ``epochs_per_stage`` (E) epochs; per stage its
  ``stage_examples`` (training examples), ``batch_sizes`` and ``steps_per_epoch``; the run's
  ``total_steps``."""

  stages: int
  epochs_per_stage: int
  stage_examples: list
  batch_sizes: list
  steps_per_epoch: list
  total_steps: int

  @property
  def stage_steps(self) -> list:
    """The steps of every stage (the schedules' stage lengths)."""
    return [s * self.epochs_per_stage for s in self.steps_per_epoch]


@dataclasses.dataclass(frozen=True)
class Parts:
  """What trains: the ``model``, the re-initialization ``method``, the optimizer ``tx`` and the
  learning-rate schedule ``lr_fn``; in a pack ``hyper`` ({key: (R,) values} that differ between its
  points, else empty) and ``values`` (``pack.resolver``'s step and event functions of them; else
  (None, None))."""

  model: Any
  method: Any
  tx: Any
  lr_fn: Callable
  hyper: dict
  values: tuple


@dataclasses.dataclass(frozen=True)
class Compiled:
  """The jitted functions (shared with the grid's other runs in this process where they agree,
  ``train/compiled.py``): ``train_call`` (the scanned steps of one call), ``eval_fn``,
  ``teacher_cache`` (the cached distillation targets), ``event_fn``, ``norm_fn`` (the parameter
  norm), ``init_fn``, ``prepare_fn`` (the method's preparation, or None); ``distill_mode``: 'off',
  'live' or 'cached'; ``features_fn``: the feature diagnostics (``run.feature_diagnostics``), or
  None."""

  train_call: Callable
  eval_fn: Callable
  teacher_cache: Callable
  event_fn: Callable
  norm_fn: Callable
  init_fn: Callable
  prepare_fn: Callable | None
  distill_mode: str
  features_fn: Callable | None = None


class Built:
  """What :func:`reinit_jax.train.run` trains, built: ``config``, ``pack`` (a ``train.pack.Pack``:
  the runs of several grid points, or of ``config`` alone when none is given), ``inputs``
  (:class:`Inputs`), ``geometry`` (:class:`Geometry`), ``parts``
  (:class:`Parts`), ``derived`` (what the built data and devices decide beside the config: the
  compiled functions' key, ``train/compiled.py``) and ``compiled`` (:class:`Compiled`);
  :meth:`init` gives the initial state."""

  def __init__(self, checked: validation.Checked, pack=None):
    config = checked.config
    pack = pack_.Pack.alone(config) if pack is None else pack
    self.config, self.pack = config, pack
    inputs = _inputs(config, pack)
    _check_meta(checked.model, inputs.data.meta)
    self.geometry = _geometry(config, inputs)
    self.parts = _parts(config, pack, checked, self.geometry)
    self.derived = _derived(inputs, self.geometry, self.parts)
    self.compiled = _compile(config, inputs, self.geometry, self.parts, self.derived)
    self.inputs = dataclasses.replace(inputs, eval_sets=_eval_sets(config, inputs))

  def init(self):
    """The initial state (S seeds), split over the mesh's 'runs' axis (replicated over 'data')."""
    place, run_seeds = self.inputs.place, self.inputs.seeds
    seeds = place.seeded(np.asarray(run_seeds, np.int32))
    state = self.compiled.init_fn(place.seeded(base_keys(run_seeds)), seeds)
    state = state if self.compiled.prepare_fn is None else self.compiled.prepare_fn(state)
    if self.parts.hyper:  # a pack's per-run values (train/pack.py)
      state = state.replace(hyper={k: jnp.asarray(v) for k, v in self.parts.hyper.items()})
    return place.seeded(state)


def _inputs(config, pack) -> Inputs:
  """The seeds, the data sets and the placement (``eval_sets`` empty: :func:`_eval_sets`)."""
  seeds = list(pack.seeds)
  # data.per_seed: every seed its own data set, stacked on the run axis (S, N, ...); in a pack
  # whose points differ in a data value, each run's is its point's (train/pack.py).
  per_run = bool(config.data.per_seed) or pack.per_run_data
  views = [validation.data_view(pc, None if i == 0 or not pc.data.per_seed else s)
           for pc in pack.configs
           for i, s in enumerate(pc.run.seeds)]
  built = {}  # runs that share a view (seeds of a point without per-seed data) share its arrays

  def build(view):
    key = json.dumps(view.to_dict(), sort_keys=True, default=str)
    if key not in built:
      built[key] = data_.build(view)
    return built[key]

  with multihost.primary_first("reinit_jax:data"):  # several processes: one prepares the data
    data = build(views[0])
  run_data = [data] + [build(v) for v in views[1:]] if per_run else None
  streaming = not data.meta.in_memory
  place = feed.placement(config.run.mesh, len(seeds), streaming)
  return Inputs(seeds, data, run_data, per_run, streaming, place)


def _check_meta(model, meta) -> None:
  """The built data agrees with the model that validation built from the config alone
  (``data.registry.example_shape``); a disagreement is a bug of the registry or the pipeline."""
  if (model.num_classes, tuple(model.input_shape)) != (meta.num_classes, tuple(meta.input_shape)):
    raise RuntimeError(
      f"the data set {meta.name} was read with {meta.num_classes} classes of shape "
      f"{tuple(meta.input_shape)}, but its registry entry gives the model {model.num_classes} of "
      f"{tuple(model.input_shape)} (data/registry.py example_shape)")


def _geometry(config, inputs: Inputs) -> Geometry:
  """Stages, epochs, examples, batch sizes and steps; fails on a batch size that only the built
  data and devices rule out."""
  stages = config.reinit.stages
  epochs_per_stage = config.optim.epochs // stages
  examples = [len(inputs.data.train(t)) for t in range(1, stages + 1)]
  validation.check_batch_sizes(config, examples, inputs.place.n)
  batch_sizes = [config.data.batch_size or n for n in examples]
  steps_per_epoch = [n // b for n, b in zip(examples, batch_sizes)]
  return Geometry(stages, epochs_per_stage, examples, batch_sizes, steps_per_epoch,
                  sum(steps_per_epoch) * epochs_per_stage)


def _parts(config, pack, checked: validation.Checked, geometry: Geometry) -> Parts:
  """The model, method and optimizer that validation built; the schedule; a pack's per-run
  values."""
  optim = config.optim
  hyper = dict(pack.hyper)
  model, method, tx = checked.model, checked.methods[config.reinit.method], checked.tx
  stage_steps = geometry.stage_steps
  lr_fn = schedules.make_schedule(optim.schedule, optim.learning_rate, stage_steps,
                                  geometry.total_steps)
  values = (None, None)
  if hyper:
    values = pack_.resolver(config, tx, lr_fn, method, stage_steps, geometry.total_steps)
  return Parts(model, method, tx, lr_fn, hyper, values)


def _derived(inputs: Inputs, geometry: Geometry, parts: Parts) -> list:
  """What the built data and devices decide, beside the config (train/compiled.py keys on both)."""
  meta = inputs.data.meta
  return [meta.num_classes, list(meta.input_shape), inputs.streaming, inputs.place.key(),
          geometry.stage_examples, geometry.batch_sizes, geometry.epochs_per_stage,
          len(inputs.seeds), inputs.per_run, sorted(parts.hyper)]


def _compile(config, inputs: Inputs, geometry: Geometry, parts: Parts, derived: list) -> Compiled:
  """The jitted functions, each taken from ``train/compiled.py``'s cache when built before."""
  reinit = config.reinit
  # None: $REINIT_SELECT_IMPL decides.
  select_impl = None if reinit.select_impl == "auto" else reinit.select_impl
  cached = lambda kind, build: compiled.get_or_build(kind, config, derived, build)
  mesh = inputs.place.runs_mesh
  # What runs a few times per run (init, prepare, events) may compile more cheaply (on XLA:CPU:
  # without LLVM's expensive passes, same bits); the train step and evaluation keep the defaults.
  rare = backends.choices().compile_options()
  augment = ((lambda k, x, train: x.astype(jnp.float32)) if inputs.streaming
             else inputs.data.augment)
  distill_mode = "off" if not reinit.distill else ("live" if reinit.distill_live else "cached")
  per_run = inputs.per_run

  def guarded_step():
    after_step = None
    if reinit.every_steps:  # step-level events (docs/methods.md)
      after_step = step_.make_step_event(
          parts.model, parts.method, parts.tx, every=reinit.every_steps,
          trigger=reinit.step_trigger, threshold=reinit.step_threshold,
          optimizer_policy=reinit.optimizer_policy, batch_stats_policy=reinit.batch_stats_policy,
          idle_norm_policy=reinit.idle_norm_policy, values=parts.values[1],
          select_impl=select_impl)
    stepper = step_.make_step(parts.model, parts.tx, parts.lr_fn, augment, distill=distill_mode,
                              beta=reinit.distill_beta, values=parts.values[0],
                              l2_init=float(config.optim.l2_init), after_step=after_step)
    return faults.guard_step(stepper, config.run.nan_policy)  # NaN/inf record inside the scan

  # Online mode: the training view grows every stage; fixed-shape calls (rows padded to the
  # largest view, steps to the longest call) keep one compilation for the whole run.
  online = len(set(geometry.stage_examples)) > 1 and not inputs.streaming
  capacity = max(geometry.stage_examples) if online else None
  max_steps = (max(feed.epochs_per_call(geometry.epochs_per_stage, s,
                                        config.run.max_steps_per_call) * s
                   for s in geometry.steps_per_epoch) if online else None)
  train_call = cached("train", lambda: (
      step_.make_stream_call(guarded_step()) if inputs.streaming
      else step_.make_train_call(guarded_step(), cached=distill_mode == "cached",
                                 capacity=capacity, max_steps=max_steps, per_run=per_run,
                                 runs_mesh=mesh)))
  eval_fn = cached("eval", lambda: step_.make_eval(parts.model, augment, per_run=per_run,
                                                   runs_mesh=mesh))
  teacher_cache = cached("teacher", lambda: step_.make_teacher_cache(
      parts.model, augment, per_run=per_run, runs_mesh=mesh))
  event_fn = cached("event", lambda: step_.make_event(
      parts.model, parts.method, parts.tx, augment, norm_batch_size=reinit.norm_batch_size,
      distill=reinit.distill, optimizer_policy=reinit.optimizer_policy,
      batch_stats_policy=reinit.batch_stats_policy, capacity=capacity,
      idle_norm_policy=reinit.idle_norm_policy, per_run=per_run, runs_mesh=mesh,
      compiler_options=rare, values=parts.values[1], select_impl=select_impl))
  norm_fn = cached("norm", lambda: step_.make_norm(mesh))
  init_fn, prepare_fn = _state_functions(config, parts, cached, mesh, rare, select_impl)
  features_fn = (cached("features", lambda: step_.make_feature_diagnostics(
      parts.model, augment, per_run=per_run, runs_mesh=mesh))
      if config.run.feature_diagnostics else None)
  return Compiled(train_call, eval_fn, teacher_cache, event_fn, norm_fn, init_fn, prepare_fn,
                  distill_mode, features_fn)


def _state_functions(config, parts: Parts, cached, mesh, rare, select_impl):
  """``(init_fn, prepare_fn)``: the initial state, the method's preparation of it (or None)."""
  # Locals, not parts or config: a cached function keeps what it closes over for the rest of a grid.
  model, method, tx, distill = parts.model, parts.method, parts.tx, config.reinit.distill
  anchor, step_events = config.optim.l2_init > 0, config.reinit.every_steps > 0
  init_fn = cached("init", lambda: step_.make_init(
      model, tx, distill=distill, anchor=anchor, step_events=step_events, runs_mesh=mesh,
      compiler_options=rare))
  prepare_fn = None
  if method.prepares:
    prepare_fn = cached("prepare", lambda: step_.make_prepare(
        method, select_impl=select_impl, runs_mesh=mesh, compiler_options=rare))
  return init_fn, prepare_fn


def _eval_sets(config, inputs: Inputs) -> dict:
  """{split: (x, y, index batches, weights)} on the devices for the non-empty validation and test
  splits of data in memory (a streamed data set is evaluated batch by batch, ``stream.py``)."""
  sets = {}
  if inputs.streaming:
    return sets
  for name in ("validation", "test"):
    split = getattr(inputs.data, name)
    if len(split):
      idx, w = feed.eval_batches(len(split), config.run.eval_batch_size, inputs.place.n)
      sh = inputs.place.batch(2, 1)
      x, y = inputs.arrays(lambda d: getattr(d, name))
      sets[name] = (x, y, jax.device_put(idx, sh), jax.device_put(w, sh))
  return sets
