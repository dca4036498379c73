"""Training objective: cross-entropy plus optional self-distillation ([Z] §3.1).

Weight decay is not here: it is added to the gradient by the optimizer (``schedules.make_optimizer``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy; logits (B, C) float, labels (B,) int → (B,) float32."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def distill_kl(teacher_probs: jax.Array, logits: jax.Array) -> jax.Array:
  """Per-example KL(teacher ‖ student) at temperature 1 ([Z] §3.1); (B, C), (B, C) → (B,).

  ``0 · log 0`` terms are taken as 0, so a teacher with exact zeros does not give NaN.
  """
  log_s = jax.nn.log_softmax(logits.astype(jnp.float32))
  p = teacher_probs.astype(jnp.float32)
  log_p = jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
  return jnp.sum(p * (log_p - log_s), axis=-1)


def objective(logits, labels, teacher_probs=None, beta=0.0):
  """Mean cross-entropy + β · mean KL; returns (loss, (ce, accuracy)), scalars float32.

  ``beta`` may be traced (it is 0 in stage 1, where there is no teacher).
  """
  ce = jnp.mean(cross_entropy(logits, labels))
  loss = ce
  if teacher_probs is not None:
    loss = ce + beta * jnp.mean(distill_kl(teacher_probs, logits))
  acc = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
  return loss, (ce, acc)
