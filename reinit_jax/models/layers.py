"""Shared pieces of the CNNs: option parsing, the conv implementation switch, conv → norm → ReLU.

Every CNN in this package takes the same options ([Z], [LW] §3): ``normalization``, ``initializer``,
``dropout``, ``input_shape``, ``width`` (channel multiplier), ``dtype`` (compute dtype;
parameters stay float32) and ``conv_impl``. :func:`parse_options` validates them once, so a bad
value fails at ``models.create`` with one line naming the option.

``conv_impl`` exists for speed on CPU only (issue 6, bench/README.md, "Train step vs PyTorch"):
inside a while loop (the engine's ``lax.scan`` over steps) XLA:CPU leaves the backward convolutions
in a generic, 7-25x slower form. 'im2col' (what 'auto' picks on the CPU backend,
``reinit_jax.backends.choices``) is :func:`im2col_conv`, kept with the rest of the CPU-only code in
reinit_jax/backends/cpu_conv.py. It is plugged into ``nn.Conv`` through its ``conv_general_dilated``
hook, so parameter names, shapes and initial values are those of ``nn.Conv`` whichever
implementation runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from reinit_jax import backends
from reinit_jax.backends.cpu_conv import im2col_conv  # the hook of conv_impl='im2col'
from reinit_jax.models.base import INITIALIZERS, NORMALIZATIONS, kernel_init, norm_layer

CONV_IMPLS = ("auto", "xla", "im2col")
DTYPES = ("float32", "bfloat16", "float16")
COMMON_OPTIONS = ("normalization", "initializer", "dropout", "input_shape", "width", "dtype",
                  "conv_impl")


@dataclasses.dataclass(frozen=True)
class Options:
  """Validated options shared by the CNN modules (hashable, so it can be a linen attribute).

  ``conv_impl`` here is already resolved to 'xla' or 'im2col'; ``dtype`` is a jnp dtype.
  """

  normalization: str = "batch"
  initializer: str = "he_normal"
  dropout: float = 0.0
  width: float = 1.0
  dtype: Any = jnp.float32
  conv_impl: str = "xla"

  def ch(self, channels: int) -> int:
    """Channels after the width multiplier (at least 1)."""
    return max(1, int(round(channels * self.width)))


def resolve_conv_impl(conv_impl: str) -> str:
  """'auto' → the backend's choice (``backends.choices``): 'im2col' on the CPU backend only, 'xla'
  elsewhere (never slows the accelerator)."""
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}")
  if conv_impl == "auto":
    return backends.choices().conv_impl
  return conv_impl


def _parse_dtype(dtype):
  if isinstance(dtype, str):
    if dtype not in DTYPES:
      raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return jnp.dtype(dtype)
  try:
    parsed = jnp.dtype(dtype)
  except TypeError:
    raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}") from None
  if parsed.name not in DTYPES:
    raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
  return parsed


def parse_options(model: str, options: dict, *, normalization: str, input_shape: Sequence[int],
                  allowed_channels: Sequence[int] = (1, 3), extra: Sequence[str] = ()):
  """Validates a CNN's options; returns ``(Options, input_shape, recorded options dict)``.

  ``normalization`` and ``input_shape`` are the model's defaults (BatchNorm for [Z]'s
  models, LayerNorm for [LW]'s). Raises a one-line ValueError naming the bad option and its
  allowed values.
  """
  unknown = sorted(set(options) - set(COMMON_OPTIONS) - set(extra))
  if unknown:
    raise ValueError(f"options for model {model!r} must be among {COMMON_OPTIONS + tuple(extra)}, "
                     f"got {unknown[0]!r}")
  norm = options.get("normalization", normalization)
  if norm not in NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {norm!r}")
  init = options.get("initializer", "he_normal")
  if init not in INITIALIZERS:
    raise ValueError(f"initializer must be one of {INITIALIZERS}, got {init!r}")
  dropout = options.get("dropout", 0.0)
  if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
    raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
  width = options.get("width", 1.0)
  if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
    raise ValueError(f"width must be a positive number, got {width!r}")
  shape = options.get("input_shape", input_shape)
  ok = (isinstance(shape, (tuple, list)) and len(shape) == 3
        and all(isinstance(s, int) and s > 0 for s in shape) and shape[2] in allowed_channels)
  if not ok:
    raise ValueError(f"input_shape must be (height, width, channels) with channels in "
                     f"{tuple(allowed_channels)}, got {shape!r}")
  dtype = _parse_dtype(options.get("dtype", "float32"))
  conv_impl = options.get("conv_impl", "auto")
  opts = Options(normalization=norm, initializer=init, dropout=float(dropout), width=float(width),
                 dtype=dtype, conv_impl=resolve_conv_impl(conv_impl))
  record = dict(normalization=norm, initializer=init, dropout=float(dropout), width=float(width),
                dtype=dtype.name, conv_impl=conv_impl, input_shape=tuple(shape))
  return opts, tuple(shape), record


def conv(opts: Options, features: int, kernel: int, stride: int = 1, *, groups: int = 1,
         use_bias: bool | None = None, name: str | None = None) -> nn.Conv:
  """An ``nn.Conv`` (SAME padding) with the model's initializer, compute dtype and conv_impl.

  ``use_bias`` defaults to ``normalization != 'batch'``: BatchNorm's per-channel offset makes a conv
  bias redundant; LayerNorm (one group) does not, and Keras convs (the [LW] models) carry one.
  """
  if use_bias is None:
    use_bias = opts.normalization != "batch"
  hook = im2col_conv if opts.conv_impl == "im2col" else None
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME",
                 feature_group_count=groups, use_bias=use_bias,
                 kernel_init=kernel_init(opts.initializer), dtype=opts.dtype,
                 param_dtype=jnp.float32, conv_general_dilated=hook, name=name)


def max_pool_2x2(opts: Options, x):
  """2×2 max-pool, stride 2, SAME padding: (B, H, W, C) → (B, ceil(H/2), ceil(W/2), C).

  On the CPU path (``conv_impl='im2col'``) with even H, W it is a max over a reshape: XLA:CPU's
  gradient of ``reduce_window`` (select-and-scatter, expanded with four index arrays) cost about
  9 ms of scnn's 65 ms step at batch 16, the reshape's about 2 ms. The values are identical; the
  gradient differs only where two window entries tie exactly (jnp.max shares it among them), which
  after a ReLU means zeros, whose gradient the ReLU discards.
  """
  b, h, w, c = x.shape
  if opts.conv_impl == "im2col" and h % 2 == 0 and w % 2 == 0:
    return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")


def dense(opts: Options, features: int, name: str | None = None, dtype=None) -> nn.Dense:
  """An ``nn.Dense`` with the model's initializer; float32 params, compute in ``dtype``."""
  return nn.Dense(features, kernel_init=kernel_init(opts.initializer),
                  dtype=opts.dtype if dtype is None else dtype, param_dtype=jnp.float32, name=name)


def norm(opts: Options, train: bool, name: str | None = "norm"):
  """The model's normalization (base.norm_layer) in its compute dtype."""
  return norm_layer(opts.normalization, name=name, train=train, dtype=opts.dtype)


def activation(kind: str, x):
  """ReLU, ReLU6 (MobileNetV2) or identity."""
  if kind == "relu":
    return nn.relu(x)
  if kind == "relu6":
    return nn.relu6(x)
  return x


class ConvNorm(nn.Module):
  """conv k×k (stride s) → norm → activation ('relu' | 'relu6' | 'none').

  Submodules ``conv`` and ``norm``.

  Shapes: (B, H, W, C) → (B, ceil(H/s), ceil(W/s), features).
  """

  opts: Options
  features: int
  kernel: int = 3
  stride: int = 1
  groups: int = 1
  act: str = "relu"

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = conv(self.opts, self.features, self.kernel, self.stride, groups=self.groups, name="conv")(x)
    return activation(self.act, norm(self.opts, train)(x))


class DenseHead(nn.Module):
  """dense → norm → ReLU → dropout (the scnn/VGG hidden layer); submodules ``dense``, ``norm``.

  Shapes: (B, D) → (B, features).
  """

  opts: Options
  features: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = dense(self.opts, self.features, name="dense")(x)
    x = nn.relu(norm(self.opts, train)(x))
    return nn.Dropout(self.opts.dropout, deterministic=not train)(x)


def classifier(opts: Options, num_classes: int, x, name: str = "classifier"):
  """The final dense layer, computed and returned in float32 (logits are float32 by contract)."""
  return dense(opts, num_classes, name=name, dtype=jnp.float32)(x.astype(jnp.float32))
