"""The small CNN of [LW] §3: four 3×3 convs, a hidden dense layer, a classifier. K = 4.

conv32 → conv32 + max-pool → conv64 → conv64 + max-pool (each conv → norm → ReLU), flatten,
dense 512 → norm → ReLU → dropout, classifier. LayerNorm (GroupNorm with one group) by default,
as in [LW]. Every conv is a block; the head is the hidden dense layer plus the classifier
([LW]'s "FC").
"""

from __future__ import annotations

import flax.linen as nn

from reinit_jax.models.base import Block, LayerwiseNorm
from reinit_jax.models.layers import max_pool_2x2, ConvNorm, DenseHead, Options, classifier

CHANNELS = (32, 32, 64, 64)
POOL_AFTER = (False, True, False, True)
HIDDEN = 512


class SCNN(nn.Module):
  """Top-level submodules ``conv1..conv4`` (blocks), ``fc1`` and ``classifier`` (head).

  Shapes: x (B, H, W, C) → logits (B, num_classes) float32. The layer-wise norm of block i is
  applied after its max-pool, i.e. to exactly what the next block receives.
  """

  opts: Options
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.astype(self.opts.dtype)
    for i, (channels, pool) in enumerate(zip(CHANNELS, POOL_AFTER), start=1):
      x = ConvNorm(self.opts, self.opts.ch(channels), name=f"conv{i}")(x, train)
      if pool:
        x = max_pool_2x2(self.opts, x)
      x = LayerwiseNorm(name=f"lwnorm{i}")(x)
    x = x.reshape((x.shape[0], -1))
    x = DenseHead(self.opts, self.opts.ch(HIDDEN), name="fc1")(x, train)
    return classifier(self.opts, self.num_classes, x)


def declare():
  """Blocks (one per conv, K = 4) and head (fc1, classifier) of :class:`SCNN`."""
  blocks = tuple(Block((f"conv{i}",), f"lwnorm{i}") for i in range(1, len(CHANNELS) + 1))
  return blocks, ("fc1", "classifier")


__all__ = ["SCNN", "declare"]
