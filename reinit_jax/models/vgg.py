"""VGG16 of [LW] §3: 13 3×3 convs, one block each (K = 13), LayerNorm by default.

Convs 64, 64 | 128, 128 | 256 ×3 | 512 ×3 | 512 ×3, a 2×2 max-pool closing each group of the five.
The head is not fixed by [LW]; this one (a documented choice) mirrors scnn's: global average pool →
dense 512 → norm → ReLU → dropout → classifier. Global pooling keeps the head's size independent of
the input (224×224 by default, 32×32 works too) instead of the 25,088×4,096 dense of the original.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from reinit_jax.models.base import Block, LayerwiseNorm
from reinit_jax.models.layers import max_pool_2x2, ConvNorm, DenseHead, Options, classifier

CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
POOL_AFTER = (2, 4, 7, 10, 13)
HIDDEN = 512


class VGG16(nn.Module):
  """Top-level ``conv1..conv13`` (blocks), ``fc1`` and ``classifier`` (head).

  Shapes: x (B, H, W, C) → logits (B, num_classes) float32. A block's layer-wise norm follows its
  max-pool, if it has one.
  """

  opts: Options
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    o = self.opts
    x = x.astype(o.dtype)
    for i, channels in enumerate(CHANNELS, start=1):
      x = ConvNorm(o, o.ch(channels), name=f"conv{i}")(x, train)
      if i in POOL_AFTER:
        x = max_pool_2x2(o, x)
      x = LayerwiseNorm(name=f"lwnorm{i}")(x)
    x = jnp.mean(x, axis=(1, 2))
    x = DenseHead(o, o.ch(HIDDEN), name="fc1")(x, train)
    return classifier(o, self.num_classes, x)


def declare():
  """One block per conv (K = 13); head (fc1, classifier)."""
  blocks = tuple(Block((f"conv{i}",), f"lwnorm{i}") for i in range(1, len(CHANNELS) + 1))
  return blocks, ("fc1", "classifier")
