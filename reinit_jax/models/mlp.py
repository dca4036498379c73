"""The MLP of the synthetic task ([LW] §1.1): 128 → 32 → 32 → 8, ReLU, every layer a block."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from reinit_jax.models.base import Block, LayerwiseNorm, kernel_init


class MLP(nn.Module):
  """Dense layers ``dense1..denseL`` (the last one gives the logits), each followed by its norm.

  Shapes: ``x`` (B, D) → logits (B, num_classes). Every layer is a block, so the last block is also
  the head ([LW] §1.1: K = 3 for 128-32-32-8).
  """

  widths: Sequence[int] = (32, 32)
  num_classes: int = 8
  initializer: str = "he_normal"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape((x.shape[0], -1)).astype(jnp.float32)
    sizes = (*self.widths, self.num_classes)
    for i, width in enumerate(sizes, start=1):
      x = nn.Dense(width, kernel_init=kernel_init(self.initializer), name=f"dense{i}")(x)
      if i < len(sizes):
        x = nn.relu(x)
        if self.dropout:
          x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = LayerwiseNorm(name=f"lwnorm{i}")(x)
    return x


def declare(widths: Sequence[int]):
  """Blocks (every layer) and head (the last layer) of an MLP with these hidden widths."""
  n = len(widths) + 1
  blocks = tuple(Block((f"dense{i}",), f"lwnorm{i}") for i in range(1, n + 1))
  return blocks, (f"dense{n}",)
