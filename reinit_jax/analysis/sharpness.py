"""Sharpness under Gaussian parameter noise ([LW] §4.2).

For each σ of a grid, every parameter gets independent N(0, σ²) noise (θ + σ·ε, ε ~ N(0, I), one
draw per key), and we record the change of the training loss and accuracy against the unperturbed
parameters, averaged over draws. Flat minima change little. Noise is added to the ``'params'``
collection only: batch statistics and layer-wise normalizations are state, not parameters.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class Sharpness(NamedTuple):
  """Per σ (arrays of shape (S,)): means and standard deviations over draws of Δloss and Δaccuracy."""

  sigmas: np.ndarray
  loss_change: np.ndarray
  loss_change_std: np.ndarray
  accuracy_change: np.ndarray
  accuracy_change_std: np.ndarray
  base_loss: float
  base_accuracy: float


def perturb(params: Any, key: jax.Array, sigma) -> Any:
  """``params + sigma * eps`` with ``eps ~ N(0, I)`` independently per leaf (keys split per leaf)."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(key, max(len(leaves), 1))
  noisy = [x + jnp.asarray(sigma, x.dtype) * jax.random.normal(k, x.shape, x.dtype)
           for x, k in zip(leaves, keys)]
  return jax.tree_util.tree_unflatten(treedef, noisy)


def sharpness(loss_acc_fn: Callable[[Any], tuple[jax.Array, jax.Array]], params: Any,
              key: jax.Array, sigmas: Sequence[float], num_draws: int = 8) -> Sharpness:
  """Δloss and Δaccuracy under N(0, σ²I) parameter noise for each σ [LW §4.2].

  Args:
    loss_acc_fn: ``params -> (loss, accuracy)`` scalars on the training data (pure jax).
    params: the parameters to perturb (a pytree of float arrays).
    key: PRNG key; draw ``d`` at σ index ``s`` uses ``fold_in(fold_in(key, s), d)``, so adding a
      σ to the grid leaves the other entries' draws unchanged.
    sigmas: (S,) non-negative noise scales.
    num_draws: draws per σ (≥ 1).
  Returns:
    :class:`Sharpness` (changes are perturbed minus unperturbed).
  """
  sig = np.asarray(sigmas, np.float32).ravel()
  if sig.size == 0 or np.any(sig < 0) or not np.all(np.isfinite(sig)):
    raise ValueError(f"sigmas must be a non-empty sequence of finite numbers ≥ 0, got {sigmas!r}")
  if not isinstance(num_draws, int) or num_draws < 1:
    raise ValueError(f"num_draws must be a positive integer, got {num_draws!r}")
  base_loss, base_acc = loss_acc_fn(params)

  @jax.jit
  def one_sigma(s_index, sigma):
    k = jax.random.fold_in(key, s_index)

    def one_draw(d):
      loss, acc = loss_acc_fn(perturb(params, jax.random.fold_in(k, d), sigma))
      return loss - base_loss, acc - base_acc

    # lax.map rather than vmap: one perturbed copy of the parameters in memory at a time.
    return jax.lax.map(one_draw, jnp.arange(num_draws))

  dl, da = [], []
  for i, s in enumerate(sig):
    a, b = one_sigma(jnp.int32(i), jnp.float32(s))
    dl.append(np.asarray(a))
    da.append(np.asarray(b))
  dl, da = np.stack(dl), np.stack(da)
  return Sharpness(sig, dl.mean(1), dl.std(1), da.mean(1), da.std(1), float(base_loss),
                   float(base_acc))


def model_loss_acc_fn(model, variables, x, y) -> Callable[[Any], tuple[jax.Array, jax.Array]]:
  """``params -> (mean cross-entropy, accuracy)`` of ``model`` in eval mode on (x, y).

  Shapes: x (n, *input_shape) preprocessed, y (n,) int. The other collections of ``variables``
  (batch statistics, layer-wise norms) are held fixed.
  """
  x, y = jnp.asarray(x), jnp.asarray(y)
  if x.shape[0] != y.shape[0]:
    raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
  rest = {k: v for k, v in variables.items() if k != "params"}

  def fn(params):
    logits = model.apply({**rest, "params": params}, x, train=False).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits)
    loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
    acc = jnp.mean(jnp.argmax(logits, -1) == y)
    return loss, acc

  return fn


def model_sharpness(model, variables, x, y, key, sigmas: Sequence[float],
                    num_draws: int = 8) -> Sharpness:
  """:func:`sharpness` of a :class:`reinit_jax.models.Model` on training data (x, y)."""
  return sharpness(model_loss_acc_fn(model, variables, x, y), variables["params"], key, sigmas,
                   num_draws)
