"""Run setup: everything built once before training — data, model, method, optimizer, jitted pieces.

:class:`Run` takes a validated config (``validation.validate``) and builds each component from its
own section; the stage loop (``loop.py``) only calls what is built here. Data is built from the data
seed and shared by the seeds of the run axis (their init, batch order, augmentation, dropout and
events differ); with ``data.per_seed`` every seed draws its own data set (the synthetic task).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax import data as D
from reinit_jax import methods, models
from reinit_jax.train import compiled, faults, feed, multihost, outputs, schedules, step as S
from reinit_jax.train import validation
from reinit_jax.train import pack as pack_
from reinit_jax.train.state import base_keys, init_state, prepare_state


# What runs a few times per run (init, prepare, events) compiles without LLVM's expensive passes on
# XLA:CPU: 40% less compile time for the same bits (checked by the digest tests); the train step
# and evaluation keep the full optimization.
_RARE = {"xla_llvm_disable_expensive_passes": True}


class Run:
  """The built run: ``data``, ``model``, ``method``, ``tx``, the jitted ``train_call``,
  ``eval_fn``, ``event_fn``, ``teacher_cache``, ``norm_fn``, and the stage geometry (T stages of E
  epochs, ``stage_n`` examples, ``batch`` size and ``spe`` steps per epoch of every stage)."""

  def __init__(self, c, pack=None):
    self.c, self.pack = c, pack  # pack: a train.pack.Pack (the runs of several grid points)
    self.seeds = [int(s) for s in c.run.seeds] if pack is None else list(pack.seeds)
    # data.per_seed: every seed its own data set, stacked on the run axis (S, N, ...); in a pack
    # whose points differ in a data value, each run's is its point's (train/pack.py).
    self.per_run = bool(c.data.per_seed) or bool(pack is not None and pack.per_run_data)
    views = [validation.data_view(pc, None if i == 0 or not pc.data.per_seed else s)
             for pc in ([c] if pack is None else pack.configs) for i, s in enumerate(pc.run.seeds)]
    built = {}  # runs that share a view (seeds of a point without per-seed data) share its arrays

    def build(view):
      key = json.dumps(view.to_dict(), sort_keys=True, default=str)
      if key not in built:
        built[key] = D.build(view)
      return built[key]

    with multihost.primary_first("reinit_jax:data"):  # several processes: one prepares the data
      self.data = build(views[0])
    self.run_data = [self.data] + [build(v) for v in views[1:]] if self.per_run else None
    meta = self.data.meta
    self.streaming = not meta.in_memory
    if self.streaming and pack is not None and pack.per_run_data:
      validation.fail("run.pack", c.run.pack, "'off' for a grid whose points differ in data "
                      "values on a streamed data set (a pack would hold one data set per run)")
    self.place = feed.placement(c.run.mesh, len(self.seeds), self.streaming)
    if self.streaming and c.reinit.distill and not c.reinit.distill_live:
      validation.fail("reinit.distill_live", False, "True for a streamed data set (no cache)")
    opts = c.model.options.to_dict()
    opts.setdefault("input_shape", tuple(meta.input_shape))
    self.model = models.create(c.model.name, meta.num_classes, num_blocks=c.model.num_blocks,
                               **opts)
    self.method = methods.get(c.reinit.method, **c.reinit.hparams.to_dict())
    self.T, self.E = c.reinit.stages, c.optim.epochs // c.reinit.stages
    self.stage_n = [len(self.data.train(t)) for t in range(1, self.T + 1)]
    self.batch = [c.data.batch_size or n for n in self.stage_n]
    for n, b in zip(self.stage_n, self.batch):  # what only the built data can tell
      if b % self.place.n or b > n:
        validation.fail("data.batch_size", c.data.batch_size,
                        f"a multiple of the device count {self.place.n}, at most the {n} "
                        "training examples of a stage")
    self.spe = [n // b for n, b in zip(self.stage_n, self.batch)]
    self.total_steps = sum(self.spe) * self.E
    o = c.optim
    self.hyper = dict(pack.hyper) if pack is not None else {}
    self.tx = schedules.make_optimizer(o.optimizer, o.weight_decay, o.momentum,
                                       o.options.to_dict(),
                                       decay=True if "weight_decay" in self.hyper else None)
    stage_steps = [s * self.E for s in self.spe]
    self.lr_fn = schedules.make_schedule(o.schedule, o.learning_rate, stage_steps,
                                         self.total_steps)
    self.values = (None, None)
    if self.hyper:
      self.values = pack_.resolver(c, self.tx, self.lr_fn, self.method, stage_steps,
                                   self.total_steps)
    self._build_functions(c)

  def _build_functions(self, c):
    r = c.reinit
    select_impl = None if r.select_impl == "auto" else r.select_impl  # None: $REINIT_SELECT_IMPL
    # What the built data and devices decide, beside the config (train/compiled.py keys on both).
    self.derived = [self.data.meta.num_classes, list(self.data.meta.input_shape), self.streaming,
                    self.place.key(), self.stage_n, self.batch, self.E, len(self.seeds),
                    self.per_run, sorted(self.hyper)]
    cached = lambda kind, build: compiled.get_or_build(kind, c, self.derived, build)
    mesh = self.place.runs_mesh
    rare = _RARE if jax.default_backend() == "cpu" else None
    augment = (lambda k, x, train: x.astype(jnp.float32)) if self.streaming else self.data.augment
    self.distill = "off" if not r.distill else ("live" if r.distill_live else "cached")

    def step():
      stepper = S.make_step(self.model, self.tx, self.lr_fn, augment, distill=self.distill,
                            beta=r.distill_beta, values=self.values[0])
      return faults.guard_step(stepper, c.run.nan_policy)  # NaN/inf record inside the scan

    # Online mode: the training view grows every stage; fixed-shape calls (rows padded to the
    # largest view, steps to the longest call) keep one compilation for the whole run.
    online = len(set(self.stage_n)) > 1 and not self.streaming
    cap = max(self.stage_n) if online else None
    steps = (max(feed.epochs_per_call(self.E, s, c.run.max_steps_per_call) * s for s in self.spe)
             if online else None)
    self.train_call = cached("train", lambda: (
        S.make_stream_call(step()) if self.streaming
        else S.make_train_call(step(), cached=self.distill == "cached", capacity=cap,
                               max_steps=steps, per_run=self.per_run, runs_mesh=mesh)))
    self.eval_fn = cached("eval", lambda: S.make_eval(self.model, augment, per_run=self.per_run,
                                                      runs_mesh=mesh))
    self.teacher_cache = cached("teacher", lambda: S.make_teacher_cache(
        self.model, augment, per_run=self.per_run, runs_mesh=mesh))
    self.event_fn = cached("event", lambda: S.make_event(
        self.model, self.method, self.tx, augment, norm_batch_size=r.norm_batch_size,
        distill=r.distill, optimizer_policy=r.optimizer_policy,
        batch_stats_policy=r.batch_stats_policy, capacity=cap,
        idle_norm_policy=r.idle_norm_policy, per_run=self.per_run, runs_mesh=mesh,
        compiler_options=rare, values=self.values[1], select_impl=select_impl))
    self.norm_fn = cached("norm", lambda: S.jit_seeds(
        S.over_runs(outputs.param_norm, (0,)), mesh, (True,)))
    model, method, tx, distill = self.model, self.method, self.tx, r.distill  # not self: a
    # cached function must not keep this run's data alive for the rest of a grid
    # θ_1 and the optimizer do not depend on the method: one compilation for a grid's methods.
    self.init_fn = cached("init", lambda: S.jit_seeds(S.over_runs(
        lambda k, s: init_state(model, None, tx, k, s, distill), (0, 0)), mesh, (True, True),
        compiler_options=rare))
    self.prepare_fn = None
    if method.declaration.prepare is not None:
      self.prepare_fn = cached("prepare", lambda: S.jit_seeds(S.over_runs(
          lambda st: prepare_state(method, st, select_impl), (0,)), mesh, (True,), donate_argnums=0,
          compiler_options=rare))
    self.eval_sets = {}
    if not self.streaming:
      for name in ("validation", "test"):
        split = getattr(self.data, name)
        if len(split):
          idx, w = feed.eval_batches(len(split), c.run.eval_batch_size, self.place.n)
          sh = self.place.batch(2, 1)
          x, y = self.arrays(lambda d: getattr(d, name))
          self.eval_sets[name] = (x, y, jax.device_put(idx, sh), jax.device_put(w, sh))

  def arrays(self, pick):
    """``pick(data).x, .y`` on the devices (replicated); per-run data: stacked (S, N, ...), split
    over the mesh's 'runs' axis with the seeds."""
    if not self.per_run:
      split = pick(self.data)
      return self.place.replicate(split.x), self.place.replicate(split.y)
    splits = [pick(d) for d in self.run_data]
    return (self.place.seeded(np.stack([s.x for s in splits])),
            self.place.seeded(np.stack([s.y for s in splits])))

  def init(self):
    """The initial state (S seeds), split over the mesh's 'runs' axis (replicated over 'data')."""
    seeds = self.place.seeded(np.asarray(self.seeds, np.int32))
    state = self.init_fn(self.place.seeded(base_keys(self.seeds)), seeds)
    state = state if self.prepare_fn is None else self.prepare_fn(state)
    if self.hyper:  # a pack's per-run values (train/pack.py)
      state = state.replace(hyper={k: jnp.asarray(v) for k, v in self.hyper.items()})
    return self.place.seeded(state)
