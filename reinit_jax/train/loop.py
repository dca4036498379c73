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

import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax.checkpoint import Checkpoints
from reinit_jax.train import faults, feed, fitting, host, multihost, outputs, stream, validation
from reinit_jax.train import pack as pack_
from reinit_jax.train import workdir as W
from reinit_jax.train.position import Position
from reinit_jax.train.setup import Run

log_ = logging.getLogger("reinit_jax")


def run(config, workdir: str, pack=None) -> dict:
  """Trains ``config`` in ``workdir``; resumes from its latest checkpoint if there is one.

  Returns the summary (also written to ``workdir/summary.json``): test_accuracy {mean, std,
  per_seed} at the best validation accuracy, best_validation_accuracy, per-stage final metrics,
  wall_time_s, a time breakdown (``times``), steps_per_second, params_digest, events, steps; with
  ``run.eval_train='eval'`` also epochs_to_fit, fit_reached, fit_threshold (``fitting``). Raises
  ValueError (one line) on a bad config before any compute. With ``run.stop_after_steps`` the run
  checkpoints and returns early with ``interrupted: True``. Faults (README, Reliability): raises
  ``faults.Preempted`` after a SIGTERM checkpoint, ``faults.NonFiniteError`` on a NaN/inf
  (nan_policy='stop'), ``CheckpointError`` when a checkpoint cannot be written.

  ``pack`` (``train/pack.py``): the runs of several grid points, ``config`` the first point's;
  ``workdir`` is the pack's, and every point's own directory is written when the pack finishes.
  """
  t_start = time.time()
  with faults.StopFlag() as stop:  # from here on Ctrl-C waits for a safe point
    c = validation.validate(config)
    if c.run.distributed:
      multihost.initialize()  # before anything touches a JAX backend
    # Several processes share the workdir: process 0 locks and prepares it (restart clears it), the
    # others only check it, before anything is read from it (docs/launching.md, "Multi-process
    # runs").
    found = W.contents(workdir)  # what a run that fails before training leaves (W.restore)
    with W.Lock(workdir) if multihost.is_primary() else contextlib.nullcontext():
      done = W.finished_summary(workdir, c)
      if done is not None:
        log_.warning("%s: already finished (summary.json kept as it was)", workdir)
        return done
      if multihost.is_primary():
        W.prepare(workdir, c)
      elif not c.run.restart:
        W.check_resumable(workdir, c)
      multihost.barrier("reinit_jax:prepared")
      host.tune_cpu_allocator(c.run.tune_cpu_allocator)
      label = _label(workdir, pack)
      if c.run.progress != "off" and multihost.is_primary():  # no silence before the first update
        print(f"[{label}] preparing the data, the model and the compiled functions (the first "
              "call compiles; a later run loads it from the compilation cache)", flush=True)
      with outputs.CompileTimer() as compile_timer:
        try:
          r = Run(c, pack)  # data, model, functions: where missing data or a bad setting shows
        except Exception:
          if multihost.is_primary():
            W.restore(workdir, found)
          raise
        if stop.set:
          raise faults.Preempted(f"{stop.name} before training started; nothing to save",
                                 stop.signum)
        return _Loop(r, c, workdir, t_start, compile_timer).run(stop)


def _label(workdir: str, pack) -> str:
  """What progress lines call a run: its workdir's name (a grid point's name, a study's method),
  or the points of a pack."""
  if pack is not None:
    names = [os.path.basename(os.path.normpath(d)) for d in pack.workdirs]
    return f"pack of {len(names)} points: {names[0]}, ..." if len(names) > 1 else names[0]
  return os.path.basename(os.path.normpath(workdir))


class _Loop:
  """One run's stage loop over a built :class:`Run`; ``run()`` returns the summary."""

  def __init__(self, r: Run, c, workdir: str, t_start: float, compile_timer):
    self.r, self.c, self.workdir = r, c, workdir
    self.t_start, self.compile_timer = t_start, compile_timer
    self.pending = None  # (metrics, step counters, position) of the last call, fetched late
    self.fit = fitting.TrainFit(r, c)  # run.eval_train: training-set evaluation ([Z] §6)

  def run(self, stop) -> dict:
    closers = []  # closed also when the loop raises
    try:
      return self._run(stop, closers)
    finally:
      for close in reversed(closers):
        close()

  # ----------------------------------------------------------------------------- setup

  def _restore(self, closers):
    r, c = self.r, self.c
    self.ckpt = Checkpoints(os.path.join(self.workdir, "checkpoints"), c.run.keep_checkpoints)
    closers.append(self.ckpt.close)
    state = r.init()
    pos = Position.fresh(len(r.seeds))
    restored = self.ckpt.restore_latest(state)
    self.last_ckpt = -1
    if restored is not None:
      self.last_ckpt, state, meta = restored
      pos = Position.from_json(meta)
      state = r.place.seeded(state)
      if not pos.done:
        log_.warning("resuming %s from its checkpoint at step %d (stage %d)", self.workdir,
                     self.last_ckpt, pos.stage)
    return state, pos

  def _run(self, stop, closers) -> dict:
    r, c = self.r, self.c
    state, pos = self._restore(closers)
    self.pos = pos
    # Every process holds the same records; process 0 alone writes them and shows progress.
    primary = multihost.is_primary()
    self.log = (outputs.MetricsLog(self.workdir, pos.records) if primary
                else multihost.ReplicaLog(pos.records))
    self.progress = outputs.Progress(c.run.progress if c.run.progress != "off" and primary
                                     else "none",
                                     r.total_steps, pos.step, name=_label(self.workdir, r.pack),
                                     examples_per_step=r.batch[0] * len(r.seeds))
    closers += [self.log.close, self.progress.close]
    self.times = outputs.PhaseTimes(pos.times, self.compile_timer)
    # Start-up: validation, data, model, first state, restore (imports and compilation aside).
    self.times.add("startup", time.time() - self.t_start - self.compile_timer.seconds)
    self.t0, self.wall0, self.steps0 = time.time(), pos.wall_time_s, pos.step
    stopped = False
    t = pos.stage
    while t <= r.T and not pos.done:
      state, stopped = self._stage(state, t, stop)
      if stopped:
        break
      if t < r.T:
        self._wait()
        with self.times.phase("event"):
          state = self._event(state, t)
          jax.block_until_ready(state)
        pos.events += 1
      t += 1
      pos.stage, pos.epoch = t, 0
    self._flush()
    self.log.verify()
    return self._summary(state, stopped)

  # ----------------------------------------------------------------------------- one stage

  def _stage(self, state, t, stop):
    """Trains stage t from the current position; returns (state, stopped early)."""
    r, c, pos = self.r, self.c, self.pos
    split = r.data.train(t)
    x_dev = y_dev = None
    if not r.streaming:
      x_dev, y_dev = r.arrays(lambda d: d.train(t))
    self.stage_inputs = (split, x_dev)
    self.fit.stage(t, x_dev)
    n, B, spe = r.stage_n[t - 1], r.batch[t - 1], r.spe[t - 1]
    g = feed.epochs_per_call(r.E, spe, c.run.max_steps_per_call)
    tprobs = self._teacher_probs(state, t, n, x_dev) if r.distill == "cached" else None
    # Steps per call: g whole epochs in memory; streamed, possibly a fraction of an epoch.
    k = stream.steps_per_call(r.E, spe, c.run.max_steps_per_call) if r.streaming else g * spe
    feeder = stream.TrainFeed(split, r.seeds[0], spe, B, r.place) if r.streaming else None
    while pos.epoch < r.E:
      e = pos.epoch
      first = (t - 1) * r.E + e
      call_start = time.time()
      with self.times.phase("train"):
        if r.streaming:
          xs, ys = feeder.take(first, pos.epoch_step, k)
          state, m = r.train_call(state, xs, ys)
        else:
          idx = feed.train_indices(r.seeds, first, g, n, B)
          idx = r.place.put(idx, r.place.batch(3, 2, seeded=True))
          state, m = r.train_call(state, x_dev, y_dev, tprobs, idx)
        self._flush()  # waits for the previous call: one loop turn lasts about one call
      stop.call_s = time.time() - call_start
      first_step = pos.step + 1
      pos.epoch, pos.epoch_step = divmod(e * spe + pos.epoch_step + k, spe)
      pos.step += k
      # The call's step counters come with its metrics (the state is donated to the next call).
      self.pending = (m, m["step"], (pos.step, t, pos.epoch, first_step))
      ev = c.run.eval_every_epochs
      if pos.epoch == r.E or (ev and pos.epoch // ev > e // ev):
        self._wait()
        with self.times.phase("evaluate"):
          self._evaluate(state, t)
      elif self.fit.mode == "call":  # the training set only, after every call
        self._wait()
        with self.times.phase("evaluate"):
          self._evaluate(state, t, held_out=False)
      ce = c.run.checkpoint_every
      if pos.epoch == r.E or (ce and pos.step // ce > (pos.step - k) // ce):
        self._wait()
        if pos.epoch == r.E:
          last = [rec for rec in self.log.records if rec["stage"] == t and rec["step"] == pos.step]
          pos.stages.append({"stage": t, "step": pos.step, "metrics": last})
          pos.done = t == r.T
        self._save(state)
      if c.run.stop_after_steps and pos.step >= c.run.stop_after_steps and not pos.done:
        self._flush()
        self._save(state)
        return state, True
      # All processes stop at the same call: a signal reaches them at different steps.
      if multihost.any_process(stop.set) and not pos.done:  # after evaluation and stage record
        self._save(state)
        raise faults.Preempted(f"{stop.name or 'another process stopped'}: wrote the checkpoint at "
                               f"step {pos.step} (stage {t}) in {self.ckpt.directory}; re-run the "
                               "same command to resume", stop.signum)
    return state, False

  def _teacher_probs(self, state, t, n, x_dev):
    """Stage t's cached teacher probabilities ([Z] §3.1): the network at the end of stage t − 1 on
    the un-augmented training inputs; zeros in stage 1 (β is off), so nothing retraces."""
    r = self.r
    idx, _ = feed.eval_batches(n, self.c.run.eval_batch_size, r.place.n)
    if t > 1:
      return r.teacher_cache(state.teacher, x_dev, jax.device_put(idx, r.place.batch(2, 1)))
    return r.place.seeded(jnp.zeros((len(r.seeds), idx.size, r.data.meta.num_classes),
                                    jnp.float32))

  def _event(self, state, t):
    """The event after stage t: R, BatchNorm resets, normalizations, optimizer state (events.py)."""
    r = self.r
    split, x_dev = self.stage_inputs
    if r.streaming:  # one training batch of the stage's data (its last epoch's first batch)
      pool = stream.norm_batch(split, r.seeds[0], t * r.E - 1, r.batch[t - 1], r.place)
      n_now = jnp.asarray(r.batch[t - 1], jnp.int32)
    else:
      pool, n_now = x_dev, jnp.asarray(r.stage_n[t - 1], jnp.int32)
    return r.event_fn(state, pool, n_now)

  # ----------------------------------------------------------------------------- records

  def _wait(self):
    """:meth:`_flush`, its wait for the last call's compute counted as training time."""
    with self.times.phase("train"):
      self._flush()

  def _flush(self):
    """Writes the last call's training metrics; raises NonFiniteError if a step went bad."""
    if self.pending is None:
      return
    r, c = self.r, self.c
    m, counters, (step, stage, epoch, first_step) = self.pending
    self.pending = None
    m, counters = multihost.fetch((m, counters))
    bad = faults.first_bad_step(counters)
    if bad:
      good = self.ckpt.latest_step()
      where = (f"the last good checkpoint (step {good}) is kept in {self.ckpt.directory}"
               if good is not None else "no checkpoint was written yet")
      raise faults.NonFiniteError(
        f"non-finite loss or parameters at step {bad[0][1]} (stage {stage}) for seed(s) "
        f"{[self._run_name(i) for i, _ in bad]}; {where}; set config.run.nan_policy='skip' to skip "
        "such steps")
    S = len(r.seeds)
    if c.run.nan_policy == "skip" and not np.all(np.isfinite(m["loss"])):
      log_.warning("skipped non-finite step(s) among steps %d..%d (stage %d) of seed(s) %s",
                   first_step, step, stage,
                   [self._run_name(s) for s in range(S) if not np.isfinite(m["loss"][s])])
    self.log.write([{"step": step, "stage": stage, "epoch": epoch, "split": "train",
                     "loss": float(m["loss"][s]), "accuracy": float(m["accuracy"][s]),
                     "learning_rate": float(m["learning_rate"][s]), "param_norm": None,
                     **self._who(s)} for s in range(S)])
    self.progress.update(step, stage, epoch, float(np.mean(m["loss"])),
                         float(np.mean(m["accuracy"])))

  def _evaluate(self, state, stage, held_out: bool = True):
    """Validation and test of every seed (one host transfer), with ``run.eval_train`` the stage's
    training view too (``fitting``, [Z] §6); updates the best-validation record (model selection,
    [LW] §3: test accuracy at the best validation accuracy). ``held_out=False``: the training view
    alone (``run.eval_train='call'``)."""
    r, pos = self.r, self.pos
    S = len(r.seeds)
    on_device = {name: r.eval_fn(state.variables, x, y, idx, w)
                 for name, (x, y, idx, w) in r.eval_sets.items() if held_out}
    fit = self.fit.due(pos.epoch == r.E)
    if fit:
      on_device[fitting.KEY] = self.fit.launch(state.variables)
    results, norms = multihost.fetch((on_device, r.norm_fn(state.variables["params"])))
    if r.streaming and held_out:  # streamed in fixed-shape batches; an empty split is skipped
      for name, split in (("validation", r.data.validation), ("test", r.data.test)):
        if len(split):
          results[name] = stream.evaluate(r.eval_fn, state.variables, split,
                                          self.c.run.eval_batch_size, r.place,
                                          r.data.meta.input_shape)
    if fit:
      results.update(self.fit.collect(results.pop(fitting.KEY), state.variables))
    recs = []
    for name, (loss, acc) in results.items():
      for s in range(S):
        if name in self.fit.present and not self.fit.present[name][s]:
          continue  # a training-set split this run's point does not have (fitting.collect)
        recs.append({"step": pos.step, "stage": stage, "epoch": pos.epoch, "split": name,
                     "loss": float(loss[s]), "accuracy": float(acc[s]), "learning_rate": None,
                     "param_norm": float(norms[s]), **self._who(s)})
    self.log.write(recs)
    best = pos.best
    for s in range(S):
      if "test" in results:
        pos.last_test[s] = float(results["test"][1][s])
      if "validation" in results and results["validation"][1][s] > best.validation[s]:
        best.validation[s] = float(results["validation"][1][s])
        best.test[s] = float(results["test"][1][s]) if "test" in results else None
        best.step[s] = pos.step

  def _who(self, s: int) -> dict:
    """Run s of the run axis in a record: its seed, and in a pack its point's index."""
    r = self.r
    return {"seed": r.seeds[s]} if r.pack is None else {"seed": r.seeds[s],
                                                         "point": r.pack.point_of[s]}

  def _run_name(self, s: int):
    """Run s for a message: its seed, in a pack '<point name>:<seed>'."""
    r = self.r
    return r.seeds[s] if r.pack is None else f"{r.pack.points[r.pack.point_of[s]]}:{r.seeds[s]}"

  def _save(self, state):
    self._flush()  # reads the fault record of the last call: a bad state is never saved
    pos = self.pos
    pos.wall_time_s = self.wall0 + time.time() - self.t0
    pos.records = self.log.records
    self.log.verify()  # a damaged metrics.jsonl is rebuilt from the records before they are saved
    pos.times = self.times.totals()
    if pos.step != self.last_ckpt:
      with self.times.phase("checkpoint"):
        self.ckpt.save(pos.step, state, pos.to_json())
      self.last_ckpt = pos.step

  def _summary(self, state, stopped: bool) -> dict:
    r, pos = self.r, self.pos
    pos.records = self.log.records
    now = time.time()
    steps_per_second = (pos.step - self.steps0) / max(now - self.t0, 1e-9)
    wall = self.wall0 + now - self.t0
    if r.pack is not None and not stopped:  # every point's own directory, before the pack's summary
      host_state = multihost.fetch(state)  # one transfer: the points' checkpoints and digests
      params = host_state.variables["params"]
      if multihost.is_primary():
        pack_.write_points(self, host_state, wall, steps_per_second)
    else:
      params = multihost.fetch(state.variables["params"])
    summary = self.summary_of(pos, r.seeds, params, stopped, self.workdir, wall, steps_per_second,
                              self.c.reinit.method)
    if multihost.is_primary():
      W.write_json(os.path.join(self.workdir, "summary.json"), summary, indent=2)
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
      "name": self.c.name, "method": method, "seeds": seeds,
      "test_accuracy": outputs.mean_std([nan if v is None else v for v in test]),
      "best_validation_accuracy": outputs.mean_std(best.validation) if has_val else None,
      "best_step": best.step if has_val else None,
      "final_test_accuracy": outputs.mean_std([nan if v is None else v for v in pos.last_test]),
      "stages": pos.stages, "events": pos.events, "steps": pos.step,
      "total_steps": self.r.total_steps, "wall_time_s": wall,
      "times": self.times.totals(),
      "steps_per_second": steps_per_second,
      "params_digest": outputs.params_digest(params),
      "interrupted": stopped, "workdir": os.path.abspath(workdir),
      **self.fit.summary(pos.records, seeds, self.r.T),
    }
