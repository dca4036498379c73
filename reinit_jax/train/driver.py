"""The stage loop of :func:`reinit_jax.train.run`: train, evaluate, checkpoint, event (SPEC §1).

Position of a run = (stage t, epochs done in t, global step); checkpoints are taken only at call
boundaries, so a resumed run replays exactly the calls an uninterrupted one makes. Training metrics
are fetched one call late so the host never waits on the device between calls.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax.checkpoint import Checkpoints
from reinit_jax.train import feed, outputs


def _fresh_meta(S: int) -> dict:
  return {"stage": 1, "epoch": 0, "step": 0, "events": 0, "records": [], "stages": [],
          "best": {"validation": [-1.0] * S, "test": [None] * S, "step": [None] * S},
          "last_test": [None] * S, "wall_time_s": 0.0, "done": False}


def _evaluate(r, state, meta, stage, epoch, step, log):
  """Validation and test of every seed; updates the best-validation record (model selection)."""
  S = len(r.seeds)
  results = {}
  for name, (x, y, idx, w) in r.eval_sets.items():
    loss, acc = r.eval_fn(state.variables, x, y, idx, w)
    results[name] = (np.asarray(loss), np.asarray(acc))
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
  """Runs (or resumes) ``r`` to the end or to ``stop_after_steps``; returns the summary."""
  from reinit_jax.train.loop import check_resumable, config_json
  check_resumable(workdir, c)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(config_json(c), f, indent=2, sort_keys=True)
  S = len(r.seeds)
  ckpt = Checkpoints(os.path.join(workdir, "checkpoints"), c.keep_checkpoints)
  state = r.init()
  meta = _fresh_meta(S)
  latest = ckpt.latest_step()
  if latest is not None:
    state, meta = ckpt.restore(latest, state)
    state = r.place.replicate(state)
  log = outputs.MetricsLog(workdir, meta["records"])
  progress = outputs.Progress(c.progress if c.progress != "off" else "none", r.total_steps,
                              meta["step"], name=f"{c.name}:{c.method}")
  t0, wall0, steps0 = time.time(), meta["wall_time_s"], meta["step"]
  last_ckpt = meta["step"] if latest is not None else -1

  def save(state):
    nonlocal last_ckpt
    meta["wall_time_s"] = wall0 + time.time() - t0
    meta["records"] = log.records
    if meta["step"] != last_ckpt:
      ckpt.save(meta["step"], state, meta)
      last_ckpt = meta["step"]

  stopped = False
  t = meta["stage"]
  pending = None  # (metrics on device, position) of the last call, fetched one call late

  def flush():
    nonlocal pending
    if pending is None:
      return
    m, (step, stage, epoch) = pending
    m = jax.device_get(m)
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
    while meta["epoch"] < r.E:
      e = meta["epoch"]
      first = (t - 1) * r.E + e
      if r.streaming:
        xs, ys = _stream_batches(split, r.seeds[0], first, g, B)
        state, m = r.train_call(state, xs, ys)
      else:
        idx = feed.train_indices(r.seeds, first, g, n, B)
        idx = jax.device_put(idx, r.place.batch(3, 2))
        state, m = r.train_call(state, x_dev, y_dev, tprobs, idx)
      flush()
      meta["epoch"] = e + g
      meta["step"] += g * spe
      pending = (m, (meta["step"], t, meta["epoch"]))
      ev = c.eval_every_epochs
      if meta["epoch"] == r.E or (ev and (e + g) // ev > e // ev):
        flush()
        _evaluate(r, state, meta, t, meta["epoch"], meta["step"], log)
      ce = c.checkpoint_every
      if meta["epoch"] == r.E or (ce and meta["step"] // ce > (meta["step"] - g * spe) // ce):
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
    if stopped:
      break
    if t < r.T:
      n_now = jnp.asarray(r.stage_n[t - 1], jnp.int32)
      state = r.event_fn(state, _norm_pool(r, x_dev, split, B), n_now if not r.streaming
                         else jnp.asarray(B, jnp.int32))
      meta["events"] += 1
    t += 1
    meta["stage"], meta["epoch"] = t, 0
  flush()
  progress.close()
  log.close()
  ckpt.close()
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
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return summary


def _norm_pool(r, x_dev, split, B):
  """Training inputs the event measures normalizations on (streaming: one training batch)."""
  if not r.streaming:
    return x_dev
  xs, _ = _stream_batches(split, r.seeds[0], 0, 1, B, max_steps=1)
  return xs[0]


def _stream_batches(split, seed, first_epoch, num_epochs, B, max_steps=None):
  """Host batches of ``num_epochs`` epochs from a streamed split: (n, B, ...), (n, B)."""
  xs, ys = [], []
  for j in range(num_epochs):
    for x, y in split.batches(seed, first_epoch + j, B):
      xs.append(x)
      ys.append(y)
      if max_steps and len(xs) >= max_steps:
        return np.stack(xs), np.stack(ys)
  return np.stack(xs), np.stack(ys)
