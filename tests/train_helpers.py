"""Shared by the engine tests: a tiny synthetic-task config, metrics rows, a counting R, counts of
what a run builds."""

import json
import os

import jax
import numpy as np

from reinit_jax import launch, methods, train
from reinit_jax.train import compiled, loop, build


def tiny_config(**overrides):
  """Synthetic task, 64 training / 256 test examples, full batch, 6 steps in 3 stages.

  ``overrides`` name fields by their unique leaf name (``learning_rate=0.1``) or, with ``__`` for
  the dot, by section (``model__options={...}``)."""
  c = train.base_config()
  c.name = "tiny"
  c.data.synthetic_train = 64
  c.data.synthetic_test = 256
  c.optim.epochs = 6
  c.reinit.stages = 3
  c.run.eval_batch_size = 256
  c.reinit.norm_batch_size = 32
  c.run.progress = "off"
  for k, v in overrides.items():
    launch.set_field(c, k.replace("__", "."), v)
  return c


def run_keeping(c, workdir, edit=None, fresh=False):
  """``train.run(c, workdir)`` that also returns the built :class:`build.Built` (its jitted functions'
  caches, its data); ``edit(run)`` may change the built run before the loop starts. ``fresh``: forget
  the jitted functions of earlier runs (train/compiled.py caches them per process) and build new ones, so
  that their compilation counts are this run's alone."""
  built = []

  class Kept(build.Built):
    def __init__(self, c_, pack=None):
      super().__init__(c_, pack)
      if edit is not None:
        edit(self)
      built.append(self)

  if fresh:
    forget_jitted()
  orig, loop.Built = loop.Built, Kept
  try:
    summary = loop.run(c, workdir)
  finally:
    loop.Built = orig
  return built[0], summary


def forget_jitted():
  """Drops the jitted functions that train/compiled.py caches across the runs of a process: a test that
  patches how they are built (fault injection) must neither reuse an earlier run's nor leave its
  patched ones to later runs."""
  compiled.clear()


def records(workdir, split=None):
  """metrics.jsonl rows (optionally of one split)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [r for r in rows if split is None or r["split"] == split]


# Stages at which the "_test_counting" R was called (clear it before a run).
COUNTING_CALLS = []


def _counting(params, fresh, stage, key, context):
  jax.debug.callback(lambda t: COUNTING_CALLS.append(int(t)), stage)
  return jax.tree.map(lambda p, f: 0.5 * p + 0.5 * f, params, fresh)


# An explicit mask, so that apply_event's mask does not call R a second time (as a probe).
methods.register("_test_counting", mask=lambda params, stage, key, context: jax.tree.map(
    lambda p: np.ones(p.shape, bool), params))(_counting)


# summary.json fields that depend on timing or place, not on what was trained.
TIMING = ("wall_time_s", "steps_per_second", "times", "workdir")


def summary_without_timing(d):
  """A workdir's summary.json without its timing and place fields (TIMING)."""
  with open(os.path.join(d, "summary.json")) as f:
    return {k: v for k, v in json.load(f).items() if k not in TIMING}


def config_json_without_pack(d):
  """A workdir's config.json without ``run.pack`` (a packed point and the point alone differ
  only there)."""
  with open(os.path.join(d, "config.json")) as f:
    c = json.load(f)
  c["run"].pop("pack")
  return c


def count_builds(monkeypatch, optimizer_owner, optimizer_attr: str) -> dict:
  """From now on, counts the models built (``models.create``), the methods (``methods.get``) and
  the optimizers (``optimizer_owner.<optimizer_attr>``: the builder the caller wants counted);
  returns the live counts {'model', 'method', 'optimizer'}."""
  from reinit_jax import models
  calls = {"model": 0, "method": 0, "optimizer": 0}

  def counting(name, build_fn):
    def wrapped(*args, **kwargs):
      calls[name] += 1
      return build_fn(*args, **kwargs)
    return wrapped

  monkeypatch.setattr(models, "create", counting("model", models.create))
  monkeypatch.setattr(methods, "get", counting("method", methods.get))
  monkeypatch.setattr(optimizer_owner, optimizer_attr,
                      counting("optimizer", getattr(optimizer_owner, optimizer_attr)))
  return calls
