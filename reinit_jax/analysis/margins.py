"""Training margins and the "size of the weights" ([LW] §4.1 and App. D).

The margin of an example is ``p_true - max_{c != true} p_c`` with ``p`` the softmax of the logits,
so it lies in [-1, 1] and is negative exactly where the example is misclassified. [LW] look at the
400 smallest training margins.

"Size of the weights" [LW App. D] multiplies the norm of the head's input activations on 256
training examples by the Frobenius norm of the head's weights. The head's input is captured with
``flax.linen.intercept_methods`` on the head module's ``__call__`` (the positional input it receives),
which needs no change to the model; a model whose head is not a single module can pass
``features_fn(variables, x) -> (B, d)`` instead.

Choices the paper leaves open (documented, selectable):

* "the head" is the *last* module of ``model.head`` (the classifier layer that produces the
  logits); its weights are its ``kernel`` leaf.
* "the norm of the activations" on n examples is ``activation_norm='rms'`` by default, the root
  mean square of the per-example L2 norms (``||A||_F / sqrt(n)``, independent of n), or
  ``'frobenius'``, ``||A||_F`` of the (n, d) matrix.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


def margins(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax margins ``p_true - max_other`` [LW §4.1].

  Args:
    logits: (B, C) float, C ≥ 2.
    labels: (B,) int in [0, C).
  Returns:
    (B,) float32 in [-1, 1].
  """
  logits = jnp.asarray(logits, jnp.float32)
  labels = jnp.asarray(labels)
  if logits.ndim != 2 or logits.shape[1] < 2:
    raise ValueError(f"logits must have shape (B, C) with C ≥ 2, got {logits.shape}")
  if labels.shape != logits.shape[:1]:
    raise ValueError(f"labels must have shape ({logits.shape[0]},), got {labels.shape}")
  p = jax.nn.softmax(logits, axis=-1)
  true_mask = jax.nn.one_hot(labels, logits.shape[1], dtype=bool)
  p_true = jnp.sum(jnp.where(true_mask, p, 0.0), axis=-1)
  # -1 can never win the max because probabilities are ≥ 0, so it removes the true class.
  p_other = jnp.max(jnp.where(true_mask, -1.0, p), axis=-1)
  return p_true - p_other


def smallest(values: jax.Array, k: int = 400) -> jax.Array:
  """The ``min(k, n)`` smallest entries of a (n,) array, ascending ([LW] plots the 400 smallest)."""
  values = jnp.asarray(values).ravel()
  if not isinstance(k, int) or k < 1:
    raise ValueError(f"k must be a positive integer, got {k!r}")
  return jnp.sort(values)[:min(k, values.shape[0])]


def head_module_name(model) -> str:
  """The top-level name of the classifier layer: the last entry of ``model.head``."""
  if not getattr(model, "head", None):
    raise ValueError("model must declare a non-empty head (reinit_jax.models.Model.head)")
  return model.head[-1]


def logits_and_head_input(model, variables, x, *, head: str | None = None):
  """Eval-mode logits and the input the head module receives, in one forward pass.

  Args:
    model: a :class:`reinit_jax.models.Model`.
    variables: its variables (``{'params', ...}``).
    x: (B, *input_shape) preprocessed inputs.
    head: top-level module name to capture (default :func:`head_module_name`).
  Returns:
    ``(logits (B, C), features (B, d))``; features are flattened per example. Jit-able.
  """
  head = head or head_module_name(model)
  captured = []

  def interceptor(next_fun, args, kwargs, context):
    mod = context.module
    if context.method_name == "__call__" and mod.scope is not None and tuple(mod.scope.path) == (head,):
      captured.append(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    logits = model.apply(variables, x, train=False)
  if not captured:
    raise ValueError(f"head {head!r} was not called as a top-level module during the forward pass")
  feats = captured[0]
  return logits, feats.reshape((feats.shape[0], -1)).astype(jnp.float32)


class WeightSize(NamedTuple):
  """[LW App. D] "size of the weights": ``activation_norm * head_weight_norm``."""

  size: float
  activation_norm: float
  head_weight_norm: float


def weight_size(model, variables, x, *, head: str | None = None,
                features_fn: Callable[[Any, jax.Array], jax.Array] | None = None,
                activation_norm: str = "rms") -> WeightSize:
  """Size of the weights on the examples ``x`` (take 256 training examples, as [LW] App. D).

  Args:
    model: a :class:`reinit_jax.models.Model`.
    variables: its variables.
    x: (n, *input_shape) preprocessed training inputs.
    head: top-level name of the classifier layer (default: last of ``model.head``).
    features_fn: optional ``(variables, x) -> (n, d)`` head inputs, replacing the interception.
    activation_norm: 'rms' (``||A||_F / sqrt(n)``) or 'frobenius' (``||A||_F``).
  Returns:
    :class:`WeightSize` of Python floats.
  """
  if activation_norm not in ("rms", "frobenius"):
    raise ValueError(f"activation_norm must be 'rms' or 'frobenius', got {activation_norm!r}")
  head = head or head_module_name(model)
  if features_fn is not None:
    feats = jnp.asarray(features_fn(variables, x), jnp.float32).reshape((x.shape[0], -1))
  else:
    feats = logits_and_head_input(model, variables, x, head=head)[1]
  params = variables["params"]
  if head not in params or "kernel" not in params[head]:
    raise ValueError(f"head must name a params entry with a 'kernel', got {head!r}")
  a = jnp.linalg.norm(feats.ravel())
  if activation_norm == "rms":
    a = a / jnp.sqrt(feats.shape[0])
  w = jnp.linalg.norm(jnp.asarray(params[head]["kernel"], jnp.float32).ravel())
  return WeightSize(float(a * w), float(a), float(w))


def training_margins(model, variables, x, y, *, k: int = 400, batch_size: int = 1024):
  """Margins of a model on training data [LW §4.1], in eval mode, batched.

  Args:
    x: (n, *input_shape) preprocessed inputs; y: (n,) int labels.
  Returns:
    ``(all_margins (n,), smallest (min(k, n),))`` as jax arrays.
  """
  if len(x) != len(y):
    raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
  fwd = jax.jit(lambda v, xb: model.apply(v, xb, train=False))
  out = [margins(fwd(variables, jnp.asarray(x[i:i + batch_size])), jnp.asarray(y[i:i + batch_size]))
         for i in range(0, len(x), batch_size)]
  m = jnp.concatenate(out)
  return m, smallest(m, k)
