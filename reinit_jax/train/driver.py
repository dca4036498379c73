"""The stage loop of :func:`reinit_jax.train.run`: train, evaluate, checkpoint, event (SPEC §1).

Position of a run = (stage t, epochs done in t, global step); checkpoints are taken only at call
boundaries, so a resumed run replays exactly the calls an uninterrupted one makes. Training metrics
are fetched one call late so the host never waits on the device between calls.

Faults (README, Reliability): the guarded step records the first non-finite step inside the scanned
call; the driver reads that record with the call's metrics (one call late, no extra wait) and always
before evaluating, checkpointing or applying an event, so no checkpoint ever holds a bad state.
SIGTERM is checked after every call: checkpoint, then :class:`faults.Preempted`.
"""

from __future__ import annotations

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax.checkpoint import Checkpoints
from reinit_jax.train import faults, feed, outputs, stream

log_ = logging.getLogger("reinit_jax")


def _fresh_meta(S: int) -> dict:
  # epoch_step: steps done in the current epoch (streaming calls may end inside an epoch).
  return {"stage": 1, "epoch": 0, "epoch_step": 0, "step": 0, "events": 0, "records": [],
          "stages": [],
          "best": {"validation": [-1.0] * S, "test": [None] * S, "step": [None] * S},
          "last_test": [None] * S, "wall_time_s": 0.0, "done": False}


def _evaluate(r, state, meta, stage, epoch, step, log):
  """Validation and test of every seed; updates the best-validation record (model selection)."""
  S = len(r.seeds)
  results = {}
  for name, (x, y, idx, w) in r.eval_sets.items():
    loss, acc = r.eval_fn(state.variables, x, y, idx, w)
    results[name] = (np.asarray(loss), np.asarray(acc))
  if r.streaming:  # streamed in fixed-shape batches; an empty split (no hold-out) is skipped
    for name, split in (("validation", r.data.validation), ("test", r.data.test)):
      if len(split):
        results[name] = stream.evaluate(r.eval_fn, state.variables, split, r.c.eval_batch_size,
                                        r.place, r.data.meta.input_shape)
  norms = np.asarray(r.norm_fn(state.variables["params"]))
  recs = []
  for name, (loss, acc) in results.items():
    for s in range(S):
      recs.append({"step": step, "stage": stage, "epoch": epoch, "split": name,
                   "loss": float(loss[s]), "accuracy": float(acc[s]), "learning_rate": None,
                   "param_norm": float(norms[s]), "seed": r.seeds[s]})
  log.write(recs)
  meta["records"] = log.records
  best = meta["best"]
  for s in range(S):
    if "test" in results:
      meta["last_test"][s] = float(results["test"][1][s])
    if "validation" in results and results["validation"][1][s] > best["validation"][s]:
      best["validation"][s] = float(results["validation"][1][s])
      best["test"][s] = float(results["test"][1][s]) if "test" in results else None
      best["step"][s] = step
  return {k: {"loss": v[0].tolist(), "accuracy": v[1].tolist()} for k, v in results.items()}


def _stage_data(r, t):
  """Stage t's training data on the device (online: chunks 1..t) and its teacher cache input."""
  split = r.data.train(t)
  if r.streaming:
    return split, None, None
  return split, r.place.replicate(split.x), r.place.replicate(split.y)


def train(r, c, workdir) -> dict:
  """Runs (or resumes) ``r`` to the end or to ``stop_after_steps``; returns the summary.

  Raises faults.Preempted after a SIGTERM checkpoint, faults.NonFiniteError (nan_policy='stop') and
  faults.CheckpointError (a failed write), each with a one-line message.
  """
  closers = []  # what _train opened, closed here also when it raises
  try:
    with faults.SigtermFlag() as sigterm:
      return _train(r, c, workdir, sigterm, closers)
  finally:
    for close in reversed(closers):
      close()


def _train(r, c, workdir, sigterm, closers) -> dict:
  from reinit_jax.train.loop import check_resumable, config_json
  check_resumable(workdir, c)
  faults.write_json(os.path.join(workdir, "config.json"), config_json(c), indent=2, sort_keys=True)
  S = len(r.seeds)
  ckpt = Checkpoints(os.path.join(workdir, "checkpoints"), c.keep_checkpoints)
  closers.append(ckpt.close)
  state = r.init()
  meta = _fresh_meta(S)
  restored = ckpt.restore_latest(state)
  latest = None
  if restored is not None:
    latest, state, meta = restored
    meta.setdefault("epoch_step", 0)  # checkpoints written before streaming positions existed
    state = r.place.replicate(state)
    if not meta["done"]:
      log_.warning("resuming %s from its checkpoint at step %d (stage %d)", workdir, latest,
                   meta["stage"])
  log = outputs.MetricsLog(workdir, meta["records"])
  progress = outputs.Progress(c.progress if c.progress != "off" else "none", r.total_steps,
                              meta["step"], name=f"{c.name}:{c.method}")
  closers += [log.close, progress.close]
  t0, wall0, steps0 = time.time(), meta["wall_time_s"], meta["step"]
  last_ckpt = meta["step"] if latest is not None else -1

  def save(state):
    nonlocal last_ckpt
    flush()  # reads the fault record of the last call: a bad state is never saved
    meta["wall_time_s"] = wall0 + time.time() - t0
    meta["records"] = log.records
    if meta["step"] != last_ckpt:
      ckpt.save(meta["step"], state, meta)
      last_ckpt = meta["step"]

  stopped = False
  t = meta["stage"]
  pending = None  # (metrics, step counters, position) of the last call, fetched one call late

  def flush():
    nonlocal pending
    if pending is None:
      return
    m, counters, (step, stage, epoch, first_step) = pending
    m, counters = jax.device_get((m, counters))
    bad = faults.first_bad_step(counters)
    if bad:
      pending = None
      good = ckpt.latest_step()
      where = (f"the last good checkpoint (step {good}) is kept in {ckpt.directory}" if good is not
               None else "no checkpoint was written yet")
      raise faults.NonFiniteError(
        f"non-finite loss or parameters at step {bad[0][1]} (stage {stage}) for seed(s) "
        f"{[r.seeds[i] for i, _ in bad]}; {where}; set config.nan_policy='skip' to skip such steps")
    if c.nan_policy == "skip" and not np.all(np.isfinite(m["loss"])):
      log_.warning("skipped non-finite step(s) among steps %d..%d (stage %d) of seed(s) %s",
                   first_step, step, stage,
                   [r.seeds[s] for s in range(S) if not np.isfinite(m["loss"][s])])
    log.write([{"step": step, "stage": stage, "epoch": epoch, "split": "train",
                "loss": float(m["loss"][s]), "accuracy": float(m["accuracy"][s]),
                "learning_rate": float(m["learning_rate"][s]), "param_norm": None,
                "seed": r.seeds[s]} for s in range(S)])
    progress.update(step, stage, epoch, float(np.mean(m["loss"])), float(np.mean(m["accuracy"])))
    pending = None

  while t <= r.T and not meta["done"]:
    split, x_dev, y_dev = _stage_data(r, t)
    n, B, spe = r.stage_n[t - 1], r.batch[t - 1], r.spe[t - 1]
    g = feed.epochs_per_call(r.E, spe, c.max_steps_per_call)
    tprobs = None
    if r.distill == "cached":
      idx, _ = feed.eval_batches(n, c.eval_batch_size, r.place.n)
      if t > 1:
        tprobs = r.teacher_cache(state.teacher, x_dev, jax.device_put(idx, r.place.batch(2, 1)))
      else:  # no teacher in stage 1 (β is off): zeros of the cache's shape, so nothing retraces
        tprobs = r.place.replicate(jnp.zeros((S, idx.size, r.data.meta.num_classes), jnp.float32))
    # Steps per call: g whole epochs in memory; streamed, possibly a fraction of an epoch.
    k = stream.steps_per_call(r.E, spe, c.max_steps_per_call) if r.streaming else g * spe
    feeder = stream.TrainFeed(split, r.seeds[0], spe, B, r.place) if r.streaming else None
    while meta["epoch"] < r.E:
      e = meta["epoch"]
      first = (t - 1) * r.E + e
      if r.streaming:
        xs, ys = feeder.take(first, meta["epoch_step"], k)
        state, m = r.train_call(state, xs, ys)
      else:
        idx = feed.train_indices(r.seeds, first, g, n, B)
        idx = jax.device_put(idx, r.place.batch(3, 2))
        state, m = r.train_call(state, x_dev, y_dev, tprobs, idx)
      flush()
      first_step = meta["step"] + 1
      meta["epoch"], meta["epoch_step"] = divmod(e * spe + meta["epoch_step"] + k, spe)
      meta["step"] += k
      # A copy of the counters: the state itself is donated to the next call.
      pending = (m, jnp.copy(state.step), (meta["step"], t, meta["epoch"], first_step))
      ev = c.eval_every_epochs
      if meta["epoch"] == r.E or (ev and meta["epoch"] // ev > e // ev):
        flush()
        _evaluate(r, state, meta, t, meta["epoch"], meta["step"], log)
      ce = c.checkpoint_every
      if meta["epoch"] == r.E or (ce and meta["step"] // ce > (meta["step"] - k) // ce):
        flush()
        if meta["epoch"] == r.E:
          last = [rec for rec in log.records if rec["stage"] == t and rec["step"] == meta["step"]]
          meta["stages"].append({"stage": t, "step": meta["step"], "metrics": last})
          meta["done"] = t == r.T
        save(state)
      if c.stop_after_steps and meta["step"] >= c.stop_after_steps and not meta["done"]:
        flush()
        save(state)
        stopped = True
        break
      if sigterm.set and not meta["done"]:  # after this call's evaluation and stage record
        save(state)
        raise faults.Preempted(f"SIGTERM: wrote the checkpoint at step {meta['step']} (stage {t}) "
                               f"in {ckpt.directory}; re-run the same command to resume")
    if stopped:
      break
    if t < r.T:
      flush()
      n_now = jnp.asarray(r.stage_n[t - 1], jnp.int32)
      state = r.event_fn(state, _norm_pool(r, x_dev, split, B, t), n_now if not r.streaming
                         else jnp.asarray(B, jnp.int32))
      meta["events"] += 1
    t += 1
    meta["stage"], meta["epoch"] = t, 0
  flush()
  wall = wall0 + time.time() - t0
  ran = meta["step"] - steps0
  best = meta["best"]
  has_val = any(v >= 0 for v in best["validation"])
  # Without a validation split (synthetic task) the test accuracy is the final one.
  test = best["test"] if has_val else meta["last_test"]
  summary = {
    "name": c.name, "method": c.method, "seeds": r.seeds,
    "test_accuracy": outputs.mean_std([v if v is not None else float("nan") for v in test]),
    "best_validation_accuracy": outputs.mean_std(best["validation"]) if has_val else None,
    "best_step": best["step"] if has_val else None,
    "final_test_accuracy": outputs.mean_std([v if v is not None else float("nan")
                                              for v in meta["last_test"]]),
    "stages": meta["stages"], "events": meta["events"], "steps": meta["step"],
    "total_steps": r.total_steps, "wall_time_s": wall,
    "steps_per_second": ran / max(time.time() - t0, 1e-9),
    "params_digest": outputs.params_digest(state.variables["params"]),
    "interrupted": stopped, "workdir": os.path.abspath(workdir),
  }
  faults.write_json(os.path.join(workdir, "summary.json"), summary, indent=2)
  return summary


def _norm_pool(r, x_dev, split, B, t):
  """Training inputs the event after stage t measures normalizations on; streaming: one training
  batch of the stage's data (its last epoch's first batch), as a global array of B rows."""
  if not r.streaming:
    return x_dev
  return stream.norm_batch(split, r.seeds[0], t * r.E - 1, B, r.place)
