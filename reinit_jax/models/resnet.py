"""ResNet-18 and PreAct-ResNet-18 with CIFAR stems [Z], and ResNet-50 [LW] §3.

* ``ResNet18`` / ``PreActResNet18``: 3×3 stem conv, no max-pool, four stages of two basic blocks
  (64, 128, 256, 512 channels; strides 1, 2, 2, 2), global average pool, dropout, classifier. Finest
  blocks [stem, layer1, layer2, layer3, layer4] (K = 5); [Z]'s K = 2 merges them with
  ``num_blocks=2``. Head: the classifier.
* ``ResNet50``: ImageNet stem (7×7 stride-2 conv, 3×3 stride-2 max-pool), 16 bottleneck blocks
  (3, 4, 6, 3; stride in the 3×3 conv, "v1.5"), one block each with the stem merged into block 1
  (K = 16, [LW]). SAME padding throughout, so it also runs on 32×32 or smaller inputs.

Layer-wise norms sit after each finest block's output (after the residual addition).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from reinit_jax.models.base import Block, LayerwiseNorm
from reinit_jax.models.layers import ConvNorm, Options, classifier, conv, norm

STAGES18 = ((64, 1), (128, 2), (256, 2), (512, 2))
STAGES50 = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


class BasicBlock(nn.Module):
  """Post-activation basic block: relu(norm(conv(relu(norm(conv x)))) + shortcut(x)).

  Shapes: (B, H, W, C) → (B, H/s, W/s, features). A 1×1 conv + norm projects the shortcut when the
  shape changes.
  """

  opts: Options
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    o = self.opts
    y = conv(o, self.features, 3, self.stride, name="conv1")(x)
    y = nn.relu(norm(o, train, "norm1")(y))
    y = conv(o, self.features, 3, name="conv2")(y)
    y = norm(o, train, "norm2")(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = conv(o, self.features, 1, self.stride, name="proj_conv")(x)
      x = norm(o, train, "proj_norm")(x)
    return nn.relu(y + x)


class PreActBlock(nn.Module):
  """Pre-activation basic block (He et al. 2016): conv(relu(norm(conv(relu(norm x))))) + shortcut.

  Shapes: (B, H, W, C) → (B, H/s, W/s, features). The projection (1×1 conv, no norm) reads the
  pre-activated input, as in the reference CIFAR implementations.
  """

  opts: Options
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    o = self.opts
    h = nn.relu(norm(o, train, "norm1")(x))
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = conv(o, self.features, 1, self.stride, name="proj_conv")(h)
    y = conv(o, self.features, 3, self.stride, name="conv1")(h)
    y = nn.relu(norm(o, train, "norm2")(y))
    y = conv(o, self.features, 3, name="conv2")(y)
    return y + shortcut


class Stage(nn.Module):
  """``depth`` residual blocks named ``block1..``; the first one carries the stride."""

  opts: Options
  features: int
  stride: int
  depth: int = 2
  preact: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    cls = PreActBlock if self.preact else BasicBlock
    for j in range(self.depth):
      stride = self.stride if j == 0 else 1
      x = cls(self.opts, self.features, stride, name=f"block{j + 1}")(x, train)
    return x


class ResNet18(nn.Module):
  """CIFAR ResNet-18 (or PreAct-ResNet-18 with ``preact=True``) [Z].

  Top-level submodules: ``stem``, ``layer1..layer4``, (preact only) ``post_norm``, ``classifier``.
  Shapes: x (B, H, W, C) → logits (B, num_classes) float32. In the pre-activation net the final
  norm + ReLU (``post_norm``) belongs to block 5, so lwnorm5 normalizes what the head receives.
  """

  opts: Options
  num_classes: int
  preact: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    o = self.opts
    x = x.astype(o.dtype)
    if self.preact:
      x = conv(o, o.ch(64), 3, name="stem")(x)
    else:
      x = ConvNorm(o, o.ch(64), name="stem")(x, train)
    x = LayerwiseNorm(name="lwnorm1")(x)
    for i, (features, stride) in enumerate(STAGES18, start=1):
      x = Stage(o, o.ch(features), stride, preact=self.preact, name=f"layer{i}")(x, train)
      if self.preact and i == len(STAGES18):
        x = nn.relu(norm(o, train, "post_norm")(x))
      x = LayerwiseNorm(name=f"lwnorm{i + 1}")(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(o.dropout, deterministic=not train)(x)
    return classifier(o, self.num_classes, x)


def declare18(preact: bool = False):
  """Finest blocks [stem, layer1..layer4] (K = 5; post_norm joins layer4) and head (classifier)."""
  blocks = [Block(("stem",), "lwnorm1")]
  for i in range(1, 5):
    names = (f"layer{i}", "post_norm") if preact and i == 4 else (f"layer{i}",)
    blocks.append(Block(names, f"lwnorm{i + 1}"))
  return tuple(blocks), ("classifier",)


class Bottleneck(nn.Module):
  """ResNet-50 bottleneck: 1×1 (c) → 3×3 (c, stride) → 1×1 (4c), norm after each, ReLU after add.

  Shapes: (B, H, W, C) → (B, H/s, W/s, 4·features).
  """

  opts: Options
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    o = self.opts
    out = 4 * self.features
    y = ConvNorm(o, self.features, 1, name="reduce")(x, train)
    y = ConvNorm(o, self.features, 3, self.stride, name="spatial")(y, train)
    y = ConvNorm(o, out, 1, act="none", name="expand")(y, train)
    if self.stride != 1 or x.shape[-1] != out:
      x = ConvNorm(o, out, 1, self.stride, act="none", name="proj")(x, train)
    return nn.relu(y + x)


class ImageNetStem(nn.Module):
  """7×7 stride-2 conv → norm → ReLU → 3×3 stride-2 max-pool: (B, H, W, C) → (B, H/4, W/4, 64·w)."""

  opts: Options

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = ConvNorm(self.opts, self.opts.ch(64), 7, 2, name="conv")(x, train)
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")


class ResNet50(nn.Module):
  """ResNet-50 [LW]: top-level ``stem``, ``block1..block16``, ``classifier``.

  Shapes: x (B, H, W, C) → logits (B, num_classes) float32 (any H, W ≥ 1: SAME padding).
  """

  opts: Options
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    o = self.opts
    x = ImageNetStem(o, name="stem")(x.astype(o.dtype), train)
    i = 0
    for features, depth, stride in STAGES50:
      for j in range(depth):
        i += 1
        x = Bottleneck(o, o.ch(features), stride if j == 0 else 1, name=f"block{i}")(x, train)
        x = LayerwiseNorm(name=f"lwnorm{i}")(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(o.dropout, deterministic=not train)(x)
    return classifier(o, self.num_classes, x)


def declare50():
  """One block per bottleneck (K = 16), the stem merged into block 1; head (classifier)."""
  n = sum(depth for _, depth, _ in STAGES50)
  blocks = [Block(("stem", "block1"), "lwnorm1")]
  blocks += [Block((f"block{i}",), f"lwnorm{i}") for i in range(2, n + 1)]
  return tuple(blocks), ("classifier",)
