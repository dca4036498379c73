"""``run(config, workdir)``: staged training with re-initialization events (SPEC §1–3).

For t = 1..T: train E = floor(N/T) epochs (an epoch of full-batch data is one gradient step, as the
synthetic task's rounds), evaluate on validation and test, checkpoint, then apply the event
θ ← R(θ, θ_init(key(seed, t)), t) — T−1 events in all, so every method gets T·E epochs of steps.
All seeds of the config train together under vmap. Data is built once from ``data_seed`` (default
the first seed) and shared by the seeds: their init, batch order, augmentation, dropout and events
differ, the held-out split, subset and noisy labels do not.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp

from reinit_jax import data as D
from reinit_jax import methods, models
from reinit_jax.train import faults, feed, host, outputs, schedules, step as S, validation
from reinit_jax.train.state import base_keys, init_state

# Fields that may differ between an interrupted run and its resumption.
_RESUME_FREE = ("stop_after_steps", "progress", "checkpoint_every", "keep_checkpoints", "name",
                "restart", "nan_policy")
# What a run writes in its workdir; config.restart=True removes these (and nothing else) first.
_OUTPUTS = ("checkpoints", "checkpoints.corrupt", "tensorboard", "metrics.jsonl", "summary.json",
            "config.json")


class Run:
  """Everything built for one run before training: data, model, method, jitted functions."""

  def __init__(self, c, workdir):
    self.c, self.workdir = c, workdir
    self.place = feed.Placement()
    self.data = D.build(validation.data_config(c))
    meta = self.data.meta
    self.streaming = not meta.in_memory
    if self.streaming and c.distill and not c.distill_live:
      validation._fail("distill_live", c.distill_live, "True for a streamed data set (no cache)")
    opts = c.model_kwargs.to_dict()
    opts.setdefault("input_shape", tuple(meta.input_shape))
    self.model = models.create(c.model, meta.num_classes, num_blocks=c.num_blocks, **opts)
    self.method = methods.get(c.method, **c.method_kwargs.to_dict())
    self.seeds = [int(s) for s in c.seeds]
    self.T, self.E = c.stages, c.epochs // c.stages
    self.stage_n = [len(self.data.train(t)) for t in range(1, self.T + 1)]
    self.batch = [c.batch_size or n for n in self.stage_n]
    for n, b in zip(self.stage_n, self.batch):
      if b % self.place.n or b > n:
        validation._fail("batch_size", c.batch_size, f"a multiple of the device count "
                         f"{self.place.n}, at most the {n} training examples of a stage")
    self.spe = [n // b for n, b in zip(self.stage_n, self.batch)]
    self.total_steps = sum(self.spe) * self.E
    self.tx = schedules.make_optimizer(c.optimizer, c.weight_decay, c.momentum,
                                       c.optimizer_kwargs.to_dict())
    self.lr_fn = schedules.make_schedule(c.schedule, c.learning_rate, self.spe[-1] * self.E,
                                         self.total_steps)
    if len(set(self.spe)) > 1 and c.schedule == "cosine_per_stage":
      # Online stages differ in length: the per-stage cosine spans each stage's own steps.
      lens = jnp.asarray([s * self.E for s in self.spe], jnp.int32)
      base = c.learning_rate

      def lr_fn(step_in_stage, step_, stage):
        n = lens[jnp.clip(stage - 1, 0, len(self.spe) - 1)].astype(jnp.float32)
        frac = jnp.minimum(step_in_stage.astype(jnp.float32) / n, 1.0)
        return jnp.float32(base) * 0.5 * (1 + jnp.cos(jnp.pi * frac))

      self.lr_fn = lr_fn
    else:
      plain = self.lr_fn
      self.lr_fn = lambda sis, st, stage: plain(sis, st)
    augment = (lambda k, x, train: x.astype(jnp.float32)) if self.streaming else self.data.augment
    distill = "off" if not c.distill else ("live" if c.distill_live else "cached")
    self.distill = distill
    stepper = S.make_step(self.model, self.tx, self.lr_fn, augment, distill=distill,
                          beta=c.distill_beta)
    stepper = faults.guard_step(stepper, c.nan_policy)  # NaN/inf record inside the scan
    # Online mode: the training view grows every stage; fixed-shape calls (rows padded to the
    # largest view, steps to the longest call) keep one compilation for the whole run.
    online = len(set(self.stage_n)) > 1 and not self.streaming
    cap = max(self.stage_n) if online else None
    steps = (max(feed.epochs_per_call(self.E, s, c.max_steps_per_call) * s for s in self.spe)
             if online else None)
    self.train_call = (S.make_stream_call(stepper) if self.streaming
                       else S.make_train_call(stepper, cached=distill == "cached", capacity=cap,
                                              max_steps=steps))
    self.eval_fn = S.make_eval(self.model, augment)
    self.teacher_cache = S.make_teacher_cache(self.model, augment)
    self.event_fn = S.make_event(self.model, self.method, self.tx, augment,
                                 norm_batch_size=c.norm_batch_size, distill=bool(c.distill),
                                 optimizer_policy=c.optimizer_policy,
                                 batch_stats_policy=c.batch_stats_policy, capacity=cap,
                                 idle_norm_policy=c.idle_norm_policy)
    self.norm_fn = jax.jit(jax.vmap(lambda p: jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32)))
                                                           for x in jax.tree.leaves(p)))))
    self.init_fn = jax.jit(jax.vmap(lambda k, s: init_state(self.model, self.method, self.tx, k, s,
                                                            bool(c.distill))))
    self.eval_sets = {}
    if not self.streaming:
      for name, split in (("validation", self.data.validation), ("test", self.data.test)):
        if len(split):
          idx, w = feed.eval_batches(len(split), c.eval_batch_size, self.place.n)
          sh = self.place.batch(2, 1)
          self.eval_sets[name] = (self.place.replicate(split.x), self.place.replicate(split.y),
                                  jax.device_put(idx, sh), jax.device_put(w, sh))

  def init(self):
    """The initial state (S seeds), replicated over the mesh."""
    seeds = jnp.asarray(self.seeds, jnp.int32)
    return self.place.replicate(self.init_fn(base_keys(self.seeds), seeds))


def run(config, workdir: str) -> dict:
  """Trains ``config`` (SPEC §1–3) in ``workdir``; resumes from its latest checkpoint if any.

  Returns the summary (also written to ``workdir/summary.json``): test_accuracy {mean, std,
  per_seed} at the best validation accuracy, best_validation_accuracy, per-stage final metrics,
  wall_time_s, steps_per_second, params_digest, events, steps. Raises ValueError on a bad config
  before any compute. With ``stop_after_steps`` the run checkpoints and returns early with
  ``interrupted: True`` once that many steps have run. Faults (README, Reliability): raises
  ``faults.Preempted`` after a SIGTERM checkpoint, ``faults.NonFiniteError`` on a NaN/inf
  (nan_policy='stop'), ``faults.CheckpointError`` when a checkpoint cannot be written.
  """
  c = validation.validate(config)
  if c.distributed:
    jax.distributed.initialize()
  if c.restart:
    _clear_outputs(workdir)
  os.makedirs(workdir, exist_ok=True)
  host.tune_cpu_allocator(c.tune_cpu_allocator)
  from reinit_jax.train import driver
  return driver.train(Run(c, workdir), c, workdir)


def config_json(c) -> dict:
  """The resolved config as JSON-able dict (tuples as lists)."""
  return json.loads(json.dumps(c.to_dict(), default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def check_resumable(workdir: str, c) -> None:
  """Refuses to resume a workdir whose config differs in a field that changes the result."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = json.load(f)
  new = config_json(c)
  diff = sorted(k for k in set(old) | set(new)
                if k not in _RESUME_FREE and old.get(k) != new.get(k))
  if diff:
    raise ValueError(f"workdir {workdir} holds a run of another config (fields {diff}); "
                     "use a new workdir, or set config.restart=True to discard it and start over")


def _clear_outputs(workdir: str) -> None:
  """Removes a previous run's outputs from ``workdir`` (config.restart=True); other files stay."""
  for name in _OUTPUTS:
    p = os.path.join(workdir, name)
    if os.path.isdir(p):
      shutil.rmtree(p)
    elif os.path.exists(p):
      os.remove(p)
  logging.getLogger("reinit_jax").warning("config.restart=True: cleared the previous run's "
                                          "outputs in %s", workdir)

