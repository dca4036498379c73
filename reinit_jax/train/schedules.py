"""Optimizer and learning-rate schedules ([Z] §4: constant, cosine restarted per stage, one cosine).

The learning rate is computed outside the optax state from the engine's own step counters and
multiplied onto the optimizer's update (optimizers are built with ``learning_rate=1``). Two reasons:
the per-stage cosine restarts at every event whatever the optimizer policy (a kept optimizer state
would otherwise keep counting), and the step-within-stage is traced data, so a new stage never
retraces the train step. Every optax alias named here ends in ``scale_by_learning_rate``, so
scaling its update by lr is the same optimizer.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import optax


def make_optimizer(name: str, weight_decay, momentum: float = 0.9,
                   kwargs: dict | None = None, decay: bool | None = None
                   ) -> optax.GradientTransformation:
  """``add_decayed_weights(wd)`` (L2 added to the gradient, PyTorch SGD style) then ``optax.<name>``.

  The result's updates must be multiplied by the learning rate (see module docstring). ``decay``:
  whether the chain holds ``add_decayed_weights`` (default: when ``weight_decay`` is non-zero);
  True for a traced ``weight_decay`` (a packed grid, ``train/pack.py``), where a zero adds 0·θ.
  """
  kwargs = dict(kwargs or {})
  if name == "sgd":
    kwargs.setdefault("momentum", momentum)
  opt = getattr(optax, name)(learning_rate=1.0, **kwargs)
  if decay if decay is not None else weight_decay:
    return optax.chain(optax.add_decayed_weights(weight_decay), opt)
  return opt


def without_decay(opt_state):
  """The state of ``make_optimizer(..., decay=False)`` from that of the same optimizer built with
  ``decay=True`` (the chain's first state, ``add_decayed_weights``'s, holds nothing)."""
  return opt_state[1]


def make_schedule(kind: str, base_lr: float, stage_steps, total_steps: int) -> Callable:
  """``lr(step_in_stage, step, stage) -> float32`` for 'constant', 'cosine_per_stage' or 'cosine'.

  'cosine_per_stage' anneals from ``base_lr`` to 0 over every stage and restarts at each event
  (a cyclical schedule [Z] §4; SGDR for ``standard``, [Z] §5.3); 'cosine' is one annealing over the
  whole budget. ``stage_steps``: the steps of each stage (an int when all stages are equal; a list
  when they differ, as online stages do). The counters are int32 scalars (traced, so a new stage
  never retraces); the first step of every stage gets ``base_lr`` under 'cosine_per_stage'.
  """
  lens = [stage_steps] if isinstance(stage_steps, int) else list(stage_steps)
  if kind == "constant":
    sched = optax.constant_schedule(base_lr)
    return lambda step_in_stage, step, stage: jnp.asarray(sched(step_in_stage), jnp.float32)
  if kind == "cosine":
    sched = optax.cosine_decay_schedule(base_lr, max(total_steps, 1))
    return lambda step_in_stage, step, stage: jnp.asarray(sched(step), jnp.float32)
  if kind != "cosine_per_stage":
    raise ValueError(f"config.optim.schedule={kind!r} is invalid; allowed: constant, "
                     "cosine_per_stage, cosine")
  if len(set(lens)) == 1:
    sched = optax.cosine_decay_schedule(base_lr, max(lens[0], 1))
    return lambda step_in_stage, step, stage: jnp.asarray(sched(step_in_stage), jnp.float32)
  table = jnp.asarray([max(n, 1) for n in lens], jnp.float32)

  def lr(step_in_stage, step, stage):  # each stage's own length (online: stages grow)
    n = table[jnp.clip(stage - 1, 0, len(lens) - 1)]
    frac = jnp.minimum(step_in_stage.astype(jnp.float32) / n, 1.0)
    return jnp.float32(base_lr) * 0.5 * (1 + jnp.cos(jnp.pi * frac))

  return lr
