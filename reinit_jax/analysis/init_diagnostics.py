"""Initialization diagnostics of [HR] (failure modes 1 and 2): the squared activation length per layer.

For a model and an initializer, layer l's statistic on input x under draw d is the *normalized*
squared length ``M_l(x, d) = ||z_l||² / n_l`` ([HR] §2), ``z_l`` the raw output of block l (the
model contract's ``block_outputs``: for the MLP, each layer's post-ReLU activation; the last block
gives the logits) and ``n_l`` its number of entries per example. Normalizing by the width makes
layers of different sizes (and conv layers after downsampling) comparable; multiply by
``widths`` for the raw squared length. Statistics are taken over independent draws of the
initializer and inputs (default N(0, I) inputs, as data are normalized to unit variance).

* Failure mode 1 (FM1): ``log E[M_l]`` changes linearly with depth, i.e. the mean grows or
  shrinks exponentially. Fit ``log E[M_l] = a + b·l`` over the layers before the logits; flagged
  when the trend's end-to-end change ``|b|·(L-1)`` exceeds ``log(fm1_threshold)``. He init
  (variance 2/fan-in) keeps E[M_l] constant in ReLU nets; residual nets need scaled branches.
* Failure mode 2 (FM2, fully connected nets only): the fluctuation of M over draws grows with
  ``β_l = Σ_{j≤l} 1/n_j``. We take ``v_l = E_x Var_d[M_l] / E[M_l]²`` (variance over draws for a
  fixed input, scale-free so FM1 does not leak in); flagged when ``v`` at the last layer before
  the logits exceeds ``fm2_threshold`` and ``log(1 + v_l)`` increases with ``β_l``.

:func:`compare_init` checks a re-initialization's fresh draws against the model's own init, per
parameter leaf (second moment about zero, which is the variance of these zero-mean initializers and
stays meaningful for constant leaves such as norm scales) and per layer (E[M_l]). The known bug of
public re-init code (PyTorch's default kaiming-uniform with a=√5 on a He-normal model: variance
1/(3·fan_in) against 2/fan_in, 6× less) is reproduced by :func:`redraw_kernels`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax.analysis.norms import path_str

DISTRIBUTIONS = ("normal", "uniform", "kaiming_uniform_sqrt5")


def _is_kernel(path) -> bool:
  return path_str(path).split("/")[-1] in ("kernel", "embedding")


def redraw_kernels(key: jax.Array, params: Any, distribution: str = "normal",
                   scale: float = 2.0) -> Any:
  """Redraws every ``kernel`` leaf of ``params`` with another initializer (fan-in = prod(shape[:-1])).

  Args:
    key: PRNG key (folded with the leaf index).
    params: a ``'params'`` collection.
    distribution: 'normal' N(0, scale/fan_in); 'uniform' with the same variance; or
      'kaiming_uniform_sqrt5', PyTorch's default Linear/Conv init: kernels U(-b, b) with
      b = sqrt(6 / ((1 + a²) fan_in)) = 1/sqrt(fan_in) (variance 1/(3 fan_in); ``scale`` ignored)
      and, like PyTorch, biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the kernel's fan-in.
  Returns:
    A pytree like ``params``.
  """
  if distribution not in DISTRIBUTIONS:
    raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
  if not scale > 0:
    raise ValueError(f"scale must be > 0, got {scale!r}")
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  fan_in = {}  # module path -> fan-in of its kernel, for PyTorch's bias bound
  for p, x in flat:
    if _is_kernel(p):
      fan_in[path_str(p).rsplit("/", 1)[0]] = int(np.prod(x.shape[:-1]))
  out = []
  for i, (p, x) in enumerate(flat):
    k = jax.random.fold_in(key, i)
    parent = path_str(p).rsplit("/", 1)[0]
    if _is_kernel(p):
      f = fan_in[parent]
      if distribution == "normal":
        x = math.sqrt(scale / f) * jax.random.normal(k, x.shape, x.dtype)
      else:
        b = 1 / math.sqrt(f) if distribution == "kaiming_uniform_sqrt5" else math.sqrt(3 * scale / f)
        x = jax.random.uniform(k, x.shape, x.dtype, -b, b)
    elif (distribution == "kaiming_uniform_sqrt5" and path_str(p).endswith("bias")
          and parent in fan_in):
      b = 1 / math.sqrt(fan_in[parent])
      x = jax.random.uniform(k, x.shape, x.dtype, -b, b)
    out.append(x)
  return jax.tree_util.tree_unflatten(treedef, out)


def _layer_name(block) -> str:
  return block.names[0] if len(block.names) == 1 else f"{block.names[0]}..{block.names[-1]}"


def _as_variables(v):
  return v if "params" in v else {"params": v}


def squared_lengths(model, key: jax.Array, *, variables_fn: Callable | None = None, x=None,
                    num_inputs: int = 64, num_draws: int = 16, return_moments: bool = False):
  """``M_l(x, d) = ||z_l||² / n_l`` for every block output, input and draw.

  Args:
    model: a :class:`reinit_jax.models.Model`.
    key: PRNG key; draw d uses ``fold_in(key, d)``; inputs use ``fold_in(key, -1 mod 2**31)``.
    variables_fn: ``key -> variables`` (or a bare params collection); default ``model.init``.
    x: (B, *input_shape) inputs; default ``num_inputs`` N(0, I) inputs.
    num_draws: independent draws of the initializer.
  Returns:
    ``(M (draws, B, L) float64 numpy, widths (L,) int, names (L,) str)``, and with
    ``return_moments`` a fourth item ``{param path: E_d[mean(leaf²)]}``.
  """
  if not isinstance(num_draws, int) or num_draws < 2:
    raise ValueError(f"num_draws must be an integer ≥ 2 (variances over draws), got {num_draws!r}")
  variables_fn = variables_fn or model.init
  if x is None:
    if not isinstance(num_inputs, int) or num_inputs < 1:
      raise ValueError(f"num_inputs must be a positive integer, got {num_inputs!r}")
    x = jax.random.normal(jax.random.fold_in(key, 2**31 - 1), (num_inputs, *model.input_shape))
  x = jnp.asarray(x, jnp.float32)
  if tuple(x.shape[1:]) != tuple(model.input_shape):
    raise ValueError(f"x must have shape (B, *{model.input_shape}), got {x.shape}")

  def one_draw(k):
    v = _as_variables(variables_fn(k))
    if len(v) == 1:  # bare params (or params only): borrow the other collections
      v = {**model.init(k), **v}
    outs = model.block_outputs(v, x)
    moments = {path_str(q): jnp.mean(jnp.square(jnp.asarray(p, jnp.float32)))
               for q, p in jax.tree_util.tree_flatten_with_path(v["params"])[0]}
    return [jnp.mean(jnp.square(o.reshape(o.shape[0], -1).astype(jnp.float32)), axis=1)
            for o in outs], moments

  # lax.map, not vmap: one draw's activations in memory at a time, one compilation for all draws.
  keys = jnp.stack([jax.random.fold_in(key, d) for d in range(num_draws)])
  outs, moments = jax.jit(lambda ks: jax.lax.map(one_draw, ks))(keys)
  draws = np.stack([np.asarray(o, np.float64) for o in outs], axis=-1)  # (draws, B, L)
  shapes = jax.eval_shape(lambda: model.block_outputs(model.init(key), x))
  widths = np.asarray([int(np.prod(s.shape[1:])) for s in shapes])
  names = tuple(_layer_name(b) for b in model.blocks)
  if return_moments:  # per leaf, mean over draws of mean(leaf²): one compilation for both
    return draws, widths, names, {k: float(np.mean(v)) for k, v in moments.items()}
  return draws, widths, names


@dataclasses.dataclass
class Diagnosis:
  """Per-layer statistics (arrays of shape (L,)) and the two [HR] failure-mode flags."""

  names: tuple
  widths: np.ndarray
  mean: np.ndarray  # E[M_l] over inputs and draws
  var: np.ndarray  # Var[M_l] over inputs and draws together
  var_draws: np.ndarray  # E_x Var_d[M_l]
  var_inputs: np.ndarray  # E_d Var_x[M_l]
  beta: np.ndarray  # Σ_{j≤l} 1/n_j
  fm1: bool
  fm1_log_change: float  # b·(L-1) of the log-linear fit
  fully_connected: bool
  fm2: bool | None  # None where not applicable (not fully connected)
  fm2_fluctuation: float  # v at the last layer before the logits

  def table(self) -> str:
    """Markdown table of the per-layer statistics and the flags."""
    lines = ["| layer | width | mean M | var M | var over draws | Σ1/width |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for i, n in enumerate(self.names):
      lines.append(f"| {n} | {self.widths[i]} | {self.mean[i]:.4g} | {self.var[i]:.4g} | "
                   f"{self.var_draws[i]:.4g} | {self.beta[i]:.3f} |")
    fm2 = "n/a (not fully connected)" if self.fm2 is None else str(self.fm2)
    lines.append("")
    lines.append(f"FM1 (exponential mean): {self.fm1} (log change along depth "
                 f"{self.fm1_log_change:+.2f}); FM2 (variance grows with Σ1/width): {fm2} "
                 f"(fluctuation {self.fm2_fluctuation:.3g})")
    return "\n".join(lines)


def _fully_connected(model, key) -> bool:
  shapes = jax.eval_shape(model.init, key)["params"]
  flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
  return all(len(s.shape) == 2 for p, s in flat if _is_kernel(p))


def diagnose(model, key: jax.Array, *, variables_fn: Callable | None = None, x=None,
             num_inputs: int = 64, num_draws: int = 16, fm1_threshold: float = 10.0,
             fm2_threshold: float = 1.0) -> Diagnosis:
  """[HR] diagnostics of ``model`` under ``variables_fn`` (default: the model's own init).

  Args:
    fm1_threshold: flag FM1 when the fitted trend of E[M_l] changes by more than this factor
      from the first to the last layer before the logits (default 10×).
    fm2_threshold: flag FM2 when ``E_x Var_d[M] / E[M]²`` exceeds this at the last layer before
      the logits and grows with Σ1/width (default 1: fluctuations as large as the mean).
    Other arguments as :func:`squared_lengths`.
  Returns:
    :class:`Diagnosis`.
  """
  if not fm1_threshold > 1 or not fm2_threshold > 0:
    raise ValueError(f"fm1_threshold must be > 1 and fm2_threshold > 0, got {fm1_threshold!r}, "
                     f"{fm2_threshold!r}")
  m, widths, names = squared_lengths(model, key, variables_fn=variables_fn, x=x,
                                     num_inputs=num_inputs, num_draws=num_draws)
  mean = m.mean(axis=(0, 1))
  var_draws = m.var(axis=0).mean(axis=0)
  beta = np.cumsum(1.0 / widths)
  # The logits are no hidden layer (no ReLU, width = classes): keep them out of the decisions.
  body = len(names) - 1 if (widths[-1] == model.num_classes and len(names) > 2) else len(names)
  depth = np.arange(body, dtype=np.float64)
  log_mean = np.log(np.maximum(mean[:body], 1e-300))
  slope = np.polyfit(depth, log_mean, 1)[0] if body >= 2 else 0.0
  log_change = float(slope * (body - 1))
  fc = _fully_connected(model, key)
  fluct = var_draws[:body] / np.maximum(mean[:body], 1e-300) ** 2
  fm2 = None
  if fc:
    grows = body >= 2 and np.polyfit(beta[:body], np.log1p(fluct), 1)[0] > 0
    fm2 = bool(grows and fluct[-1] > fm2_threshold)
  return Diagnosis(names, widths, mean, m.var(axis=(0, 1)), var_draws, m.var(axis=1).mean(axis=0),
                   beta, bool(abs(log_change) > math.log(fm1_threshold)), log_change, fc, fm2,
                   float(fluct[-1]))


@dataclasses.dataclass
class InitComparison:
  """Fresh draws against the model's own init: ratios fresh/own per leaf and per layer."""

  leaf_ratio: dict  # path -> second-moment ratio
  layer_ratio: dict  # layer name -> ratio of E[M_l]
  flagged_leaves: tuple
  flagged_layers: tuple

  @property
  def flagged(self) -> bool:
    return bool(self.flagged_leaves or self.flagged_layers)

  def table(self) -> str:
    """Markdown listing of every ratio, flagged entries marked."""
    lines = ["| parameter / layer | fresh ÷ own | flagged |", "| --- | ---: | --- |"]
    for d, bad in ((self.leaf_ratio, self.flagged_leaves), (self.layer_ratio, self.flagged_layers)):
      lines += [f"| {k} | {v:.3g} | {'**yes**' if k in bad else ''} |" for k, v in d.items()]
    return "\n".join(lines)


def compare_init(model, fresh_fn: Callable, key: jax.Array, *, tolerance: float = 0.5,
                 num_draws: int = 8, num_inputs: int = 32, x=None) -> InitComparison:
  """Compares a re-initialization's fresh draws with the model's own init ([HR] failure modes 1 and 2).

  Args:
    model: a :class:`reinit_jax.models.Model`.
    fresh_fn: ``key -> variables`` (or bare params) as the re-initialization draws θ_init.
    key: PRNG key; both sides use independent draws.
    tolerance: flag a ratio r outside ``[1/(1+tolerance), 1+tolerance]`` (default 0.5; sampling
      error of these estimates is a few percent). A leaf that is zero in the own init but not in
      the fresh draws has ratio inf and is flagged.
  Returns:
    :class:`InitComparison`.
  """
  if not tolerance > 0:
    raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
  k_own, k_fresh = jax.random.split(key)
  if x is None:
    x = jax.random.normal(jax.random.fold_in(key, 7), (num_inputs, *model.input_shape))
  m_own, _, names, own = squared_lengths(model, k_own, x=x, num_draws=max(num_draws, 2),
                                         return_moments=True)
  m_fresh, _, _, fresh = squared_lengths(model, k_fresh, variables_fn=fresh_fn, x=x,
                                         num_draws=max(num_draws, 2), return_moments=True)
  if set(own) != set(fresh):
    raise ValueError(f"fresh_fn must return the model's parameter structure; differs at "
                     f"{sorted(set(own) ^ set(fresh))[:3]}")
  lo, hi = 1 / (1 + tolerance), 1 + tolerance

  def ratio(a, b):
    return (1.0 if b == 0 else math.inf) if a == 0 else b / a

  leaf = {k: ratio(own[k], fresh[k]) for k in own}
  layer = {n: ratio(a, b) for n, a, b in zip(names, m_own.mean(axis=(0, 1)),
                                              m_fresh.mean(axis=(0, 1)))}
  bad = lambda d: tuple(k for k, r in d.items() if not lo <= r <= hi)
  return InitComparison(leaf, layer, bad(leaf), bad(layer))
