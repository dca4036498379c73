"""PyTorch twins of reinit_jax's scnn and CIFAR ResNet-18, for bench_step_vs_torch.py only.

Same layer shapes as reinit_jax/models/scnn.py and resnet.py (channels × width, 3×3 SAME convs,
LayerNorm = GroupNorm with one group for scnn, BatchNorm and bias-free convs for ResNet-18, a 1×1
projection + norm on shape-changing shortcuts). Weights are PyTorch's default init: the benchmark
times a step, it does not compare trained values.
"""

from __future__ import annotations

import torch
from torch import nn


def ch(c: int, width: float) -> int:
  """Channels after the width multiplier, as ``Options.ch``."""
  return max(1, int(round(c * width)))


class SCNN(nn.Module):
  """conv32, conv32+pool, conv64, conv64+pool (conv → GroupNorm(1) → ReLU), dense 512 → LN → ReLU."""

  def __init__(self, num_classes=10, width=1.0, in_ch=3, image=32):
    super().__init__()
    chans = [ch(c, width) for c in (32, 32, 64, 64)]
    layers, prev = [], in_ch
    for i, c in enumerate(chans):
      layers += [nn.Conv2d(prev, c, 3, padding=1), nn.GroupNorm(1, c), nn.ReLU()]
      if i in (1, 3):
        layers.append(nn.MaxPool2d(2))
      prev = c
    self.features = nn.Sequential(*layers)
    hidden = ch(512, width)
    self.fc1 = nn.Sequential(nn.Linear(prev * (image // 4) ** 2, hidden), nn.LayerNorm(hidden),
                             nn.ReLU())
    self.classifier = nn.Linear(hidden, num_classes)

  def forward(self, x):
    return self.classifier(self.fc1(torch.flatten(self.features(x), 1)))


class BasicBlock(nn.Module):
  """relu(bn(conv(relu(bn(conv x)))) + shortcut(x)), 1×1 conv + BN shortcut on a shape change."""

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.proj = None
    if stride != 1 or cin != cout:
      self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return torch.relu(y + (x if self.proj is None else self.proj(x)))


class ResNet18(nn.Module):
  """CIFAR ResNet-18: 3×3 stem, no max-pool, stages (64,1) (128,2) (256,2) (512,2) × 2 blocks."""

  def __init__(self, num_classes=10, width=1.0, in_ch=3):
    super().__init__()
    c0 = ch(64, width)
    self.stem = nn.Sequential(nn.Conv2d(in_ch, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0),
                              nn.ReLU())
    blocks, prev = [], c0
    for c, s in ((64, 1), (128, 2), (256, 2), (512, 2)):
      c = ch(c, width)
      blocks += [BasicBlock(prev, c, s), BasicBlock(c, c, 1)]
      prev = c
    self.layers = nn.Sequential(*blocks)
    self.classifier = nn.Linear(prev, num_classes)

  def forward(self, x):
    return self.classifier(self.layers(self.stem(x)).mean((2, 3)))


def make(name: str, width: float, num_classes=10):
  if name == "scnn":
    return SCNN(num_classes, width)
  if name == "resnet18":
    return ResNet18(num_classes, width)
  raise ValueError(f"no torch twin for {name!r}")
