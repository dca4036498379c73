"""The train state of a run: every seed's model, optimizer and method state, with a leading seed axis.

Several seeds of one config train in one process on the run axis (docs/launching.md, "Devices and
seeds"): every leaf of a :class:`TrainState` has a leading axis of size S = len(config.seeds). PRNG
streams are derived from the seed's base key by ``fold_in`` of (stream, position), so every draw is
a function of where the run is, and a resumed run draws exactly what an uninterrupted one would.
Large draws (θ_init, an event's masks) take their key through ``backends.draw_key``: the same bits,
drawn faster on the CPU backend.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from reinit_jax import backends, events, methods

# fold_in streams of a seed's base key; the position folded in after is the stage or the step.
INIT_STREAM, EVENT_STREAM, STEP_STREAM, STEP_EVENT_STREAM = 0, 1, 2, 3


@flax.struct.dataclass
class TrainState:
  """One seed's state (vmapped: every leaf gets a leading seed axis).

  Attributes:
    variables: model collections {'params', 'batch_stats'?, 'layerwise_norm'}.
    opt_state: optax state of ``schedules.make_optimizer``.
    context: ``methods.Context`` (first-init norms, fixed masks).
    teacher: the variables at the end of the previous stage (distillation), else None.
    step: global gradient steps so far (int32). step_in_stage: steps in the current stage (int32).
    stage: the current stage, 1-based (int32). key: the seed's base PRNG key (uint32 (2,)) for
    events, augmentation and dropout. seed: the seed (int32), for the init keys.
    hyper: None, or the values a packed grid varies per run ({'learning_rate': float32 scalar,
      ...}; ``train/pack.py``): the step and the event read them instead of the config's
      constants, so grid points that differ only in such values train in one compiled call.
    anchor: θ₀, the parameters of θ_1, when ``optim.l2_init`` > 0 (L2 Init), else None.
    step_events: with ``reinit.every_steps`` > 0, {'window_accuracy': the sum of batch accuracies
      since the last N-th step (float32), 'events': step-level events so far (int32),
      'units_reset': the units a unit-level method (redo, continual_backprop) reset in them}, else
      None.
  """

  variables: dict
  opt_state: Any
  context: Any
  teacher: Any
  step: jax.Array
  step_in_stage: jax.Array
  stage: jax.Array
  key: jax.Array
  seed: jax.Array
  hyper: Any = None
  anchor: Any = None
  step_events: Any = None


def stream_key(base: jax.Array, stream: int, position) -> jax.Array:
  """Key for ``position`` (stage or step, may be traced) in one of the streams above."""
  return jax.random.fold_in(jax.random.fold_in(base, stream), position)


INIT_ROOT = 0x1417  # root of every model.init key; the seed and the stage are folded into it
STEP_INIT_ROOT = 0x5E7  # root of the θ_init of step-level events; the seed and the step folded in


def stage_draw(model, seed, stage) -> dict:
  """The fresh draw of stage ``stage``: ``model.init`` keyed by (seed, stage) as
  ``events.fresh_variables`` ([Z] §3, [AA] §4). Stage 0 draws θ_1, stage t ≥ 1 the θ_init of the
  event after stage t. ``seed``/``stage`` may be traced."""
  return dict(events.fresh_variables(model, backends.draw_key(jax.random.PRNGKey(INIT_ROOT)), seed,
                                     stage))


def step_draw(model, seed, step) -> dict:
  """The fresh draw of a step-level event after step ``step`` (traced): ``model.init`` keyed by
  (seed, step) from a root of its own, so it never repeats a stage event's draw."""
  return dict(events.fresh_variables(model, backends.draw_key(jax.random.PRNGKey(STEP_INIT_ROOT)),
                                     seed, step))


def init_state(model, method, tx, base_key: jax.Array, seed, distill: bool, *,
               anchor: bool = False, step_events: bool = False) -> TrainState:
  """θ_1 from the model's own initializer, the method's context (prepared once), a fresh optimizer.

  Single seed, pure and jit-able; vmap it over base keys (S, 2) and seeds (S,). Equals
  ``prepare_state(method, init_state(model, None, ...))``: the method-free part compiles once for
  every method of a grid. ``anchor``: keep θ_1's parameters as θ₀ (L2 Init); ``step_events``:
  the counters of step-level events (``step.make_step_event``).
  """
  variables = stage_draw(model, seed, 0)
  context = methods.make_context(model, variables["params"])
  zero = jnp.zeros((), jnp.int32)
  state = TrainState(variables=variables, opt_state=tx.init(variables["params"]), context=context,
                     teacher=dict(variables) if distill else None, step=zero, step_in_stage=zero,
                     stage=zero + 1, key=base_key, seed=jnp.asarray(seed, jnp.int32),
                     anchor=jax.tree.map(jnp.copy, variables["params"]) if anchor else None,
                     step_events=({"window_accuracy": jnp.zeros((), jnp.float32), "events": zero,
                                   "units_reset": zero} if step_events else None))
  return state if method is None else prepare_state(method, state)


def prepare_state(method, state: TrainState, select_impl: str | None = None) -> TrainState:
  """The method's once-before-training draw (e.g. WELS's fixed mask, [LW] §1.1) into the context;
  ``select_impl``: the selection it traces (``methods.Context.select_impl``; the state keeps None)."""
  context = method.prepare(backends.draw_key(stream_key(state.key, EVENT_STREAM, 0)),
                           state.variables["params"],
                           state.context.replace(select_impl=select_impl))
  return state.replace(context=context.replace(select_impl=None))


def base_keys(seeds) -> jax.Array:
  """(S, 2) uint32 base keys, one per seed (legacy raw keys: plain arrays checkpoint as-is)."""
  return jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
