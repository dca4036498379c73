"""Optimizer and learning-rate schedules (SPEC §3).

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


def make_optimizer(name: str, weight_decay: float, momentum: float = 0.9,
                   kwargs: dict | None = None) -> optax.GradientTransformation:
  """``add_decayed_weights(wd)`` (L2 added to the gradient, PyTorch SGD style) then ``optax.<name>``.

  The result's updates must be multiplied by the learning rate (see module docstring).
  """
  kwargs = dict(kwargs or {})
  if name == "sgd":
    kwargs.setdefault("momentum", momentum)
  opt = getattr(optax, name)(learning_rate=1.0, **kwargs)
  if weight_decay:
    return optax.chain(optax.add_decayed_weights(weight_decay), opt)
  return opt


def make_schedule(kind: str, base_lr: float, steps_per_stage: int,
                  total_steps: int) -> Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]:
  """``lr(step_in_stage, step) -> float32`` for 'constant', 'cosine_per_stage' or 'cosine'.

  'cosine_per_stage' anneals from ``base_lr`` to 0 over every stage and restarts at each event
  (a cyclical schedule; SGDR for ``standard``); 'cosine' is one annealing over the whole budget.
  Both counters are int32 scalars (traced); the first step of every stage gets ``base_lr`` under
  'cosine_per_stage'.
  """
  if kind == "constant":
    sched, use_stage = optax.constant_schedule(base_lr), True
  elif kind == "cosine_per_stage":
    sched, use_stage = optax.cosine_decay_schedule(base_lr, max(steps_per_stage, 1)), True
  elif kind == "cosine":
    sched, use_stage = optax.cosine_decay_schedule(base_lr, max(total_steps, 1)), False
  else:
    raise ValueError(f"schedule={kind!r} is invalid; allowed: constant, cosine_per_stage, cosine")

  def lr(step_in_stage, step):
    return jnp.asarray(sched(step_in_stage if use_stage else step), jnp.float32)

  return lr
