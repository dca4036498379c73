"""Input-pipeline throughput beside a train step's consumption (issue 3; goal: pipeline ≥ 3× step).

Measures, for the same batch size:
  * ``step``: images/s a jitted SGD step of a small CNN (2×conv32 + dense, written inline) consumes
    on augmented 28×28×1 batches;
  * ``inmem``: the in-memory fast path on Fashion-MNIST (Debian-backed TFDS; random uint8 pixels if
    it is not installed): epoch_indices → host gather → device_put → jitted ``Data.augment``;
  * ``stream``: the tf.data streaming path (decode + augment + prefetch) on the same data;
  * CIFAR-sized (random uint8 32×32×3): on-device ``cifar`` augmentation vs the tf.data equivalent.

Usage: ``python bench/bench_input.py --quick`` (< 2 min on 2 CPU cores; ``--smoke``: batch 16, one
repetition of each, for tests/test_bench.py); the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reinit_jax import data  # noqa: E402
from reinit_jax.data import augment as aug  # noqa: E402


def timed(fn, reps):
  fn()  # warm-up (compilation, tf.data start)
  t = time.perf_counter()
  for _ in range(reps):
    fn()
  return (time.perf_counter() - t) / reps


def cnn_step(batch, shape, classes=10):
  """A jitted SGD step of conv(32)-conv(32, stride 2)-dense; returns (step, params)."""
  k = jax.random.split(jax.random.key(0), 3)
  c = shape[-1]
  params = {"c1": jax.random.normal(k[0], (3, 3, c, 32)) * 0.1,
            "c2": jax.random.normal(k[1], (3, 3, 32, 32)) * 0.05,
            "d": jax.random.normal(k[2], ((shape[0] // 2) * (shape[1] // 2) * 32, classes)) * 0.01}

  def loss(p, x, y):
    dn = ("NHWC", "HWIO", "NHWC")
    h = jax.nn.relu(jax.lax.conv_general_dilated(x, p["c1"], (1, 1), "SAME", dimension_numbers=dn))
    h = jax.nn.relu(jax.lax.conv_general_dilated(h, p["c2"], (2, 2), "SAME", dimension_numbers=dn))
    logits = h.reshape(x.shape[0], -1) @ p["d"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

  @jax.jit
  def step(p, x, y):
    g = jax.grad(loss)(p, x, y)
    return jax.tree.map(lambda a, b: a - 0.01 * b, p, g)
  return step, params


def fashion(quick):
  try:
    d = data.build({"dataset": "fashion_mnist", "augmentation": "cifar", "seed": 0})
    return d, "fashion_mnist (Debian TFDS)"
  except ValueError as err:
    print(f"fashion_mnist unavailable ({err}); using random pixels", file=sys.stderr)
    return None, "random 28x28x1"


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--quick", action="store_true")
  # Not common.add_size_flags: importing common tunes this process's malloc.
  ap.add_argument("--smoke", action="store_true", help="the same code path at a tiny size "
                  "(batch 16, one repetition): checks that it runs; its figures mean nothing")
  ap.add_argument("--batch", type=int, default=None, help="default 128 (--smoke: 16)")
  args = ap.parse_args()
  reps = 1 if args.smoke else 5 if args.quick else 30
  b = args.batch or (16 if args.smoke else 128)
  out = {"batch": b, "device": jax.devices()[0].platform}

  d, source = fashion(args.quick)
  x_all = d.train(1).x if d else np.random.default_rng(0).integers(0, 256, (60000, 28, 28, 1), np.uint8)
  y_all = d.train(1).y if d else np.zeros(len(x_all), np.int32)
  augment = jax.jit(aug.make_augment("cifar", None, True), static_argnames="train")
  order = data.epoch_indices(0, 0, len(y_all), b)
  pos = [0]

  def inmem():
    idx = order[pos[0] % len(order)]
    pos[0] += 1
    x = augment(jax.random.key(pos[0]), jax.device_put(x_all[idx]), train=True)
    jax.block_until_ready((x, jax.device_put(y_all[idx])))
  out["inmem_images_per_s"] = b / timed(inmem, reps * 4)

  step, params = cnn_step(b, (28, 28, 1))
  xb = augment(jax.random.key(0), x_all[:b], train=True)
  yb = jnp.asarray(y_all[:b])
  state = [params]

  def train_step():
    state[0] = step(state[0], xb, yb)
    jax.block_until_ready(state[0])
  out["step_images_per_s"] = b / timed(train_step, reps)
  out["inmem_over_step"] = out["inmem_images_per_s"] / out["step_images_per_s"]

  if d is not None:
    sd = data.build({"dataset": "fashion_mnist", "augmentation": "cifar", "seed": 0,
                     "in_memory": False})
    n_batches = reps * 8
    it = sd.train(1).batches(seed=0, epoch=0, batch_size=b)
    next(it)
    t = time.perf_counter()
    for _ in range(n_batches):
      next(it)
    out["stream_images_per_s"] = b * n_batches / (time.perf_counter() - t)
    out["stream_over_step"] = out["stream_images_per_s"] / out["step_images_per_s"]

  # CIFAR-sized: on-device augmentation vs tf.data with the same semantics.
  import tensorflow as tf
  cif = np.random.default_rng(1).integers(0, 256, (4096, 32, 32, 3), np.uint8)
  cif_dev = jax.device_put(cif)
  gather_aug = jax.jit(lambda key, idx: augment(key, cif_dev[idx], train=True))
  cidx = data.epoch_indices(0, 0, len(cif), b)

  def dev():
    pos[0] += 1
    jax.block_until_ready(gather_aug(jax.random.key(pos[0]), cidx[pos[0] % len(cidx)]))
  out["cifar_device_aug_images_per_s"] = b / timed(dev, reps * 4)

  def tf_map(i, img):
    flip, off = aug.tf_draw(tf.stack([tf.constant(0, tf.int64), i]), "cifar")
    return aug.tf_apply(img, flip, off, preset="cifar", train=True)
  ds = (tf.data.Dataset.from_tensor_slices(cif).enumerate().repeat()
        .map(tf_map, num_parallel_calls=tf.data.AUTOTUNE).batch(b).prefetch(tf.data.AUTOTUNE))
  it = ds.as_numpy_iterator()
  next(it)
  n_batches = reps * 8
  t = time.perf_counter()
  for _ in range(n_batches):
    next(it)
  out["cifar_tfdata_aug_images_per_s"] = b * n_batches / (time.perf_counter() - t)
  out["data"] = source
  out = {k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}
  for k, v in out.items():
    print(f"{k:32s} {v}", file=sys.stderr)
  print(json.dumps(out))


if __name__ == "__main__":
  main()
