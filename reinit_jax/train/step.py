"""Every jitted function of a run: train steps (scanned), evaluation, teacher cache, the event
([Z] §3, §3.1), the initial state and the method's preparation of it, parameter norms, feature
diagnostics.

Every function here is written for one seed and vmapped over the seed axis, then jitted once. The
training data lives on the device; a call receives an index batch (S, n_steps, B) and gathers and
augments inside the jit, so there is no host round trip per step. Counters (step, stage,
step-in-stage) are traced state, so nothing retraces when a stage starts.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec

from reinit_jax import backends, events, methods, plasticity
from reinit_jax.train import loss as losses, multihost
from reinit_jax.train.state import (EVENT_STREAM, STEP_EVENT_STREAM, STEP_STREAM, TrainState,
                                    init_state, prepare_state, stage_draw, step_draw, stream_key)


def jit_seeds(fn, runs_mesh, seeded, donate_argnums=(), compiler_options=None):
  """``jax.jit(fn)``; with a runs mesh (``feed.Placement.runs_mesh``), ``fn`` runs in ``shard_map``
  over its 'runs' axis: each device applies ``fn`` to its own seeds.

  ``fn`` is written over the seed axis (vmap or ``lax.map``), so on its share it computes what one
  device computes for those seeds; every output has the seeds first. ``seeded[i]``: argument i
  has the seeds on axis 0 (else it is shared, e.g. the data set). ``compiler_options``: XLA
  options of this function's compilation (build.py: cheaper compiles for what runs rarely).
  """
  if runs_mesh is not None:
    specs = tuple(PartitionSpec("runs") if s else PartitionSpec() for s in seeded)
    fn = jax.shard_map(fn, mesh=runs_mesh, in_specs=specs, out_specs=PartitionSpec("runs"),
                       check_vma=False)
  return jax.jit(fn, donate_argnums=donate_argnums, compiler_options=compiler_options)


RUN_AXIS = "vmapped_runs"  # the name of the run axis inside over_runs(..., 'vmap')


def _batched_runs() -> bool:
  """Whether the code is traced inside the vmapped run axis (where a cond serves every run)."""
  try:
    jax.lax.axis_index(RUN_AXIS)
    return True
  except NameError:
    return False


def _any_run(flag):
  """Whether ``flag`` holds for any run of the vmapped run axis (unbatched, so ``lax.cond`` on it
  stays a branch); ``flag`` itself where runs go one by one (``lax.map``) or alone."""
  if not _batched_runs():
    return flag
  return jax.lax.pmax(flag.astype(jnp.int32), RUN_AXIS) > 0


def over_runs(fn, in_axes, seed_axis: str = "auto"):
  """``fn`` (written for one run) over the run axis of the arguments whose ``in_axes`` is 0.

  ``seed_axis``: 'vmap' batches the runs; 'map' runs them one after another (``lax.map``), which
  keeps every matmul unbatched: XLA:CPU runs matmuls batched over seeds far slower than separate
  ones (bench/README.md, "Seeds in parallel": 3.6× for 8 scnn_tiny seeds), and a run's bits then do
  not depend on how many runs share the call (a packed grid, ``train/pack.py``). 'auto': the
  backend's choice (``backends.choices``): 'map' on the CPU backend, 'vmap' on accelerators.
  ``in_axes``: 0 or None per positional argument.
  """
  if seed_axis == "auto":
    seed_axis = backends.choices().seed_axis
  if seed_axis == "vmap":  # named, so a step-level event can ask whether any run fires
    return jax.vmap(fn, in_axes=in_axes, axis_name=RUN_AXIS)
  if seed_axis != "map":
    raise ValueError(f"seed_axis must be 'vmap' or 'map', got {seed_axis!r}")
  mapped = [i for i, a in enumerate(in_axes) if a == 0]

  def over(*args):
    def one(xs):
      full = list(args)
      for i, x in zip(mapped, xs):
        full[i] = x
      return fn(*full)
    return jax.lax.map(one, tuple(args[i] for i in mapped))

  return over


def _apply_train(model, variables, x, key, has_batch_stats):
  """Training-mode forward: (logits, updated mutable collections)."""
  rngs = {"dropout": key}
  if has_batch_stats:
    logits, upd = model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
    return logits, dict(upd)
  return model.apply(variables, x, train=True, rngs=rngs), {}


def _teacher_probs(model, teacher, x):
  return jax.lax.stop_gradient(jax.nn.softmax(model.apply(teacher, x, train=False).astype(jnp.float32)))


def make_step(model, tx, lr_fn: Callable, augment: Callable, *, distill: str, beta: float,
              values: Callable | None = None, l2_init: float = 0.0,
              after_step: Callable | None = None):
  """One gradient step of one seed: ``step(state, x_raw (B, ...), y (B,), tprobs | None)``.

  ``distill``: 'off' | 'cached' (``tprobs`` gathered from the stage's cache) | 'live' (teacher
  forward on the same augmented batch, eval mode). β is applied from stage 2 on ([Z] §3.1).
  Returns (state, (loss, accuracy, lr)), loss = CE + β·KL (weight decay acts in the optimizer).
  ``values(state.hyper) -> (tx, lr_fn, beta)``: the run's own optimizer, schedule and β when the
  state carries per-run values (a packed grid, ``train/pack.py``). ``l2_init``: λ of L2 Init's
  λ‖θ − θ₀‖² (Kumar et al. 2023; θ₀ = ``state.anchor``), in the loss. ``after_step(state, accuracy,
  x) -> state``: a step-level event after the update (:func:`make_step_event`).
  """
  const = (tx, lr_fn, beta)

  def step(state: TrainState, x_raw, y, tprobs):
    tx, lr_fn, beta = const if state.hyper is None else values(state.hyper)
    key = stream_key(state.key, STEP_STREAM, state.step)
    k_aug, k_drop = jax.random.split(key)
    x = augment(k_aug, x_raw, True)
    with_bs = "batch_stats" in state.variables
    if distill == "live":
      tprobs = _teacher_probs(model, state.teacher, x)
    beta_t = jnp.where(state.stage > 1, jnp.float32(beta), jnp.float32(0.0))

    def loss_fn(params):
      logits, upd = _apply_train(model, {**state.variables, "params": params}, x, k_drop, with_bs)
      loss, (ce, acc) = losses.objective(logits, y, None if distill == "off" else tprobs, beta_t)
      if l2_init:
        loss = loss + plasticity.l2_init_penalty(params, state.anchor, l2_init)
      return loss, (upd, acc)

    params = state.variables["params"]
    (loss, (upd, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, state.opt_state, params)
    lr = lr_fn(state.step_in_stage, state.step, state.stage)
    updates = jax.tree.map(lambda u: (lr * u).astype(u.dtype), updates)
    variables = {**state.variables, **upd, "params": optax.apply_updates(params, updates)}
    new = state.replace(variables=variables, opt_state=opt_state, step=state.step + 1,
                        step_in_stage=state.step_in_stage + 1)
    if after_step is not None:
      new = after_step(new, acc, x)
    return new, (loss, acc, lr)

  return step


def _summarize(state, loss, acc, lr):
  # The step counter rides with the metrics (a negative one records a non-finite step,
  # faults.guard_step): reading it needs no copy of the donated state, which would wait for the
  # call and keep the host from preparing the next one meanwhile.
  out = {"loss": jnp.mean(loss), "accuracy": jnp.mean(acc), "learning_rate": lr[-1],
         "step": state.step}
  if state.step_events is not None:  # step-level events so far (make_step_event)
    out["step_events"] = state.step_events["events"]
    out["units_reset"] = state.step_events["units_reset"]
  return out


def make_train_call(step, *, cached: bool, capacity: int | None = None,
                    max_steps: int | None = None, seed_axis: str = "auto", per_run: bool = False,
                    runs_mesh=None):
  """Jitted, vmapped, scanned training on device-resident data.

  ``call(state (S,...), x_all (N, ...), y_all (N,), tprobs (S, N', C) | None, idx (S, n, B))``
  runs n steps per seed, gathering batch ``idx[s, i]``; returns (state, metrics (S,)) with the
  mean loss/accuracy of the call and the last learning rate. ``state`` is donated.

  With ``capacity``/``max_steps`` (online mode: the training set and the steps per call grow from
  stage to stage) every call has one shape, so the step compiles once per run, not once per stage:
  ``x_all``/``y_all``/``tprobs`` rows are zero-padded to ``capacity`` (never gathered: indices stay
  below the stage's n) and ``idx`` to ``max_steps`` steps, of which a while loop runs only the
  first n. See :func:`make_fixed_shape_call`.

  ``seed_axis``: how the seeds share the call, :func:`over_runs` ('auto': one after another on the
  CPU backend, vmapped on accelerators).

  ``per_run``: ``x_all``/``y_all`` carry the run axis, (S, N, ...) and (S, N): every seed trains on
  its own data set (independent runs of the synthetic task, [LW] §1.1).

  ``runs_mesh``: the seeds split over its 'runs' axis (:func:`jit_seeds`).
  """
  if capacity is not None or max_steps is not None:
    if per_run:
      raise ValueError("per-run data sets do not combine with online (growing) stages")
    return make_fixed_shape_call(step, cached=cached, capacity=capacity, max_steps=max_steps,
                                 seed_axis=seed_axis, runs_mesh=runs_mesh)

  def one(state, x_all, y_all, tp_all, idx):
    def body(st, ix):
      tp = tp_all[ix] if cached else None
      return step(st, x_all[ix], y_all[ix], tp)

    state, out = jax.lax.scan(body, state, idx)
    return state, _summarize(state, *out)

  d = 0 if per_run else None
  fn = over_runs(one, (0, d, d, 0 if cached else None, 0), seed_axis)
  return jit_seeds(fn, runs_mesh, (True, per_run, per_run, cached, True), donate_argnums=0)


def make_fixed_shape_call(step, *, cached: bool, capacity: int | None, max_steps: int | None,
                          seed_axis: str = "auto", runs_mesh=None):
  """:func:`make_train_call` with one call shape for every stage (see there); same results.

  The returned function has the same signature; ``.jitted`` is the underlying jitted function
  (``jitted._cache_size()`` counts its compilations). Padding happens outside the jit: rows once per
  distinct ``x_all`` (the stage loop passes one array per stage), indices on the host (a few KB).
  """

  def one(state, x_all, y_all, tp_all, idx, n):
    def body(i, carry):
      st, tot_l, tot_a, _ = carry
      ix = idx[i]
      st, (loss, acc, lr) = step(st, x_all[ix], y_all[ix], tp_all[ix] if cached else None)
      return st, tot_l + loss, tot_a + acc, lr

    zero = jnp.float32(0)
    # n is a traced, unbatched scalar: a while loop of exactly n steps, padded steps never run.
    state, tot_l, tot_a, lr = jax.lax.fori_loop(0, n, body, (state, zero, zero, zero))
    nf = jnp.maximum(n, 1).astype(jnp.float32)
    return state, {"loss": tot_l / nf, "accuracy": tot_a / nf, "learning_rate": lr,
                   "step": state.step}

  fn = jit_seeds(over_runs(one, (0, None, None, 0 if cached else None, 0, None), seed_axis),
                 runs_mesh, (True, False, False, cached, True, False), donate_argnums=0)
  pad_x, pad_y, pad_t = _RowPad(capacity, 0), _RowPad(capacity, 0), _RowPad(capacity, 1)

  def call(state, x_all, y_all, tprobs, idx):
    n = idx.shape[1]
    if max_steps is not None:
      if n > max_steps:
        raise ValueError(f"a call of {n} steps exceeds max_steps={max_steps}")
      host = np.asarray(multihost.fetch(idx))  # sharded over every process's devices
      host = np.pad(host, ((0, 0), (0, max_steps - n), (0, 0)))
      idx = jax.device_put(host, idx.sharding)
    return fn(state, pad_x(x_all), pad_y(y_all), pad_t(tprobs) if cached else None, idx,
              np.int32(n))

  call.jitted = fn
  return call


class _RowPad:
  """Zero-pads (or, past ``capacity``, trims padding rows from) axis ``axis`` to ``capacity`` rows;
  remembers the last input so a stage's array is padded once, not at every call."""

  def __init__(self, capacity: int | None, axis: int):
    self.capacity, self.axis, self.last = capacity, axis, (None, None)

  def __call__(self, a):
    if self.capacity is None or a is None:
      return a
    if self.last[0] is a:
      return self.last[1]
    rows = a.shape[self.axis]
    if rows == self.capacity:
      out = a
    elif rows > self.capacity:  # only padding rows lie past capacity (teacher cache batches)
      out = jax.lax.slice_in_dim(a, 0, self.capacity, axis=self.axis)
    else:
      widths = [(0, 0)] * a.ndim
      widths[self.axis] = (0, self.capacity - rows)
      out = jnp.pad(a, widths)
    self.last = (a, out)
    return out


def make_stream_call(step):
  """Like :func:`make_train_call` for streamed batches ``xs (n, B, ...), ys (n, B)`` shared by
  every seed (already augmented on the host: ``step``'s augment must be the identity)."""

  def one(state, xs, ys):
    state, out = jax.lax.scan(lambda st, b: step(st, b[0], b[1], None), state, (xs, ys))
    return state, _summarize(state, *out)

  return jax.jit(over_runs(one, (0, None, None)), donate_argnums=0)


def make_eval(model, augment: Callable, per_run: bool = False, runs_mesh=None):
  """``eval(variables (S,...), x_all, y_all, idx (nb, Be), w (nb, Be)) -> (loss (S,), acc (S,))``.

  Mean cross-entropy and accuracy over the examples with weight 1 (padding has weight 0).
  """
  key = jax.random.PRNGKey(0)  # eval-mode augmentation is deterministic; the key is unused

  def one(variables, x_all, y_all, idx, w):
    def body(carry, iw):
      ix, ww = iw
      logits = model.apply(variables, augment(key, x_all[ix], False), train=False)
      ce = losses.cross_entropy(logits, y_all[ix])
      hit = (jnp.argmax(logits, -1) == y_all[ix]).astype(jnp.float32)
      return (carry[0] + jnp.sum(ce * ww), carry[1] + jnp.sum(hit * ww)), None

    (tot_l, tot_c), _ = jax.lax.scan(body, (jnp.float32(0), jnp.float32(0)), (idx, w))
    n = jnp.maximum(jnp.sum(w), 1.0)
    return tot_l / n, tot_c / n

  d = 0 if per_run else None  # per-run data sets: x_all (S, N, ...), y_all (S, N)
  return jit_seeds(over_runs(one, (0, d, d, None, None)), runs_mesh,
                   (True, per_run, per_run, False, False))


def make_feature_diagnostics(model, augment: Callable, per_run: bool = False, runs_mesh=None):
  """``features(variables (S,...), x (B, ...)) -> {name: (S,)}``: what plasticity studies track,
  on inputs ``x`` in evaluation mode (``x`` (S, B, ...) with ``per_run``).

  Per block but the last (whose output is the logits): ``dormant_<τ>_block<i>``, the fraction of
  its units (features, or channels of a conv block) whose ReDo score is ≤ τ (τ = 0: never active,
  the dead units; Sokar et al. 2023); and ``effective_rank`` / ``srank`` (δ = 0.01; Kumar et al.
  2021) of the penultimate block's features, a conv block's averaged over positions.
  """
  key = jax.random.PRNGKey(0)  # eval-mode augmentation is deterministic; the key is unused

  def one(variables, x):
    outputs = model.block_outputs(variables, augment(key, x, False))[:-1]
    out = {}
    for i, h in enumerate(outputs, start=1):
      for tau in plasticity.DORMANT_TAUS:
        out[f"dormant_{tau:g}_block{i}"] = plasticity.dormant_fraction(h, tau)
    features = outputs[-1].reshape(outputs[-1].shape[0], -1, outputs[-1].shape[-1]).mean(1)
    out["effective_rank"] = plasticity.effective_rank(features)
    out["srank"] = plasticity.srank(features, 0.01).astype(jnp.float32)
    return out

  return jit_seeds(over_runs(one, (0, 0 if per_run else None)), runs_mesh, (True, per_run))


def make_teacher_cache(model, augment: Callable, per_run: bool = False, runs_mesh=None):
  """``cache(teacher (S,...), x_all, idx (nb, Be)) -> probs (S, nb·Be, C)``: the teacher's class
  probabilities on every training example, un-augmented ([Z] §3.1's cached teacher; row i = example i)."""
  key = jax.random.PRNGKey(0)

  def one(teacher, x_all, idx):
    probs = jax.lax.map(lambda ix: _teacher_probs(model, teacher, augment(key, x_all[ix], False)),
                        idx)
    return probs.reshape(-1, probs.shape[-1])

  return jit_seeds(over_runs(one, (0, 0 if per_run else None, None)), runs_mesh,
                   (True, per_run, False))


def make_init(model, tx, *, distill: bool, anchor: bool, step_events: bool, runs_mesh=None,
              compiler_options=None):
  """``init(base_keys (S, 2), seeds (S,)) -> state``: every run's θ_1 and fresh optimizer state
  (``state.init_state`` without a method: θ_1 and the optimizer do not depend on it, so one
  compilation serves every method of a grid)."""
  def one(base_key, seed):
    return init_state(model, None, tx, base_key, seed, distill, anchor=anchor,
                      step_events=step_events)

  return jit_seeds(over_runs(one, (0, 0)), runs_mesh, (True, True),
                   compiler_options=compiler_options)


def make_prepare(method, *, select_impl: str | None = None, runs_mesh=None,
                 compiler_options=None):
  """``prepare(state) -> state``: the method's once-before-training draw into every run's context
  (``state.prepare_state``); ``state`` is donated."""
  return jit_seeds(over_runs(lambda st: prepare_state(method, st, select_impl), (0,)), runs_mesh,
                   (True,), donate_argnums=0, compiler_options=compiler_options)


def param_norm(params) -> jax.Array:
  """Global L2 norm of one seed's parameters ([Z] Fig. 3), in float32; jit- and vmap-able."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(params)))


def make_norm(runs_mesh=None):
  """``norm(params (S, ...)) -> (S,)``: every run's :func:`param_norm`."""
  return jit_seeds(over_runs(param_norm, (0,)), runs_mesh, (True,))


def make_step_event(model, method, tx, *, every: int, trigger: str, threshold: float,
                    optimizer_policy: str, batch_stats_policy: str, idle_norm_policy: str = "set",
                    values: Callable | None = None, select_impl: str | None = None):
  """A step-level event inside the train call: ``after_step(state, accuracy, x) -> state``.

  After every ``every``-th optimizer step of a run (its own step counter, so each run on the run
  axis decides for itself), R is applied with the stage event's optimizer and BatchNorm policies
  (``events.apply_event``) to a fresh θ_init keyed by (seed, step) — when ``trigger`` is 'every',
  or 'fit' and the run's mean batch accuracy over those ``every`` steps is ≥ ``threshold``. The
  method sees the event's 1-based index as its ``stage``; ``x`` (the step's batch) measures
  layer-wise normalizations. Nothing leaves the jitted call and nothing retraces: the decision is
  a ``lax.cond`` on traced counters, taken when any run of the call fires (under ``vmap`` the
  runs' flags are combined across the run axis, so the branch is not turned into a select that
  would run the event at every step); inside it each run keeps its own result only if it fired.
  ``values(hyper) -> (method, tx)``: a pack's per-run values.
  """
  const = (method, tx)
  policies = dict(optimizer_policy=optimizer_policy, batch_stats_policy=batch_stats_policy,
                  idle_norm_policy=idle_norm_policy)

  def after_step(state: TrainState, accuracy, x):
    method, tx = const if state.hyper is None else values(state.hyper)
    counters = state.step_events
    window = counters["window_accuracy"] + accuracy
    due = state.step % every == 0  # the step counter already counts this step
    fire = due if trigger == "every" else due & (window >= threshold * every)
    apply = lambda st: _step_event(model, method, tx, select_impl, policies, st, x, fire)
    state = jax.lax.cond(_any_run(fire), apply, lambda st: st, state)
    return state.replace(step_events={
        **state.step_events, "window_accuracy": jnp.where(due, jnp.zeros_like(window), window),
        "events": counters["events"] + fire.astype(jnp.int32)})

  return after_step


def _step_event(model, method, tx, select_impl, policies: dict, st: TrainState, x, fire):
  """The step-level event of :func:`make_step_event` on state ``st`` (taken when any run fires;
  a run keeps the result only where its ``fire`` holds)."""
  index = st.step_events["events"] + 1
  context = events.advance_context(method, model, st.variables,
                                   st.context.replace(select_impl=select_impl), x)
  key = backends.draw_key(stream_key(st.key, STEP_EVENT_STREAM, st.step))
  # A unit-level method's mask also counts the units it resets; computed once, for both.
  mask = (method.reinit_mask(st.variables["params"], index, key, context)
          if method.uses_activations else None)

  def reset(st):
    fresh = step_draw(model, st.seed, st.step)
    variables, opt_state = events.apply_event(method, model, st.variables, fresh, st.opt_state, tx,
                                              index, key, context, x, mask=mask, **policies)
    return st.replace(variables=variables, opt_state=opt_state)

  units = st.step_events["units_reset"]
  if not method.uses_activations:
    new = reset(st)
  else:  # a unit-level method: count the units it resets
    count = methods.units_in_mask(model.blocks, mask)
    units = units + count
    # An event that resets no unit changes nothing but the method's carry (unless it re-creates
    # the optimizer state): skip the fresh draw and the edits, as most of continual backprop's
    # per-step events and ReDo's on a healthy network do.
    new = (reset(st) if policies["optimizer_policy"] == "reset"
           else jax.lax.cond(_any_run(count > 0), reset, lambda st: st, st))
  new = new.replace(context=_kept(context), step_events={**st.step_events, "units_reset": units})
  if method.uses_activations and not _batched_runs():
    # Taken only when this run fires, so nothing to select; and a unit-level event mostly
    # changes only its carry, where the select would copy the whole state (CBP every step:
    # 0.05 instead of 0.17 ms on the stream MLP, XLA:CPU). An event that always changes the
    # state keeps the select: XLA:CPU fuses the event's edits into it (2× faster for `full`).
    return new
  return jax.tree.map(lambda n, o: jnp.where(fire, n, o), new, st)


def _kept(context):
  """What the run's state keeps of an event's context: its carry, not the event's activations or
  selection choice (the state's pytree structure stays the same)."""
  return context.replace(activations=None, select_impl=None)


def make_event(model, method, tx, augment: Callable, *, norm_batch_size: int, distill: bool,
               optimizer_policy: str, batch_stats_policy: str, capacity: int | None = None,
               idle_norm_policy: str = "set", per_run: bool = False, runs_mesh=None,
               compiler_options=None, values: Callable | None = None,
               select_impl: str | None = None):
  """The event after the current stage, jitted once (stage is traced state; [Z] §3, [LW] §3).

  ``event(state (S,...), x_all (N, ...), n_current int32) -> state``: draws θ_init from the model's
  own init with key(seed, t), measures layer-wise normalizations on ``norm_batch_size`` training
  examples drawn (with replacement) from the first ``n_current`` rows of ``x_all``, applies
  ``events.apply_event``, keeps the pre-event variables as the next teacher, and moves to stage t+1
  with the step-in-stage counter at 0 (the schedule restarts). ``state`` is donated. With
  ``capacity`` (online mode) ``x_all`` is zero-padded to that many rows first, so the event
  compiles once per run (``n_current`` keeps the draw inside the stage's rows). ``values(hyper)
  -> (method, tx)``: the run's own method hyperparameters and optimizer (``train/pack.py``).
  ``select_impl``: the k-smallest selection the method traces (``methods.Context.select_impl``).
  """
  const = (method, tx)

  def one(state: TrainState, x_all, n_current):
    method, tx = const if state.hyper is None else values(state.hyper)
    t = state.stage
    fresh = stage_draw(model, state.seed, t)
    ek = backends.draw_key(stream_key(state.key, EVENT_STREAM, t))
    nk = jax.random.fold_in(ek, 0x4E)
    ix = jax.random.randint(nk, (norm_batch_size,), 0, n_current)
    norm_batch = augment(nk, x_all[ix], False)
    context = events.advance_context(method, model, state.variables,
                                     state.context.replace(select_impl=select_impl), norm_batch)
    variables, opt_state = events.apply_event(
        method, model, state.variables, fresh, state.opt_state, tx, t, ek, context, norm_batch,
        optimizer_policy=optimizer_policy, batch_stats_policy=batch_stats_policy,
        idle_norm_policy=idle_norm_policy)
    return state.replace(variables=variables, opt_state=opt_state, context=_kept(context),
                         teacher=dict(state.variables) if distill else None,
                         stage=t + 1, step_in_stage=jnp.zeros_like(state.step_in_stage))

  fn = jit_seeds(over_runs(one, (0, 0 if per_run else None, None)), runs_mesh,
                 (True, per_run, False), donate_argnums=0, compiler_options=compiler_options)
  if capacity is None:
    return fn
  pad = _RowPad(capacity, 0)

  def event(state, x_all, n_current):
    return fn(state, pad(x_all), n_current)

  event.jitted = fn
  return event
