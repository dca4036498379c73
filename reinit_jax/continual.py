"""Plasticity on a continual task stream: seeds trained together, resets decided inside the scan.

The protocol of Kumar et al. 2023 scaled to Fashion-MNIST: an MLP 784-100-100-10 (ReLU), Adam
(lr 1e-3), batch 16; task k permutes the pixels of the first 10,000 training images, one pass a
task (``permuted``), or redraws every label of the first 1,000, ten passes a task
(``random_labels``; :data:`PASSES`; reinit_jax/data/streams.py). A task's *online accuracy* is the accuracy on each batch before its
update, averaged over the task. One jitted call trains one task for every seed (vmapped), so a
stream of any length compiles once.

Methods (reinit_jax/plasticity.py; their settings in :data:`SETTINGS`): ``none`` (Adam alone),
``l2init`` (λ‖θ − θ₀‖²), ``snp`` (S&P at every step), ``cbp`` (continual backprop), ``redo``
(ReDo every F steps), ``fresh`` (a new initialization and optimizer at every task: plasticity's
upper reference). Unit resets zero the Adam moments of the reset weights.

Diagnostics at every task's end, on a fixed probe batch of the task's inputs: dormant fraction at
τ ∈ {0, 0.025, 0.1} of each hidden layer, effective rank and srank (δ = 0.01) of the last hidden
layer's features, the parameter norm, and the units reset during the task.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from reinit_jax import events, plasticity
from reinit_jax.data import streams

LAYERS = (("dense1",), ("dense2",), ("head",))
# (examples, passes per task) of each stream: one pass over 10,000 images for permuted inputs (Kumar
# et al.'s protocol); random labels cannot be learned in one pass (online accuracy stays at chance
# whatever the plasticity), so that stream fits 1,000 images in 10 passes: the same 625 steps.
PASSES = {"permuted": (10000, 1), "random_labels": (1000, 10)}
METHODS = ("none", "l2init", "snp", "cbp", "redo", "fresh")
STREAMS = ("permuted", "random_labels")
TAUS = (0.0, 0.025, 0.1)
# Method settings: Kumar et al. 2023 (L2 Init λ), Dohare et al. 2024 (continual backprop: decay η,
# maturity m, replacement rate ρ; S&P's shrink and noise), Sokar et al. 2023 (ReDo: τ, every F).
SETTINGS = {"l2init": {"strength": 1e-2}, "snp": {"shrink": 1 - 1e-4, "noise": 1e-4},
            "cbp": {"decay": 0.99, "maturity": 100, "rate": 1e-4},
            "redo": {"tau": 0.1, "every": 500}}


class MLP(nn.Module):
  """784-100-100-10 with ReLU; returns (logits, (h1, h2))."""

  classes: int = 10
  hidden: tuple = (100, 100)

  @nn.compact
  def __call__(self, x):
    h1 = nn.relu(nn.Dense(self.hidden[0], name="dense1")(x))
    h2 = nn.relu(nn.Dense(self.hidden[1], name="dense2")(h1))
    return nn.Dense(self.classes, name="head")(h2), (h1, h2)


@dataclasses.dataclass(frozen=True)
class Stream:
  """One study point: a stream, a method, its seeds and the protocol's sizes."""

  stream: str = "permuted"
  method: str = "none"
  seeds: tuple = (0, 1, 2, 3, 4)
  tasks: int = 200
  batch: int = 16
  learning_rate: float = 1e-3
  examples: int | None = None  # None: 10,000 permuted; 1,000 random-label (see PASSES)
  passes: int | None = None  # passes over the examples per task; None: PASSES[stream]

  def __post_init__(self):
    if self.stream not in STREAMS:
      raise ValueError(f"stream={self.stream!r} is invalid; allowed: {', '.join(STREAMS)}")
    if self.method not in METHODS:
      raise ValueError(f"method={self.method!r} is invalid; allowed: {', '.join(METHODS)}")


def _step_fn(spec: Stream, model: MLP, tx) -> Callable:
  """``step(carry, (x, y)) -> (carry, correct)``: one update of one seed and the method's reset."""
  settings = SETTINGS.get(spec.method, {})

  def loss_fn(params, params_0, xb, yb):
    logits, hidden = model.apply({"params": params}, xb)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
    if spec.method == "l2init":
      loss += plasticity.l2_init_penalty(params, params_0, settings["strength"])
    return loss, (logits, hidden)

  def unit_reset(params, opt_state, masks, fresh):
    new = plasticity.reset_units(params, fresh, LAYERS, masks)
    touched = plasticity.unit_param_masks(params, LAYERS, masks)
    return new, events.optimizer_state("mask", tx, opt_state, new, touched)

  def step(carry, inputs):
    params, opt_state, cbp, params_0, key, t, resets, fresh = carry
    xb, yb = inputs
    (_, (logits, hidden)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, params_0, xb, yb)
    correct = (logits.argmax(-1) == yb).mean()  # before the update: online accuracy
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    key, sub = jax.random.split(key)
    masks = None
    if spec.method == "snp":
      params = plasticity.shrink_perturb_step(params, sub, settings["shrink"], settings["noise"])
    elif spec.method == "cbp":
      cbp = cbp.update(params, hidden, LAYERS, decay=settings["decay"])
      cbp, masks = cbp.select(rate=settings["rate"], maturity=settings["maturity"])
    elif spec.method == "redo":
      due = (t % settings["every"]) == settings["every"] - 1
      masks = [(plasticity.unit_scores(h) <= settings["tau"]) & due for h in hidden]
    if masks is not None:
      params, opt_state = unit_reset(params, opt_state, masks, fresh)
      resets = resets + sum(m.sum() for m in masks)
    return (params, opt_state, cbp, params_0, key, t + 1, resets, fresh), correct

  return step


def _diagnostics(model: MLP, params, probe_x, correct, resets) -> dict:
  """A task's record: online accuracy, units reset, and the features' diagnostics on the probe."""
  _, hidden = model.apply({"params": params}, probe_x)
  record = {"online_accuracy": correct.mean(), "units_reset": resets,
            "effective_rank": plasticity.effective_rank(hidden[-1]),
            "srank": plasticity.srank(hidden[-1], 0.01),
            "param_norm": jnp.sqrt(sum(jnp.sum(p * p) for p in jax.tree.leaves(params)))}
  for i, h in enumerate(hidden, start=1):
    for tau in TAUS:
      record[f"dormant_{tau:g}_layer{i}"] = plasticity.dormant_fraction(h, tau)
  return record


def _task_fn(spec: Stream, model: MLP, tx, x: jax.Array, y: jax.Array) -> Callable:
  """``task(carry, seed, task_index) -> (carry, record)`` for one seed (vmapped by the caller)."""
  examples, passes = PASSES[spec.stream]
  examples, passes = spec.examples or examples, spec.passes or passes
  x, y = x[:examples], y[:examples]
  n, batch = (len(x) // spec.batch) * spec.batch, spec.batch
  probe = x[:512]
  step = _step_fn(spec, model, tx)

  def task(carry, seed, k):
    params, opt_state, cbp, params_0, key, t = carry
    key, order_key, init_key = jax.random.split(jax.random.fold_in(key, k), 3)
    if spec.method == "fresh":
      params = model.init(init_key, x[:1])["params"]
      opt_state = tx.init(params)
    order = jnp.concatenate([jax.random.permutation(jax.random.fold_in(order_key, e), len(x))[:n]
                             for e in range(passes)])
    if spec.stream == "permuted":
      xs, ys = streams.permuted_inputs(x[order], seed, k), y[order]
      probe_x = streams.permuted_inputs(probe, seed, k)
    else:
      xs, ys = x[order], streams.random_labels(len(x), seed, k, model.classes)[order]
      probe_x = probe
    xs, ys = xs.reshape(-1, batch, x.shape[1]), ys.reshape(-1, batch)
    # The fresh weights a unit reset in this task takes: one draw per task (a unit reset twice in
    # one task gets the same draw); a draw per step would cost more than the step.
    fresh = model.init(init_key, x[:1])["params"] if spec.method in ("cbp", "redo") else None
    inner = (params, opt_state, cbp, params_0, key, t, jnp.zeros((), jnp.int32), fresh)
    inner, correct = jax.lax.scan(step, inner, (xs, ys))
    params, opt_state, cbp, params_0, key, t, resets, _ = inner
    record = _diagnostics(model, params, probe_x, correct, resets)
    return (params, opt_state, cbp, params_0, key, t), record

  return task


def load_fashion_mnist(examples: int = 10000) -> tuple[np.ndarray, np.ndarray]:
  """The first ``examples`` Fashion-MNIST training images, (N, 784) float32 in [0, 1], and labels."""
  from reinit_jax import data
  ds = data.build({"dataset": "fashion_mnist", "seed": 0, "validation_fraction": 0.0,
                   "train_subset": examples})
  split = ds.train(1)
  return np.asarray(split.x, np.float32).reshape(len(split.x), -1) / 255.0, np.asarray(split.y)


def run(spec: Stream, x: np.ndarray, y: np.ndarray, progress: Callable | None = None) -> dict:
  """Trains ``spec`` on images ``x`` (N, D) float32 and labels ``y`` (N,) int32; returns
  ``{"records": {name: (tasks, seeds) array}, "seconds": float, "spec": dict}``."""
  model, tx = MLP(classes=int(y.max()) + 1), optax.adam(spec.learning_rate)
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
  seeds = jnp.asarray(spec.seeds, jnp.int32)

  def start(seed):
    key = jax.random.key(seed)
    params = model.init(key, x[:1])["params"]
    cbp = plasticity.ContinualBackprop.init(params, LAYERS)
    params_0 = jax.tree.map(jnp.copy, params)  # θ₀ for L2 Init; its own buffers (donation)
    return (params, tx.init(params), cbp, params_0, key, jnp.zeros((), jnp.int32))

  task = _task_fn(spec, model, tx, x, y)
  call = jax.jit(jax.vmap(task, in_axes=(0, 0, None)), donate_argnums=0)
  carry = jax.vmap(start)(seeds)
  records, t0 = [], time.time()
  for k in range(spec.tasks):
    carry, record = call(carry, seeds, jnp.int32(k))
    records.append(record)
    if progress is not None and (k + 1) % 20 == 0:
      progress(k + 1, float(jnp.mean(record["online_accuracy"])))
  stacked = {name: np.stack([np.asarray(r[name]) for r in records]) for name in records[0]}
  return {"records": stacked, "seconds": time.time() - t0, "spec": dataclasses.asdict(spec)}
