"""MobileNetV1 [LW] (K = 7) and MobileNetV2 with the CIFAR stride adaptation [Z].

MobileNetV1 (Howard et al. 2017): a 3×3 stride-2 stem conv (32) and 13 depthwise-separable layers
(3×3 depthwise → norm → ReLU, 1×1 pointwise → norm → ReLU). [LW] uses K = 7; the grouping here (a
documented choice) pairs the 14 layers in order, two per block:

    block 1: stem, ds1      block 2: ds2, ds3      block 3: ds4, ds5      block 4: ds6, ds7
    block 5: ds8, ds9       block 6: ds10, ds11    block 7: ds12, ds13

MobileNetV2 (Sandler et al. 2018) for 32×32 inputs: stem stride 1 instead of 2 and the second
stage's stride 1 instead of 2 (the usual CIFAR adaptation), so the last feature map is 4×4. Finest
blocks are its 7 bottleneck stages, the stem merged into stage 1 and the final 1×1 conv (1280) into
stage 7; [Z]'s K ∈ {2, 5} merge them with ``num_blocks``. Both heads: global average pool →
dropout → classifier.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from reinit_jax.models.base import Block, LayerwiseNorm
from reinit_jax.models.layers import ConvNorm, Options, classifier

# (pointwise channels, depthwise stride) of the 13 separable layers.
V1_LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
             (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
# (expansion t, channels c, repeats n, stride s) with the CIFAR strides (stage 2: 1, not 2).
V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1))


class DepthwiseSeparable(nn.Module):
  """3×3 depthwise (stride s) → norm → ReLU → 1×1 pointwise → norm → ReLU; ``dw`` and ``pw``.

  Shapes: (B, H, W, C) → (B, H/s, W/s, features).
  """

  opts: Options
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    x = ConvNorm(self.opts, c, 3, self.stride, groups=c, name="dw")(x, train)
    return ConvNorm(self.opts, self.features, 1, name="pw")(x, train)


class MobileNetV1(nn.Module):
  """Top-level ``stem``, ``ds1..ds13``, ``classifier``; lwnorm{k} after ds{2k-1}.

  Shapes: x (B, H, W, C) → logits (B, num_classes) float32.
  """

  opts: Options
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    o = self.opts
    x = ConvNorm(o, o.ch(32), 3, 2, name="stem")(x.astype(o.dtype), train)
    for i, (features, stride) in enumerate(V1_LAYERS, start=1):
      x = DepthwiseSeparable(o, o.ch(features), stride, name=f"ds{i}")(x, train)
      if i % 2 == 1:
        x = LayerwiseNorm(name=f"lwnorm{(i + 1) // 2}")(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(o.dropout, deterministic=not train)(x)
    return classifier(o, self.num_classes, x)


def declare_v1():
  """Seven blocks: (stem, ds1), (ds2, ds3), ..., (ds12, ds13); head (classifier)."""
  blocks = [Block(("stem", "ds1"), "lwnorm1")]
  blocks += [Block((f"ds{2 * k - 2}", f"ds{2 * k - 1}"), f"lwnorm{k}") for k in range(2, 8)]
  return tuple(blocks), ("classifier",)


class InvertedResidual(nn.Module):
  """1×1 expand (t·C, ReLU6; absent when t = 1) → 3×3 depthwise (ReLU6) → 1×1 project (linear).

  The identity shortcut is added when stride is 1 and channels match. Shapes: (B, H, W, C) →
  (B, H/s, W/s, features).
  """

  opts: Options
  features: int
  expansion: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    hidden = c * self.expansion
    y = x
    if self.expansion != 1:
      y = ConvNorm(self.opts, hidden, 1, act="relu6", name="expand")(y, train)
    y = ConvNorm(self.opts, hidden, 3, self.stride, groups=hidden, act="relu6", name="dw")(y, train)
    y = ConvNorm(self.opts, self.features, 1, act="none", name="project")(y, train)
    return x + y if self.stride == 1 and c == self.features else y


class V2Stage(nn.Module):
  """``repeats`` inverted residuals named ``block1..``; the first carries the stride."""

  opts: Options
  features: int
  expansion: int
  repeats: int
  stride: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    for j in range(self.repeats):
      x = InvertedResidual(self.opts, self.features, self.expansion, self.stride if j == 0 else 1,
                           name=f"block{j + 1}")(x, train)
    return x


class MobileNetV2(nn.Module):
  """Top-level ``stem``, ``stage1..stage7``, ``conv_last``, ``classifier``.

  Shapes: x (B, H, W, C) → logits (B, num_classes) float32.
  """

  opts: Options
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    o = self.opts
    x = ConvNorm(o, o.ch(32), 3, 1, act="relu6", name="stem")(x.astype(o.dtype), train)
    for i, (t, c, n, s) in enumerate(V2_STAGES, start=1):
      x = V2Stage(o, o.ch(c), t, n, s, name=f"stage{i}")(x, train)
      if i == len(V2_STAGES):
        x = ConvNorm(o, o.ch(1280), 1, act="relu6", name="conv_last")(x, train)
      x = LayerwiseNorm(name=f"lwnorm{i}")(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(o.dropout, deterministic=not train)(x)
    return classifier(o, self.num_classes, x)


def declare_v2():
  """Seven blocks: (stem, stage1), stage2..stage6, (stage7, conv_last); head (classifier)."""
  blocks = [Block(("stem", "stage1"), "lwnorm1")]
  blocks += [Block((f"stage{i}",), f"lwnorm{i}") for i in range(2, 7)]
  blocks.append(Block(("stage7", "conv_last"), "lwnorm7"))
  return tuple(blocks), ("classifier",)
