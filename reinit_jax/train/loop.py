"""``run(config, workdir)``: the stage loop of training with re-initialization ([AA] §4, [LW] §3, [Z] §3).

For t = 1..T: train E = floor(N/T) epochs (with a full batch an epoch is one gradient step, as in
[LW] §1.1's rounds), evaluate on validation and test, checkpoint, then apply the event
θ ← R(θ, θ_init(key(seed, t)), t): T − 1 events, so every method gets the same T·E epochs of steps.

Training metrics are fetched one call late so the host never waits on the device between calls.
The guarded step records the first non-finite step inside the scanned call; the loop reads that
record with the call's metrics and always before evaluating, checkpointing or applying an event, so
no checkpoint ever holds a bad state. SIGTERM is checked after every call: checkpoint, then
:class:`faults.Preempted` (README, Reliability).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax.backends import cpu_host
from reinit_jax.checkpoint import Checkpoints
from reinit_jax.train import faults, feed, train_set_eval, multihost, outputs, stream, validation
from reinit_jax.train import pack as pack_
from reinit_jax.train import workdir as workdir_
from reinit_jax.train.position import Position
from reinit_jax.train.build import Built

log_ = logging.getLogger("reinit_jax")


def run(config, workdir: str, pack=None) -> dict:
  """Trains ``config`` in ``workdir``; resumes from its latest checkpoint if there is one.

  ``config``: a config, or what ``validation.check`` returned for it (then not checked again).

  Returns the summary (also written to ``workdir/summary.json``): test_accuracy {mean, std,
  per_seed} at the best validation accuracy, best_validation_accuracy, per-stage final metrics,
  wall_time_s, a time breakdown (``times``), steps_per_second, params_digest, events, steps; with
  ``run.eval_train='eval'`` also epochs_to_fit, fit_reached, fit_threshold (``train_set_eval``). Raises
  ValueError (one line) on a bad config before any compute. With ``run.stop_after_steps`` the run
  checkpoints and returns early with ``interrupted: True``. Faults (README, Reliability): raises
  ``faults.Preempted`` after a SIGTERM checkpoint, ``faults.NonFiniteError`` on a NaN/inf
  (nan_policy='stop'), ``CheckpointError`` when a checkpoint cannot be written.

  ``pack`` (``train/pack.py``): the runs of several grid points, ``config`` the first point's;
  ``workdir`` is the pack's, and every point's own directory is written when the pack finishes.
  Without one, ``config``'s seeds train as a pack of one (``Pack.alone``).
  """
  t_start = time.time()
  with faults.StopFlag() as stop:  # from here on Ctrl-C waits for a safe point
    # Validated and built by the caller (a study, a grid), or here.
    checked = config if isinstance(config, validation.Checked) else validation.check(config)
    pack = pack_.Pack.alone(checked.config, workdir) if pack is None else pack
    checked = validation.for_pack(checked, tuple(pack.hyper))  # the values riding on the runs
    c = checked.config
    if c.run.distributed:
      multihost.initialize()  # before anything touches a JAX backend
    # Several processes share the workdir: process 0 locks and prepares it (restart clears it), the
    # others only check it, before anything is read from it (docs/launching.md, "Multi-process
    # runs").
    found = workdir_.contents(workdir)  # what a run that fails before training leaves (restore)
    with workdir_.Lock(workdir) if multihost.is_primary() else contextlib.nullcontext():
      done = workdir_.finished_summary(workdir, c)
      if done is not None:
        log_.warning("%s: already finished (summary.json kept as it was)", workdir)
        return done
      if multihost.is_primary():
        workdir_.prepare(workdir, c)
      elif not c.run.restart:
        workdir_.check_resumable(workdir, c)
      multihost.barrier("reinit_jax:prepared")
      cpu_host.tune_cpu_allocator(c.run.tune_cpu_allocator)
      if c.run.progress != "off" and multihost.is_primary():  # no silence before the first update
        print(f"[{pack.label}] preparing the data, the model and the compiled functions (the first "
              "call compiles; a later run loads it from the compilation cache)", flush=True)
      with outputs.CompileTimer() as compile_timer:
        try:
          built = Built(checked, pack)  # data, functions: where missing data or a bad setting shows
        except Exception:
          if multihost.is_primary():
            workdir_.restore(workdir, found)
          raise
        if stop.set:
          raise faults.Preempted(f"{stop.name} before training started; nothing to save",
                                 stop.signum)
        return _Loop(built, workdir, t_start, compile_timer).train(stop)


class _Outputs(NamedTuple):
  """What a run writes while it trains: its ``checkpoints``, the metrics ``log``
  (``outputs.MetricsLog``; ``multihost.ReplicaLog`` off process 0), the ``progress`` lines and the
  per-phase ``times``."""

  checkpoints: Checkpoints
  log: Any
  progress: outputs.Progress
  times: outputs.PhaseTimes


class _Session(NamedTuple):
  """Where this process took the run up: its ``start`` (``time.time()``), the ``wall_time_s`` of
  the sessions before it and the ``step`` it started at (wall time and steps/s count from here)."""

  start: float
  wall_time_s: float
  step: int


class _StageInputs(NamedTuple):
  """Stage ``number``'s training inputs, built once per stage: its host ``split``; in memory its
  arrays ``x``, ``y`` on the devices and the cached ``teacher_probs`` (or None); streamed its
  ``feeder``; its ``examples``, ``batch_size`` and ``steps_per_epoch``; per train call
  ``epochs_per_call`` (in memory: whole epochs) and ``steps_per_call``."""

  number: int
  split: Any
  x: Any
  y: Any
  teacher_probs: Any
  feeder: Any
  examples: int
  batch_size: int
  steps_per_epoch: int
  epochs_per_call: int
  steps_per_call: int


class _Loop:
  """The stage loop over a :class:`Built` (its runs side by side); ``train(stop)`` returns the summary.

  Reads top-down: :meth:`train` → :meth:`_restore` → :meth:`_stages` → per stage its train calls,
  evaluations, checkpoints and event → :meth:`_summary`.
  """

  def __init__(self, built: Built, workdir: str, t_start: float, compile_timer):
    self.built, self.workdir = built, workdir
    self.t_start, self.compile_timer = t_start, compile_timer
    self.fit = train_set_eval.TrainFit(built, built.config)  # run.eval_train: training-set evaluation ([Z] §6)
    # Set by _restore, before the first stage: the position (advanced in place from then on), the
    # outputs and this session's start.
    self.pos: Position | None = None
    self.outputs: _Outputs | None = None
    self.session: _Session | None = None
    self.last_ckpt = -1  # the step of the latest checkpoint (_restore, then _save)
    self.stage_inputs: _StageInputs | None = None  # the current stage's (_stage; read by _event)
    self.pending = None  # (metrics, step counters, position) of the last call, fetched late

  def train(self, stop) -> dict:
    closers = []  # closed also when the loop raises
    try:
      state = self._restore(closers)
      state, stopped = self._stages(state, stop)
      self._flush()
      self.outputs.log.verify()
      return self._summary(state, stopped)
    finally:
      for close in reversed(closers):
        close()

  # ----------------------------------------------------------------------------- start-up

  def _restore(self, closers):
    """The state to start from: the latest checkpoint's, else the initial one. Sets ``pos``,
    ``last_ckpt``, ``outputs`` and ``session``."""
    built = self.built
    checkpoints = Checkpoints(os.path.join(self.workdir, "checkpoints"),
                              built.config.run.keep_checkpoints)
    closers.append(checkpoints.close)
    state = built.init()
    pos = Position.fresh(len(built.inputs.seeds))
    restored = checkpoints.restore_latest(state)
    if restored is not None:
      self.last_ckpt, state, meta = restored
      pos = Position.from_json(meta)
      state = built.inputs.place.seeded(state)
      if not pos.done:
        log_.warning("resuming %s from its checkpoint at step %d (stage %d)", self.workdir,
                     self.last_ckpt, pos.stage)
    self.pos = pos
    self.outputs = self._open_outputs(checkpoints, closers)
    # Start-up: validation, data, model, first state, restore (imports and compilation aside).
    self.outputs.times.add("startup", time.time() - self.t_start - self.compile_timer.seconds)
    self.session = _Session(time.time(), pos.wall_time_s, pos.step)
    return state

  def _open_outputs(self, checkpoints, closers) -> _Outputs:
    """The outputs from the restored position: metrics log, progress lines, phase times."""
    built, pos = self.built, self.pos
    mode = built.config.run.progress
    # Every process holds the same records; process 0 alone writes them and shows progress.
    primary = multihost.is_primary()
    log = (outputs.MetricsLog(self.workdir, pos.records) if primary
           else multihost.ReplicaLog(pos.records))
    progress = outputs.Progress(mode if mode != "off" and primary else "none",
                                built.geometry.total_steps, pos.step,
                                name=built.pack.label, examples_per_step=(
                                    built.geometry.batch_sizes[0] * len(built.inputs.seeds)))
    closers += [log.close, progress.close]
    return _Outputs(checkpoints, log, progress, outputs.PhaseTimes(pos.times, self.compile_timer))

  def _stages(self, state, stop):
    """Stages ``pos.stage``..T, each but the last followed by its event; returns (state, stopped
    early)."""
    pos, stages = self.pos, self.built.geometry.stages
    stopped = False
    t = pos.stage
    while t <= stages and not pos.done:
      state, stopped = self._stage(state, t, stop)
      if stopped:
        break
      if t < stages:
        self._wait()
        with self.outputs.times.phase("event"):
          state = self._event(state, t)
          jax.block_until_ready(state)
        pos.events += 1
      t += 1
      pos.stage, pos.epoch = t, 0
    return state, stopped

  # ----------------------------------------------------------------------------- one stage

  def _stage(self, state, t, stop):
    """Trains stage t from the current position; returns (state, stopped early)."""
    pos, epochs = self.pos, self.built.geometry.epochs_per_stage
    self.stage_inputs = self._stage_inputs(state, t)
    while pos.epoch < epochs:
      epoch = pos.epoch
      state = self._train_call(state, stop)
      self._evaluate_if_due(state, epoch)
      self._checkpoint_if_due(state)
      if self._stops(state, stop):
        return state, True
    return state, False

  def _stage_inputs(self, state, t) -> _StageInputs:
    """Stage t's training inputs (and the training-set evaluation's, ``train_set_eval``)."""
    built, max_steps = self.built, self.built.config.run.max_steps_per_call
    inputs, geometry = built.inputs, built.geometry
    split = inputs.data.train(t)
    x_dev = y_dev = None
    if not inputs.streaming:
      x_dev, y_dev = inputs.arrays(lambda d: d.train(t))
    self.fit.stage(t, x_dev)
    n, batch_size = geometry.stage_examples[t - 1], geometry.batch_sizes[t - 1]
    steps_per_epoch, epochs = geometry.steps_per_epoch[t - 1], geometry.epochs_per_stage
    epochs_per_call = feed.epochs_per_call(epochs, steps_per_epoch, max_steps)
    teacher_probs = (self._teacher_probs(state, t, n, x_dev)
                     if built.compiled.distill_mode == "cached" else None)
    # Steps per call: whole epochs in memory; streamed, possibly a fraction of an epoch.
    steps_per_call = (stream.steps_per_call(epochs, steps_per_epoch, max_steps) if inputs.streaming
                      else epochs_per_call * steps_per_epoch)
    feeder = (stream.TrainFeed(split, inputs.seeds[0], steps_per_epoch, batch_size, inputs.place)
              if inputs.streaming else None)
    return _StageInputs(t, split, x_dev, y_dev, teacher_probs, feeder, n, batch_size,
                        steps_per_epoch, epochs_per_call, steps_per_call)

  def _teacher_probs(self, state, t, n, x_dev):
    """Stage t's cached teacher probabilities ([Z] §3.1): the network at the end of stage t − 1 on
    the un-augmented training inputs; zeros in stage 1 (β is off), so nothing retraces."""
    inputs = self.built.inputs
    idx, _ = feed.eval_batches(n, self.built.config.run.eval_batch_size, inputs.place.n)
    if t > 1:
      return self.built.compiled.teacher_cache(state.teacher, x_dev,
                                             jax.device_put(idx, inputs.place.batch(2, 1)))
    return inputs.place.seeded(jnp.zeros((len(inputs.seeds), idx.size,
                                          inputs.data.meta.num_classes), jnp.float32))

  def _train_call(self, state, stop):
    """One train call of the current stage from the current position, which it advances; the
    call's metrics wait in ``pending`` (the previous call's are written here)."""
    built, pos, current = self.built, self.pos, self.stage_inputs
    inputs, train_call = built.inputs, built.compiled.train_call
    t, epoch, steps = current.number, pos.epoch, current.steps_per_call
    first = (t - 1) * built.geometry.epochs_per_stage + epoch  # the call's first epoch in the run
    call_start = time.time()
    with self.outputs.times.phase("train"):
      if inputs.streaming:
        xs, ys = current.feeder.take(first, pos.epoch_step, steps)
        state, metrics = train_call(state, xs, ys)
      else:
        idx = feed.train_indices(inputs.seeds, first, current.epochs_per_call, current.examples,
                                 current.batch_size)
        idx = inputs.place.put(idx, inputs.place.batch(3, 2, seeded=True))
        state, metrics = train_call(state, current.x, current.y, current.teacher_probs, idx)
      self._flush()  # waits for the previous call: one loop turn lasts about one call
    stop.call_s = time.time() - call_start
    first_step = pos.step + 1
    spe = current.steps_per_epoch
    pos.epoch, pos.epoch_step = divmod(epoch * spe + pos.epoch_step + steps, spe)
    pos.step += steps
    # The call's step counters come with its metrics (the state is donated to the next call).
    self.pending = (metrics, metrics["step"], (pos.step, t, pos.epoch, first_step))
    return state

  def _evaluate_if_due(self, state, epoch):
    """Evaluates after a call that ended the stage or crossed ``run.eval_every_epochs`` (the call
    began in ``epoch``); with ``run.eval_train='call'`` the training set after every other call."""
    pos, t = self.pos, self.stage_inputs.number
    end_of_stage = pos.epoch == self.built.geometry.epochs_per_stage
    every = self.built.config.run.eval_every_epochs
    if end_of_stage or (every and pos.epoch // every > epoch // every):
      self._wait()
      with self.outputs.times.phase("evaluate"):
        self._evaluate(state, t)
    elif self.fit.mode == "call":  # the training set only, after every call
      self._wait()
      with self.outputs.times.phase("evaluate"):
        self._evaluate(state, t, held_out=False)

  def _checkpoint_if_due(self, state):
    """Checkpoints after a call that ended the stage (recording the stage's final metrics) or
    crossed ``run.checkpoint_every``."""
    pos, t = self.pos, self.stage_inputs.number
    end_of_stage = pos.epoch == self.built.geometry.epochs_per_stage
    every, steps = self.built.config.run.checkpoint_every, self.stage_inputs.steps_per_call
    if end_of_stage or (every and pos.step // every > (pos.step - steps) // every):
      self._wait()
      if end_of_stage:
        last = [rec for rec in self.outputs.log.records
                if rec["stage"] == t and rec["step"] == pos.step]
        pos.stages.append({"stage": t, "step": pos.step, "metrics": last})
        pos.done = t == self.built.geometry.stages
      self._save(state)

  def _stops(self, state, stop) -> bool:
    """Whether the run stops after this call: True at ``run.stop_after_steps`` (checkpointed);
    raises :class:`faults.Preempted` after a checkpoint when a process got a stop signal."""
    pos, config = self.pos, self.built.config
    if config.run.stop_after_steps and pos.step >= config.run.stop_after_steps and not pos.done:
      self._flush()
      self._save(state)
      return True
    # All processes stop at the same call: a signal reaches them at different steps.
    if multihost.any_process(stop.set) and not pos.done:  # after evaluation and stage record
      self._save(state)
      raise faults.Preempted(f"{stop.name or 'another process stopped'}: wrote the checkpoint at "
                             f"step {pos.step} (stage {self.stage_inputs.number}) in "
                             f"{self.outputs.checkpoints.directory}; re-run the same command to "
                             "resume", stop.signum)
    return False

  def _event(self, state, t):
    """The event after stage t: R, BatchNorm resets, normalizations, optimizer state (events.py)."""
    inputs, geometry, current = self.built.inputs, self.built.geometry, self.stage_inputs
    if inputs.streaming:  # one training batch of the stage's data (its last epoch's first batch)
      pool = stream.norm_batch(current.split, inputs.seeds[0], t * geometry.epochs_per_stage - 1,
                               geometry.batch_sizes[t - 1], inputs.place)
      n_now = jnp.asarray(geometry.batch_sizes[t - 1], jnp.int32)
    else:
      pool, n_now = current.x, jnp.asarray(geometry.stage_examples[t - 1], jnp.int32)
    return self.built.compiled.event_fn(state, pool, n_now)

  # ----------------------------------------------------------------------------- records

  def _wait(self):
    """:meth:`_flush`, its wait for the last call's compute counted as training time."""
    with self.outputs.times.phase("train"):
      self._flush()

  def _flush(self):
    """Writes the last call's training metrics; raises NonFiniteError if a step went bad."""
    if self.pending is None:
      return
    m, counters, (step, stage, epoch, first_step) = self.pending
    self.pending = None
    m, counters = multihost.fetch((m, counters))
    bad = faults.first_bad_step(counters)
    if bad:
      checkpoints = self.outputs.checkpoints
      good = checkpoints.latest_step()
      where = (f"the last good checkpoint (step {good}) is kept in {checkpoints.directory}"
               if good is not None else "no checkpoint was written yet")
      raise faults.NonFiniteError(
        f"non-finite loss or parameters at step {bad[0][1]} (stage {stage}) for seed(s) "
        f"{[self.built.pack.name(i) for i, _ in bad]}; {where}; set "
        "config.run.nan_policy='skip' to skip such steps")
    runs = range(len(self.built.inputs.seeds))
    if self.built.config.run.nan_policy == "skip" and not np.all(np.isfinite(m["loss"])):
      log_.warning("skipped non-finite step(s) among steps %d..%d (stage %d) of seed(s) %s",
                   first_step, step, stage,
                   [self.built.pack.name(s) for s in runs if not np.isfinite(m["loss"][s])])
    self.outputs.log.write([{"step": step, "stage": stage, "epoch": epoch, "split": "train",
                             "loss": float(m["loss"][s]), "accuracy": float(m["accuracy"][s]),
                             "learning_rate": float(m["learning_rate"][s]), "param_norm": None,
                             **self._step_event_counts(m, s),
                             **self.built.pack.who(s)} for s in runs])
    self.outputs.progress.update(step, stage, epoch, float(np.mean(m["loss"])),
                                 float(np.mean(m["accuracy"])))

  def _evaluate(self, state, stage, held_out: bool = True):
    """Validation and test of every seed (one host transfer), with ``run.eval_train`` the stage's
    training view too (``train_set_eval``, [Z] §6); updates the best-validation record (model selection,
    [LW] §3: test accuracy at the best validation accuracy). ``held_out=False``: the training view
    alone (``run.eval_train='call'``)."""
    built, pos = self.built, self.pos
    inputs, eval_fn = built.inputs, built.compiled.eval_fn
    runs = range(len(inputs.seeds))
    on_device = {name: eval_fn(state.variables, x, y, idx, w)
                 for name, (x, y, idx, w) in inputs.eval_sets.items() if held_out}
    fit = self.fit.due(pos.epoch == built.geometry.epochs_per_stage)
    if fit:
      on_device[train_set_eval.KEY] = self.fit.launch(state.variables)
    features = self._features(state) if held_out else None
    results, norms, features = multihost.fetch(
        (on_device, built.compiled.norm_fn(state.variables["params"]), features))
    if inputs.streaming and held_out:  # streamed in fixed-shape batches; an empty split is skipped
      for name, split in (("validation", inputs.data.validation), ("test", inputs.data.test)):
        if len(split):
          results[name] = stream.evaluate(eval_fn, state.variables, split,
                                          built.config.run.eval_batch_size, inputs.place,
                                          inputs.data.meta.input_shape)
    if fit:
      results.update(self.fit.collect(results.pop(train_set_eval.KEY), state.variables))
    recs = []
    for name, (loss, acc) in results.items():
      for s in runs:
        if name in self.fit.present and not self.fit.present[name][s]:
          continue  # a training-set split this run's point does not have (train_set_eval.collect)
        recs.append({"step": pos.step, "stage": stage, "epoch": pos.epoch, "split": name,
                     "loss": float(loss[s]), "accuracy": float(acc[s]), "learning_rate": None,
                     "param_norm": float(norms[s]), **self.built.pack.who(s)})
    for s in runs if features is not None else ():
      recs.append({"step": pos.step, "stage": stage, "epoch": pos.epoch, "split": "features",
                   **{k: float(v[s]) for k, v in features.items()}, **self.built.pack.who(s)})
    self.outputs.log.write(recs)
    best = pos.best
    for s in runs:
      if "test" in results:
        pos.last_test[s] = float(results["test"][1][s])
      if "validation" in results and results["validation"][1][s] > best.validation[s]:
        best.validation[s] = float(results["validation"][1][s])
        best.test[s] = float(results["test"][1][s]) if "test" in results else None
        best.step[s] = pos.step

  def _features(self, state):
    """``run.feature_diagnostics``: the diagnostics (device arrays) on the first 512 examples of
    the stage's training view, else None."""
    features_fn, current = self.built.compiled.features_fn, self.stage_inputs
    if features_fn is None:
      return None
    rows = min(512, current.examples)
    probe = current.x[:, :rows] if self.built.inputs.per_run else current.x[:rows]
    return features_fn(state.variables, probe)

  def _step_event_counts(self, m, s) -> dict:
    """Run ``s``'s step-level events so far and, for a unit-level method, the units they reset."""
    if "step_events" not in m:
      return {}
    counts = {"step_events": int(m["step_events"][s])}
    if self.built.parts.method.uses_activations:
      counts["units_reset"] = int(m["units_reset"][s])
    return counts

  def _save(self, state):
    self._flush()  # reads the fault record of the last call: a bad state is never saved
    pos, session, out = self.pos, self.session, self.outputs
    pos.wall_time_s = session.wall_time_s + time.time() - session.start
    pos.records = out.log.records
    out.log.verify()  # a damaged metrics.jsonl is rebuilt from the records before they are saved
    pos.times = out.times.totals()
    if pos.step != self.last_ckpt:
      with out.times.phase("checkpoint"):
        out.checkpoints.save(pos.step, state, pos.to_json())
      self.last_ckpt = pos.step

  def _summary(self, state, stopped: bool) -> dict:
    built, pos, session = self.built, self.pos, self.session
    pos.records = self.outputs.log.records
    now = time.time()
    steps_per_second = (pos.step - session.step) / max(now - session.start, 1e-9)
    wall = session.wall_time_s + now - session.start
    # Several points: every point's directory, before the pack's summary.
    params = built.pack.finish(state, pos, self.summary_of, wall, steps_per_second, stopped)
    summary = self.summary_of(pos, built.inputs.seeds, params, stopped, self.workdir, wall,
                              steps_per_second, built.config.reinit.method)
    if multihost.is_primary():
      workdir_.write_json(os.path.join(self.workdir, "summary.json"), summary, indent=2)
    return summary

  def summary_of(self, pos: Position, seeds: list, params, stopped: bool, workdir: str,
                 wall: float, steps_per_second: float, method: str) -> dict:
    """summary.json of the runs ``seeds`` at ``pos`` (a pack's point: its share of both)."""
    best = pos.best
    has_val = any(v >= 0 for v in best.validation)
    # Without a validation split (synthetic task) the test accuracy is the final one.
    test = best.test if has_val else pos.last_test
    nan = float("nan")
    return {
      "name": self.built.config.name, "method": method, "seeds": seeds,
      "test_accuracy": outputs.mean_std([nan if v is None else v for v in test]),
      "best_validation_accuracy": outputs.mean_std(best.validation) if has_val else None,
      "best_step": best.step if has_val else None,
      "final_test_accuracy": outputs.mean_std([nan if v is None else v for v in pos.last_test]),
      "stages": pos.stages, "events": pos.events, "steps": pos.step,
      "total_steps": self.built.geometry.total_steps, "wall_time_s": wall,
      "times": self.outputs.times.totals(),
      "steps_per_second": steps_per_second,
      "params_digest": outputs.params_digest(params),
      "interrupted": stopped, "workdir": os.path.abspath(workdir),
      **self.fit.summary(pos.records, seeds, self.built.geometry.stages),
    }
