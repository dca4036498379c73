"""A tiny synthetic-task config shared by the engine tests (MLP, 64 examples, a few steps)."""

import json
import os

from reinit_jax import train


def tiny_config(**overrides):
  """Synthetic task, 64 training / 256 test examples, full batch, 6 steps in 3 stages."""
  c = train.base_config()
  c.name = "tiny"
  c.synthetic_train = 64
  c.synthetic_test = 256
  c.epochs = 6
  c.stages = 3
  c.eval_batch_size = 256
  c.norm_batch_size = 32
  c.progress = "off"
  for k, v in overrides.items():
    c[k] = v
  return c


def records(workdir, split=None):
  """metrics.jsonl rows (optionally of one split)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [r for r in rows if split is None or r["split"] == split]
