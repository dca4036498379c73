"""Plasticity resets and their diagnostics as pure functions over parameter pytrees.

The resets of continual and reinforcement learning act on *units* (a dense layer's output features,
a conv layer's output channels) rather than on stages: a unit's incoming weights (its column of the
layer's kernel, its bias entry) are redrawn from a fresh initialization and its outgoing weights
(its row of the next layer's kernel) are set to zero, so the reset does not change the network's
output at the moment of the reset.

* :func:`unit_scores`, :func:`dormant_fraction`: ReDo's score (Sokar et al. 2023, §3)
  s_i = E_x|h_i(x)| / ((1/H) Σ_j E_x|h_j(x)|); a unit is τ-dormant when s_i ≤ τ.
* :func:`redo`: ReDo's reset of the τ-dormant units of every layer of a chain.
* :class:`ContinualBackprop`: continual backprop (Dohare et al. 2024, Methods): a running
  contribution utility u_i ← η u_i + (1 − η) |h_i| Σ_k |w_ik| per unit, an age per unit; at every
  step a fraction ρ of the mature units (age > m) is replaced (fractions accumulate across steps),
  the lowest utility first; replaced units get utility 0 and age 0.
* :func:`l2_init_penalty`: L2 Init (Kumar et al. 2023): λ ‖θ − θ₀‖², a loss term.
* :func:`shrink_perturb_step`: Shrink & Perturb at every step: θ ← pθ + σε, ε ~ N(0, I).
* :func:`inject`: plasticity injection (Nikishin et al. 2023): the head's output becomes
  h(x; θ_frozen) + h(x; θ_new) − h(x; θ_new,0), equal to the old output at injection.
* The optimizer-state edit every unit reset needs: ``events.optimizer_state("mask", tx, opt_state,
  params, unit_param_masks(params, layers, unit_masks))`` zeroes the entries of every
  parameter-shaped leaf of any optax state (Adam's μ and ν, momentum's trace) at the reset weights,
  counts kept, so no stale moment moves a reset unit at the next step.
* :func:`effective_rank`, :func:`srank`: the rank of a feature matrix (Roy & Vetterli 2007:
  exp of the entropy of the normalized singular values; Kumar et al. 2021: the smallest k whose
  singular values hold 1 − δ of their sum).

A *chain* names the layers whose units are reset, in order: ``layers = (("dense1",), ("dense2",),
("head",))`` (paths into ``params``; each holds ``kernel`` and optionally ``bias``). Units of every
layer but the last are reset; the last layer receives their outgoing weights. Kernels are Dense
``(in, out)`` or conv ``(..., in, out)``: incoming is the last axis, outgoing the next kernel's
second-to-last axis, which must have as many entries as the layer has units (no flatten between).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp

PyTree = Any
Path = tuple


def _get(tree, path: Path):
  for p in path:
    tree = tree[p]
  return tree


def _set(tree, path: Path, value):
  if not path:
    return value
  out = dict(tree)
  out[path[0]] = _set(tree[path[0]], path[1:], value)
  return out


# ----------------------------------------------------------------------------- scores


def unit_scores(activations: jax.Array) -> jax.Array:
  """ReDo's normalized score of every unit: ``activations`` (..., H) → (H,) float32.

  s_i = mean|h_i| / mean_j(mean|h_j|) over every axis but the last; all zeros when every unit is
  silent (no unit is more active than another).
  """
  a = jnp.abs(activations.astype(jnp.float32)).reshape(-1, activations.shape[-1]).mean(0)
  mean = a.mean()
  return jnp.where(mean > 0, a / jnp.where(mean > 0, mean, 1.0), jnp.zeros_like(a))


# The thresholds reported (τ = 0: dead units; Sokar et al. 2023 use 0.025 and 0.1).
DORMANT_TAUS = (0.0, 0.025, 0.1)


def dormant_fraction(activations: jax.Array, tau: float) -> jax.Array:
  """Fraction of the units with score ≤ τ (τ = 0: the dead units, never active on the batch)."""
  s = unit_scores(activations)
  dead = jnp.abs(activations).reshape(-1, activations.shape[-1]).max(0) == 0
  return jnp.mean(jnp.where(tau > 0, s <= tau, dead))


# ----------------------------------------------------------------------------- unit resets


def _check_chain(params, layers: Sequence[Path], unit_masks: Sequence[jax.Array]):
  if len(layers) < 2:
    raise ValueError(f"layers: a chain of at least 2 layers, got {len(layers)}")
  if len(unit_masks) != len(layers) - 1:
    raise ValueError(f"unit_masks: one per layer but the last ({len(layers) - 1}), got "
                     f"{len(unit_masks)}")
  for path, nxt, mask in zip(layers, layers[1:], unit_masks):
    units = _get(params, path)["kernel"].shape[-1]
    fan_in = _get(params, nxt)["kernel"].shape[-2]
    chex.assert_shape(mask, (units,))
    if fan_in != units:
      raise ValueError(f"layer {'/'.join(nxt)} takes {fan_in} inputs but {'/'.join(path)} has "
                       f"{units} units (a reshape between them: not a chain)")


def reset_units(params: PyTree, fresh: PyTree, layers: Sequence[Path],
                unit_masks: Sequence[jax.Array]) -> PyTree:
  """Incoming weights and bias of the masked units from ``fresh``, their outgoing weights 0.

  ``unit_masks[l]``: bool (units of layer l,) for every layer of the chain but the last.
  """
  _check_chain(params, layers, unit_masks)
  out = params
  for path, nxt, mask in zip(layers, layers[1:], unit_masks):
    layer, new = dict(_get(out, path)), _get(fresh, path)
    layer["kernel"] = jnp.where(mask, new["kernel"], layer["kernel"])
    if "bias" in layer:
      layer["bias"] = jnp.where(mask, new["bias"], layer["bias"])
    out = _set(out, path, layer)
    following = dict(_get(out, nxt))
    following["kernel"] = jnp.where(mask[:, None], 0, following["kernel"])
    out = _set(out, nxt, following)
  return out


def unit_param_masks(params: PyTree, layers: Sequence[Path],
                     unit_masks: Sequence[jax.Array]) -> PyTree:
  """Bool pytree like ``params``: True at every weight a :func:`reset_units` call changes."""
  _check_chain(params, layers, unit_masks)
  out = jax.tree.map(lambda p: jnp.zeros(p.shape, bool), params)
  for path, nxt, mask in zip(layers, layers[1:], unit_masks):
    layer = dict(_get(out, path))
    layer["kernel"] = layer["kernel"] | jnp.broadcast_to(mask, layer["kernel"].shape)
    if "bias" in layer:
      layer["bias"] = layer["bias"] | mask
    out = _set(out, path, layer)
    following = dict(_get(out, nxt))
    following["kernel"] = following["kernel"] | jnp.broadcast_to(
      mask[:, None], following["kernel"].shape)
    out = _set(out, nxt, following)
  return out


def redo(params: PyTree, fresh: PyTree, activations: Sequence[jax.Array], layers: Sequence[Path],
         tau: float = 0.1):
  """ReDo (Sokar et al. 2023): resets the τ-dormant units of every layer but the last.

  ``activations[l]``: layer l's post-activation outputs on a batch, (..., units). Returns
  ``(params, unit_masks)``; edit the optimizer state with :func:`unit_param_masks` of the same
  masks (module docstring).
  """
  masks = [unit_scores(h) <= tau for h in activations]
  return reset_units(params, fresh, layers, masks), masks


class ContinualBackprop(NamedTuple):
  """Continual backprop's per-unit state (Dohare et al. 2024): utility, age, replacement debt."""

  utility: tuple  # (units,) float32 per layer but the last
  age: tuple  # (units,) int32
  owed: tuple  # () float32: the fraction of a unit owed from earlier steps (ρ·n need not be whole)

  @classmethod
  def init(cls, params: PyTree, layers: Sequence[Path]) -> "ContinualBackprop":
    units = [_get(params, p)["kernel"].shape[-1] for p in layers[:-1]]
    return cls(tuple(jnp.zeros(u, jnp.float32) for u in units),
               tuple(jnp.zeros(u, jnp.int32) for u in units),
               tuple(jnp.zeros((), jnp.float32) for _ in units))

  def update(self, params: PyTree, activations: Sequence[jax.Array], layers: Sequence[Path],
             decay: float = 0.99) -> "ContinualBackprop":
    """One step: u ← η u + (1 − η) mean_batch|h_i| · Σ_k |w_ik| (outgoing), age + 1."""
    utility = []
    for u, h, nxt in zip(self.utility, activations, layers[1:]):
      out_w = jnp.abs(_get(params, nxt)["kernel"].astype(jnp.float32))
      out_w = out_w.reshape(-1, out_w.shape[-2], out_w.shape[-1]).sum((0, 2))
      mean_h = jnp.abs(h.astype(jnp.float32)).reshape(-1, h.shape[-1]).mean(0)
      utility.append(decay * u + (1 - decay) * mean_h * out_w)
    return self._replace(utility=tuple(utility), age=tuple(a + 1 for a in self.age))

  def select(self, rate: float, maturity: int):
    """(new state, unit masks): per layer ⌊owed + ρ·n_mature⌋ mature units of lowest utility
    (ties by position), their utility and age set to 0; the remainder is owed to later steps."""
    masks, utility, age, owed = [], [], [], []
    for u, a, debt in zip(self.utility, self.age, self.owed):
      mature = a > maturity
      due = debt + rate * mature.sum()
      count = jnp.floor(due).astype(jnp.int32)
      key = jnp.where(mature, u, jnp.inf)

      def ranked(key=key, count=count, mature=mature):
        return (jnp.argsort(jnp.argsort(key, stable=True), stable=True) < count) & mature

      # Most steps owe no whole unit (ρ·n < 1): skip the two sorts there.
      mask = jax.lax.cond(count > 0, ranked, lambda: jnp.zeros(u.shape, bool))
      masks.append(mask)
      utility.append(jnp.where(mask, 0.0, u))
      age.append(jnp.where(mask, 0, a))
      owed.append(due - mask.sum())
    return self._replace(utility=tuple(utility), age=tuple(age), owed=tuple(owed)), masks


# ----------------------------------------------------------------------------- whole-network


def l2_init_penalty(params: PyTree, params_0: PyTree, strength: float) -> jax.Array:
  """L2 Init (Kumar et al. 2023): λ Σ (θ − θ₀)², to add to the loss (no event)."""
  chex.assert_trees_all_equal_shapes(params, params_0)
  sq = jax.tree.map(lambda p, q: jnp.sum(jnp.square(p.astype(jnp.float32) - q)), params, params_0)
  return strength * sum(jax.tree.leaves(sq))


def shrink_perturb_step(params: PyTree, key: jax.Array, shrink: float, noise: float) -> PyTree:
  """θ ← pθ + σε with ε ~ N(0, I) drawn per leaf from ``key`` (S&P at every step)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  new = [shrink * p + noise * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
  return jax.tree.unflatten(treedef, new)


def inject(apply_head, frozen: PyTree, new_initial: PyTree):
  """Plasticity injection (Nikishin et al. 2023): ``f(new, x) = head(x; frozen) + head(x; new) −
  head(x; new_initial)``; only ``new`` is trained (the others enter through stop_gradient).

  ``apply_head(params, x) -> output``; ``frozen``: the head at injection; ``new_initial``: a fresh
  head's parameters, which ``new`` starts from, so ``f`` equals the old head at injection.
  """
  frozen, new_initial = jax.lax.stop_gradient(frozen), jax.lax.stop_gradient(new_initial)

  def injected(params_new, x):
    return apply_head(frozen, x) + apply_head(params_new, x) - apply_head(new_initial, x)

  return injected


# ----------------------------------------------------------------------------- diagnostics


def _singular_values(features: jax.Array) -> jax.Array:
  chex.assert_rank(features, 2)
  return jnp.linalg.svd(features.astype(jnp.float32), compute_uv=False)


def effective_rank(features: jax.Array) -> jax.Array:
  """exp(−Σ p_i log p_i), p_i = σ_i / Σσ (Roy & Vetterli 2007), of ``features`` (N, D)."""
  s = _singular_values(features)
  p = s / jnp.maximum(s.sum(), 1e-30)
  return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


def srank(features: jax.Array, delta: float = 0.01) -> jax.Array:
  """min k with Σ_{i≤k} σ_i ≥ (1 − δ) Σ σ_i (Kumar et al. 2021), of ``features`` (N, D)."""
  s = _singular_values(features)  # descending
  cumulative = jnp.cumsum(s)
  return jnp.sum(cumulative < (1 - delta) * cumulative[-1]) + 1
