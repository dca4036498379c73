"""The contract every model honours: ordered blocks, a head, and layer-wise normalizations.

A model is a Flax linen module wrapped in :class:`Model`, which declares the ordered partition of its
top-level submodules into blocks ([LW] §3, layer-wise re-initialization) and the head (the layers
after the last block, [LW] "FC"). Methods in :mod:`reinit_jax.methods` work from this declaration
alone, so no method has per-model code.

Conventions every module follows:

* ``__call__(x, train: bool) -> logits``; ``x`` is ``(batch, *input_shape)``, logits
  ``(batch, num_classes)`` in float32.
* Top-level submodule names are the units of the block declaration (a parameter's path is
  ``'/'.join(keys)``; its first key is the top-level name).
* After finest block ``i`` (1-based) the module calls ``LayerwiseNorm(name=f'lwnorm{i}')``, the
  parameter-free ``z -> (z - mu) / sigma`` of [LW] whose ``(mu, sigma)`` live in the
  ``'layerwise_norm'`` variable collection (identity until set; checkpointed with the model).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

LAYERWISE_NORM = "layerwise_norm"
INITIALIZERS = ("he_normal", "he_uniform", "xavier_uniform")
NORMALIZATIONS = ("batch", "layer", "none")


class Block(NamedTuple):
  """One block of the layer-wise partition: its top-level submodules and the norm after it."""

  names: tuple[str, ...]
  norm: str  # name of the LayerwiseNorm module applied to this block's output


class LayerwiseNorm(nn.Module):
  """``z -> (z - mu) / sigma`` with scalar, non-trainable ``mu``/``sigma`` ([LW] §3).

  Identity until :func:`reinit_jax.events.measure_normalization` sets it. The raw input is sown
  into ``'intermediates'`` so the measuring pass can read block outputs without a second model.
  Shapes: any ``z``; returns ``z``'s shape and dtype.
  """

  @nn.compact
  def __call__(self, z):
    mu = self.variable(LAYERWISE_NORM, "mu", lambda: jnp.zeros((), jnp.float32))
    sigma = self.variable(LAYERWISE_NORM, "sigma", lambda: jnp.ones((), jnp.float32))
    self.sow("intermediates", "raw", z)
    return ((z - mu.value) / sigma.value).astype(z.dtype)


def kernel_init(name: str) -> Callable:
  """The model's own weight initializer ([LW] §3: He normal or Xavier uniform; He uniform as the
  continual-learning code of Dohare et al. 2024 draws its units, U(±√2·√(3/fan_in))).

  ``init(key, shape (..., C_in, C_out), dtype) -> (..., C_in, C_out)``: bit for bit the values of
  flax's ``variance_scaling(2, 'fan_in', 'normal')``, ``variance_scaling(2, 'fan_in', 'uniform')``
  and ``xavier_uniform()`` (tested), drawn flat.
  Why flat: XLA:CPU compiles the random bits of a 4-D conv kernel in about 5 s and of the same
  bits in 1-D in 0.2 s (bench/README.md, "Narrow convolutions and kernel draws"), and every event
  draws a fresh θ_init.
  Threefry's bits depend on the flattened index only, so the draw is the same.
  """
  if name not in INITIALIZERS:
    raise ValueError(f"initializer must be one of {INITIALIZERS}, got {name!r}")

  def init(key, shape, dtype=jnp.float32):
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
      raise ValueError(f"{name} needs a (..., C_in, C_out) kernel shape, got {shape}")
    n = math.prod(shape)
    receptive = n / shape[-2] / shape[-1]  # jax's _compute_fans, float arithmetic kept
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    if name.startswith("he_"):  # fan-in: variance exactly 2/fan_in, the [HR] condition
      variance = jnp.array(2.0 / fan_in, dtype=dtype)
    else:
      variance = jnp.array(1.0 / ((fan_in + fan_out) / 2), dtype=dtype)
    if name == "he_normal":  # normal, not truncated
      return jax.random.normal(key, (n,), dtype).reshape(shape) * jnp.sqrt(variance)
    # Uniform on ±√(3·variance): no erf⁻¹, half a normal draw's time on XLA:CPU.
    return jax.random.uniform(key, (n,), dtype, -1).reshape(shape) * jnp.sqrt(3 * variance)

  return init


def norm_layer(kind: str, name: str | None = None, train: bool = False, dtype=jnp.float32):
  """BatchNorm, LayerNorm (= GroupNorm with one group, as [LW]) or identity, by ``kind``."""
  if kind == "batch":
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                        name=name)
  if kind == "layer":
    return nn.GroupNorm(num_groups=1, epsilon=1e-5, dtype=dtype, name=name)
  if kind == "none":
    return lambda x: x
  raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {kind!r}")


def group_blocks(blocks: Sequence[Block], num_blocks: int | None) -> tuple[Block, ...]:
  """Merges the finest declared blocks into ``num_blocks`` contiguous groups, as evenly as possible.

  [Z] partitions ResNet-18 into K ∈ {2, 5} blocks; a model declares its finest partition and a
  coarser K merges neighbours (earlier groups take the remainder). A merged group's normalization is
  the one after its last finest block.
  """
  blocks = tuple(blocks)
  if num_blocks is None or num_blocks == len(blocks):
    return blocks
  if not isinstance(num_blocks, int) or not 1 <= num_blocks <= len(blocks):
    raise ValueError(f"num_blocks must be an integer in [1, {len(blocks)}], got {num_blocks!r}")
  size, extra = divmod(len(blocks), num_blocks)
  out, start = [], 0
  for g in range(num_blocks):
    stop = start + size + (1 if g < extra else 0)
    members = blocks[start:stop]
    out.append(Block(tuple(n for b in members for n in b.names), members[-1].norm))
    start = stop
  return tuple(out)


def layer_chain(blocks, params) -> tuple:
  """The layers of a model (its ``blocks``) that is a chain of dense layers, one per block,
  covering every parameter (the ``mlp``), as parameter paths: a unit of block i is an output of
  its layer and an input of block i + 1's (the unit-level methods' chain). ``params`` may hold
  shapes (``jax.eval_shape``)."""
  names = [b.names[0] for b in blocks if len(b.names) == 1]
  dense = all(set(params.get(n, {})) <= {"kernel", "bias"} and len(params[n]["kernel"].shape) == 2
              for n in names if "kernel" in params.get(n, {}))
  if len(names) < 2 or len(names) != len(blocks) or set(names) != set(params) or not dense:
    raise ValueError("a unit-level method needs a model that is a chain of dense layers, one per "
                     "block (model 'mlp', model.num_blocks=None)")
  return tuple((n,) for n in names)


@dataclasses.dataclass(frozen=True)
class Model:
  """A Flax module with its block declaration.

  Attributes:
    name: registry name.
    module: the linen module; ``module.apply(variables, x, train=...)`` gives ``(B, num_classes)``.
    input_shape: one example's shape, e.g. ``(28, 28, 1)`` or ``(128,)``.
    num_classes: number of logits.
    blocks: ordered blocks (after grouping to ``num_blocks``), K = ``len(blocks)``.
    head: top-level names re-initialized by the ``head`` method (may overlap the last block, as
      in the MLP where every layer is a block).
    options: the options it was created with (normalization, initializer, dropout, ...).
  """

  name: str
  module: nn.Module
  input_shape: tuple[int, ...]
  num_classes: int
  blocks: tuple[Block, ...]
  head: tuple[str, ...]
  options: dict = dataclasses.field(default_factory=dict)

  def init(self, key: jax.Array) -> dict[str, Any]:
    """Draws all variables (params, batch_stats, layerwise_norm) from the model's own init.

    Pure in ``key``; returns a dict of collections. Use it for θ_1 and for every fresh θ_init.
    """
    x = jnp.zeros((1, *self.input_shape), jnp.float32)
    params_key, dropout_key = jax.random.split(key)
    variables = self.module.init({"params": params_key, "dropout": dropout_key}, x, train=False)
    return dict(variables)

  def apply(self, variables, x, *, train: bool = False, rngs=None, mutable=False):
    """``module.apply`` with the collections a training step needs mutable."""
    return self.module.apply(variables, x, train=train, rngs=rngs, mutable=mutable)

  def block_outputs(self, variables, x) -> list[jax.Array]:
    """Raw (pre-normalization) output of every block on ``x`` in eval mode, in block order."""
    _, state = self.module.apply(variables, x, train=False, mutable=["intermediates"])
    inter = state["intermediates"]
    return [inter[b.norm]["raw"][0] for b in self.blocks]

  @property
  def num_blocks(self) -> int:
    return len(self.blocks)
