"""Plasticity on a continual task stream: seeds trained together, resets decided inside the scan.

The protocol of Kumar et al. 2023 scaled to Fashion-MNIST: an MLP 784-100-100-10 (ReLU; initialized
as Dohare et al. 2024 draw theirs, :data:`HIDDEN_INIT`), Adam (lr 1e-3), batch 16; task k permutes
the pixels of the first 10,000 training images, one pass a task (``permuted``), or redraws every
label of the first 1,000, ten passes a task (``random_labels``; :data:`PASSES`;
reinit_jax/data/streams.py). A task's *online accuracy* is the accuracy on each batch before its
update, averaged over the task. One jitted call trains one task for every seed, so a stream of any
length compiles once.

Methods (reinit_jax/plasticity.py; their settings in :data:`SETTINGS`): ``none`` (Adam alone),
``l2init`` (λ‖θ − θ₀‖²), ``snp`` (S&P at every step), ``cbp`` (continual backprop), ``redo``
(ReDo every F steps), ``fresh`` (a new initialization and optimizer at every task: plasticity's
upper reference). Unit resets zero the Adam moments of the reset weights.

Diagnostics at every task's end, on a fixed probe batch of the task's inputs: dormant fraction at
τ ∈ {0, 0.025, 0.1} of each hidden layer, effective rank and srank (δ = 0.01) of the last hidden
layer's features, the parameter norm, and the units reset during the task.

Speed (measurements in results/README.md, "(g) Plasticity on Fashion-MNIST task streams"). A task is
one scan over its steps whose body updates every seed at once (``over_runs`` with 'vmap': for this
MLP's batch-16 matmuls XLA:CPU's per-operation overhead, paid once per seed per step under 'map',
costs more than batching: 2.0 against 1.2 ms a step for 5 seeds). The batches are gathered, and
their pixels permuted, inside the step from an index array (no (examples, 784) copy per task). Unit
resets run under a ``lax.cond`` taken over all seeds, so a step where no seed resets a unit (all of
ReDo's steps but one in 500, most of continual backprop's) skips the re-initialization and the
optimizer-state edit, and continual backprop ranks its units only on steps where some layer owes a
replacement (:func:`cbp_select`). On the CPU backend every key's threefry hash is emitted unrolled
(``backends.draw_key``): the same bits as ``jax.random``'s, whose XLA:CPU lowering is a loop 3×
slower (S&P's noise was most of its step). ``run`` splits the seeds over the local devices
(XLA:CPU has one per core after ``backends.cpu_host.one_cpu_device_per_core``, as
results/plasticity_stream.py sets), each running its share in ``shard_map``; ``run_together``
trains several points side by side, one device each, which is faster still for this MLP (a
batch-16 step does not fill a core). With one device the records are bitwise those of the earlier
per-seed vmap of the whole task; side by side, too; with the seeds split over two, online
accuracy, resets and dormant fractions are too, norms and ranks agree to float32 rounding
(tests/test_continual.py).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from reinit_jax import backends, events, plasticity
from reinit_jax.data import streams
from reinit_jax.train.step import over_runs

LAYERS = (("dense1",), ("dense2",), ("head",))
# (examples, passes per task) of each stream: one pass over 10,000 images for permuted inputs (Kumar
# et al.'s protocol); random labels cannot be learned in one pass (online accuracy stays at chance
# whatever the plasticity), so that stream fits 1,000 images in 10 passes: the same 625 steps.
PASSES = {"permuted": (10000, 1), "random_labels": (1000, 10)}
METHODS = ("none", "l2init", "snp", "cbp", "redo", "fresh")
STREAMS = ("permuted", "random_labels")
TAUS = plasticity.DORMANT_TAUS
# Method settings: Kumar et al. 2023 (L2 Init λ), Dohare et al. 2024 (continual backprop: decay η,
# maturity m, replacement rate ρ; S&P's shrink and noise), Sokar et al. 2023 (ReDo: τ, every F).
SETTINGS = {"l2init": {"strength": 1e-2}, "snp": {"shrink": 1 - 1e-4, "noise": 1e-4},
            "cbp": {"decay": 0.99, "maturity": 100, "rate": 1e-4},
            "redo": {"tau": 0.1, "every": 500}}


# ----------------------------------------------------------------------------- model, study point


# Dohare et al. 2024's initialization of these streams' networks, which their continual
# backprop also draws its new units from: uniform, bound gain·√(3/fan_in), gain √2 for the ReLU
# layers and 1 for the output layer (He and LeCun uniform); biases zero. A uniform draw needs no
# erf⁻¹: a fresh network costs half a normal one's time on XLA:CPU
# (bench/README.md, "Event time ÷ step time").
HIDDEN_INIT = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")
HEAD_INIT = nn.initializers.lecun_uniform()


class MLP(nn.Module):
  """784-100-100-10 with ReLU; returns (logits, (h1, h2))."""

  classes: int = 10
  hidden: tuple = (100, 100)

  @nn.compact
  def __call__(self, x):
    h1 = nn.relu(nn.Dense(self.hidden[0], kernel_init=HIDDEN_INIT, name="dense1")(x))
    h2 = nn.relu(nn.Dense(self.hidden[1], kernel_init=HIDDEN_INIT, name="dense2")(h1))
    return nn.Dense(self.classes, kernel_init=HEAD_INIT, name="head")(h2), (h1, h2)


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


# ----------------------------------------------------------------------------- one task


def cbp_select(cbp: plasticity.ContinualBackprop, rate: float, maturity: int, over: Callable):
  """``over(lambda c: c.select(rate, maturity))(cbp)`` for a batch of seeds, skipping the ranking
  of the units when no layer of any seed owes a whole unit (⌊owed + ρ·n_mature⌋ = 0): then
  ``select`` resets nothing and only adds ρ·n_mature to what is owed, which is all the skip does."""

  def owe(c):
    owed = tuple(d + rate * (a > maturity).sum() for d, a in zip(c.owed, c.age))
    return c._replace(owed=owed), [jnp.zeros(a.shape, bool) for a in c.age]

  def due(c):
    return jnp.stack([jnp.floor(d + rate * (a > maturity).sum()) > 0
                      for d, a in zip(c.owed, c.age)]).any()

  return jax.lax.cond(over(due, (0,))(cbp).any(),
                      over(lambda c: c.select(rate=rate, maturity=maturity), (0,)),
                      over(owe, (0,)), cbp)


def _begin_fn(spec: Stream, model: MLP, tx) -> Callable:
  """``begin(carry, seed, k, x, y)`` for one seed: its start of task ``k`` (see below)."""
  examples, passes = PASSES[spec.stream]
  examples, passes = spec.examples or examples, spec.passes or passes
  batch = spec.batch

  def begin(carry, seed, k, x, y):
    """One seed's start of task ``k``: its carry, batches (index rows), pixel permutation or
    labels, and probe inputs."""
    x, y = x[:examples], y[:examples]
    n = (len(x) // batch) * batch
    params, opt_state, cbp, params_0, key, t = carry
    key, order_key, init_key = jax.random.split(jax.random.fold_in(key, k), 3)
    if spec.method == "fresh":
      params = model.init(init_key, x[:1])["params"]
      opt_state = tx.init(params)
    order = jnp.concatenate([jax.random.permutation(jax.random.fold_in(order_key, e), len(x))[:n]
                             for e in range(passes)])
    probe = x[:512]
    if spec.stream == "permuted":
      perm = streams.permutation(seed, k, x.shape[1])
      labels, probe = y, jnp.take(probe, perm, axis=1)
    else:
      perm = jnp.arange(x.shape[1], dtype=jnp.int32)  # unused
      labels = streams.random_labels(len(x), seed, k, model.classes)
    # The fresh weights a unit reset in this task takes: one draw per task (a unit reset twice in
    # one task gets the same draw); a draw per step would cost more than the step.
    fresh = model.init(init_key, x[:1])["params"] if spec.method in ("cbp", "redo") else None
    inner = (params, opt_state, cbp, params_0, key, t, jnp.zeros((), jnp.int32), fresh)
    return inner, order.reshape(-1, batch), (perm, labels), probe

  return begin


def _update_fn(spec: Stream, model: MLP, tx) -> Callable:
  """``update(inner, idx, data, x)`` for one seed: one optimizer step and the method's decision."""
  settings = SETTINGS.get(spec.method, {})

  def loss_fn(params, params_0, xb, yb):
    logits, hidden = model.apply({"params": params}, xb)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
    if spec.method == "l2init":
      loss += plasticity.l2_init_penalty(params, params_0, settings["strength"])
    return loss, (logits, hidden)

  def update(inner, idx, data, x):
    """One seed's step on the examples ``idx``: (inner carry, unit masks or None, correct)."""
    params, opt_state, cbp, params_0, key, t, resets, fresh = inner
    perm, labels = data
    xb, yb = x[idx], labels[idx]
    if spec.stream == "permuted":
      xb = jnp.take(xb, perm, axis=1)
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
    elif spec.method == "redo":
      due = (t % settings["every"]) == settings["every"] - 1
      masks = [(plasticity.unit_scores(h) <= settings["tau"]) & due for h in hidden]
    return (params, opt_state, cbp, params_0, key, t + 1, resets, fresh), masks, correct

  return update


def _end_fn(model: MLP) -> Callable:
  """``end(inner, probe, correct)`` for one seed: the task's record and the probe's features."""

  def end(inner, probe, correct):
    params, opt_state, cbp, params_0, key, t, resets, _ = inner
    _, hidden = model.apply({"params": params}, probe)
    record = {"online_accuracy": correct.mean(), "units_reset": resets,
              "param_norm": jnp.sqrt(sum(jnp.sum(p * p) for p in jax.tree.leaves(params)))}
    for i, h in enumerate(hidden, start=1):
      for tau in TAUS:
        record[f"dormant_{tau:g}_layer{i}"] = plasticity.dormant_fraction(h, tau)
    return (params, opt_state, cbp, params_0, key, t), record, hidden[-1]

  return end


def _task_fn(spec: Stream, model: MLP, tx, seed_axis: str = "vmap") -> Callable:
  """``task(carry, seeds, task_index, x, y) -> (carry, record, features)`` for a batch of seeds
  (axis 0 of ``carry``, ``seeds``, every record and ``features``): one scan over the task's steps,
  every seed in each. ``features``: the last hidden layer on the probe batch, whose ranks
  :func:`_ranks` computes apart (see :func:`run`)."""
  settings = SETTINGS.get(spec.method, {})
  examples = spec.examples or PASSES[spec.stream][0]
  over = functools.partial(over_runs, seed_axis=seed_axis)
  begin, update, end = _begin_fn(spec, model, tx), _update_fn(spec, model, tx), _end_fn(model)

  def unit_reset(inner, masks):
    params, opt_state, cbp, params_0, key, t, resets, fresh = inner
    new = plasticity.reset_units(params, fresh, LAYERS, masks)
    touched = plasticity.unit_param_masks(params, LAYERS, masks)
    opt_state = events.optimizer_state("mask", tx, opt_state, new, touched)
    return (new, opt_state, cbp, params_0, key, t, resets, fresh)

  def step(state, idx):
    """One step of every seed on its examples ``idx`` (seeds, batch); a unit reset only where
    some seed resets a unit."""
    inner, data, x = state
    inner, masks, correct = over(update, (0, 0, 0, None))(inner, idx, data, x)
    if spec.method == "cbp":
      cbp, masks = cbp_select(inner[2], settings["rate"], settings["maturity"], over)
      inner = inner[:2] + (cbp,) + inner[3:]
    if masks is not None:
      inner = jax.lax.cond(jnp.stack([m.any() for m in masks]).any(),
                           over(unit_reset, (0, 0)), lambda c, m: c, inner, masks)
      count = sum(m.reshape(m.shape[0], -1).sum(1) for m in masks)
      inner = inner[:6] + (inner[6] + count,) + inner[7:]
    return (inner, data, x), correct

  def task(carry, seeds, k, x, y):
    inner, order, data, probe = over(begin, (0, 0, None, None, None))(carry, seeds, k, x, y)
    x = x[:examples]
    (inner, *_), correct = jax.lax.scan(step, (inner, data, x), jnp.moveaxis(order, 1, 0))
    return over(end, (0, 0, 0))(inner, probe, correct.T)

  return task


def _ranks(features):
  """Effective rank and srank (δ = 0.01) of one seed's features (probe examples, units)."""
  return {"effective_rank": plasticity.effective_rank(features),
          "srank": plasticity.srank(features, 0.01)}


def load_fashion_mnist(examples: int = 10000) -> tuple[np.ndarray, np.ndarray]:
  """The first ``examples`` Fashion-MNIST training images, (N, 784) float32 in [0, 1], and labels."""
  from reinit_jax import data
  ds = data.build({"dataset": "fashion_mnist", "seed": 0, "validation_fraction": 0.0,
                   "train_subset": examples})
  split = ds.train(1)
  return np.asarray(split.x, np.float32).reshape(len(split.x), -1) / 255.0, np.asarray(split.y)


@dataclasses.dataclass
class _Placed:
  """One study point on its devices: its compiled task call, its seeds' carry, its inputs, and the
  records of the tasks trained so far."""

  spec: Stream
  call: Callable
  carry: tuple
  seeds: jax.Array
  x: jax.Array
  y: jax.Array
  records: list


def _place(spec: Stream, x: np.ndarray, y: np.ndarray, devices: list, seed_axis: str) -> _Placed:
  """``spec``'s seeds on ``devices``: over one, vmapped (or mapped); over several, padded to a
  multiple of their number by repeating the last seed (its copies are computed and dropped) and
  each device's share run in ``shard_map``."""
  model, tx = MLP(classes=int(y.max()) + 1), optax.adam(spec.learning_rate)
  seeds = np.asarray(tuple(spec.seeds) + (spec.seeds[-1],) * (-len(spec.seeds) % len(devices)),
                     np.int32)
  task = _task_fn(spec, model, tx, seed_axis)
  if len(devices) > 1:
    mesh = Mesh(np.array(devices), ("runs",))
    task = jax.shard_map(task, mesh=mesh, in_specs=(P("runs"), P("runs"), P(), P(), P()),
                         out_specs=P("runs"), check_vma=False)
    seeded, shared = NamedSharding(mesh, P("runs")), NamedSharding(mesh, P())
  else:
    seeded = shared = jax.sharding.SingleDeviceSharding(devices[0])

  def start(seed):
    key = backends.draw_key(jax.random.key(seed))
    params = model.init(key, jnp.zeros((1, x.shape[1]), jnp.float32))["params"]
    cbp = plasticity.ContinualBackprop.init(params, LAYERS)
    params_0 = jax.tree.map(jnp.copy, params)  # θ₀ for L2 Init; its own buffers (donation)
    return (params, tx.init(params), cbp, params_0, key, jnp.zeros((), jnp.int32))

  seeds = jax.device_put(seeds, seeded)
  return _Placed(spec=spec, call=jax.jit(task, donate_argnums=0),
                 carry=jax.jit(jax.vmap(start), out_shardings=seeded)(seeds), seeds=seeds,
                 x=jax.device_put(np.asarray(x, np.float32), shared),
                 y=jax.device_put(np.asarray(y, np.int32), shared), records=[])


def _train(points: list, progress: Callable | None) -> list:
  """Trains every point's tasks, task k of each point before task k + 1 of any: the calls are
  dispatched without waiting, so points on different devices train at the same time. Returns each
  point's ``{"records", "seconds", "spec", "side_by_side"}`` (the seconds of the whole loop)."""
  # Per point, every task's probe features (seeds × 512 × units floats: 200 MB for 200 tasks of
  # the study's 5 seeds), ranked at the end.
  features = [[] for _ in points]
  t0 = time.time()
  for k in range(max(point.spec.tasks for point in points)):
    for point, kept in zip(points, features):
      if k < point.spec.tasks:
        point.carry, record, probe_features = point.call(point.carry, point.seeds, np.int32(k),
                                                         point.x, point.y)
        point.records.append(record)
        kept.append(probe_features)
        if progress is not None and (k + 1) % 20 == 0:
          n_seeds = len(point.spec.seeds)
          progress(point.spec, k + 1, float(jnp.mean(record["online_accuracy"][:n_seeds])))
  # The ranks' SVD (a LAPACK call) runs on one device, in its own call: two XLA:CPU devices calling
  # LAPACK at once from one program were seen to hang. After the stream, not per task: a call on
  # one device that waits on another's task would hold both devices in step.
  ranks, rank_device = jax.jit(jax.vmap(_ranks)), jax.local_devices()[0]
  for point, kept in zip(points, features):
    for record, probe_features in zip(point.records, kept):
      record.update(ranks(jax.device_put(probe_features, rank_device)))
  jax.block_until_ready([point.records for point in points])
  seconds = time.time() - t0
  return [{"records": {name: np.stack([np.asarray(r[name])[:len(point.spec.seeds)]
                                       for r in point.records]) for name in point.records[0]},
           "seconds": seconds, "spec": dataclasses.asdict(point.spec), "side_by_side": len(points)}
          for point in points]


def run(spec: Stream, x: np.ndarray, y: np.ndarray, progress: Callable | None = None,
        seed_axis: str = "vmap", devices: int | None = None) -> dict:
  """Trains ``spec`` on images ``x`` (N, D) float32 and labels ``y`` (N,) int32; returns
  ``{"records": {name: (tasks, seeds) array}, "seconds": float, "spec": dict, "side_by_side": 1}``.

  ``seed_axis``: how a device goes over its seeds (``train.step.over_runs``: 'vmap', 'map' or
  'auto'). ``devices``: how many local devices share the seeds (None: all, at most one per seed;
  see :func:`_place`). ``progress(spec, tasks_done, online_accuracy)`` every 20 tasks. One jitted
  call per task, compiled once for the whole stream.
  """
  local = jax.local_devices()
  share = min(len(local) if devices is None else devices, len(spec.seeds), len(local))
  return _train([_place(spec, x, y, local[:share], seed_axis)], progress)[0]


def run_together(specs: list, x: np.ndarray, y: np.ndarray, progress: Callable | None = None,
                 seed_axis: str = "vmap") -> list:
  """Trains several study points (``run``'s results, in order). With at least as many local devices
  as points, side by side: point i's seeds on device i, the points' tasks dispatched in turn so the
  devices train at once — on XLA:CPU with one device per core, two streams side by side take 0.67 s
  a task against 1.1 s for the two one after the other, each split over both cores (this MLP's
  batch-16 steps do not fill a core, and splitting a point's seeds pads 5 to 6). With fewer
  devices, one point after the other, each as ``run``. Every point's records are those it gets
  alone on one device (tests/test_continual.py)."""
  local = jax.local_devices()
  if len(specs) < 2 or len(specs) > len(local):
    return [run(spec, x, y, progress, seed_axis) for spec in specs]
  return _train([_place(spec, x, y, [device], seed_axis) for spec, device in zip(specs, local)],
                progress)
