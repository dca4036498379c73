"""Shared pieces of the CNNs: option parsing, the conv implementation switch, conv → norm → ReLU.

Every CNN in this package takes the same options ([Z], [LW] §3): ``normalization``, ``initializer``,
``dropout``, ``input_shape``, ``width`` (channel multiplier), ``dtype`` (compute dtype;
parameters stay float32) and ``conv_impl``. :func:`parse_options` validates them once, so a bad
value fails at ``models.create`` with one line naming the option.

``conv_impl`` exists for speed on CPU only (issue 6, bench/README.md, "Train step vs PyTorch"):
inside a while loop (the engine's ``lax.scan`` over steps) XLA:CPU leaves the backward convolutions
in a generic, 7-25x slower form. With 'im2col' (what 'auto' picks on the CPU backend) both gradients
are written in forward form and the weight gradient of a stride-1 conv as im2col matmuls; convs with
a few input channels (a grayscale stem, scnn_tiny) run as fused broadcast products (see
:func:`im2col_conv`). It is plugged into ``nn.Conv`` through its ``conv_general_dilated`` hook, so
parameter names, shapes and initial values are those of ``nn.Conv`` whichever implementation runs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

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
  """'auto' → 'im2col' on the CPU backend only, 'xla' elsewhere (never slows the accelerator)."""
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}")
  if conv_impl == "auto":
    return "im2col" if jax.default_backend() == "cpu" else "xla"
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


_DN = ("NHWC", "HWIO", "NHWC")


def _xla_conv(x, w, strides, pads):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN)


# XLA:CPU runs convs with a handful of input channels (a grayscale stem, scnn_tiny's 4-channel
# layers) at 1-3 GFLOP/s: the same conv written as broadcast products fuses into one loop and is
# 2-7x faster (bench/README.md, "Narrow convolutions and kernel draws"). Past these sizes XLA's
# conv wins again (8→8 channels: 0.7x; a 7×7 or 5×5×3 kernel at stride 2: 0.4-0.7x), hence the
# bounds.
NARROW_IN, NARROW_IN_OUT, NARROW_TERMS = 4, 64, 36


def _narrow(w_shape, pads) -> bool:
  """Whether a conv with kernel ``w_shape`` (kh, kw, C_in, C_out) runs as broadcast taps."""
  kh, kw, c_in, c_out = w_shape
  return (c_in <= NARROW_IN and c_in * c_out <= NARROW_IN_OUT and kh * kw * c_in <= NARROW_TERMS
          and min(min(p) for p in pads) >= 0)


def _taps_conv(x, w, strides, pads):
  """The conv as a sum of kh·kw·C broadcast products: (B, H, W, C) × (kh, kw, C, O) → (B, H', W', O).

  Accumulates in float32 whatever the compute dtype, as XLA's conv does on CPU.
  """
  kh, kw, c, _ = w.shape
  (pt, pb), (pl, pr) = pads
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  ho = (xp.shape[1] - kh) // strides[0] + 1
  wo = (xp.shape[2] - kw) // strides[1] + 1
  w32 = w.astype(jnp.float32)
  out = None
  for i in range(kh):
    for j in range(kw):
      tap = lax.slice(xp, (0, i, j, 0),
                      (xp.shape[0], i + (ho - 1) * strides[0] + 1, j + (wo - 1) * strides[1] + 1, c),
                      (1, strides[0], strides[1], 1)).astype(jnp.float32)
      for ch in range(c):
        term = tap[..., ch:ch + 1] * w32[i, j, ch]
        out = term if out is None else out + term
  return out.astype(x.dtype)


def _forward(x, w, strides, pads):
  """The CPU path's forward conv: broadcast taps for narrow inputs, else XLA's conv."""
  if _narrow(w.shape, pads):
    return _taps_conv(x, w, strides, pads)
  return _xla_conv(x, w, strides, pads)


def _weight_grad_rows(x, g, kh, kw, pads):
  """dW of a stride-1 conv as kh matmuls, one per kernel row: (kh, kw, C, O).

  Row i contracts the kw shifted slices of the padded input (B, H', W', kw·C) with g over
  (B, H', W'); a third of the full im2col matrix lives at a time, which measured faster than both
  XLA's weight-gradient conv and one big im2col matmul (bench/README.md, "Train step vs
  PyTorch").
  """
  (pt, pb), (pl, pr) = pads
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  b, ho, wo, o = g.shape
  c = x.shape[-1]
  rows = []
  for i in range(kh):
    cols = jnp.concatenate([lax.slice(xp, (0, i, j, 0), (b, i + ho, j + wo, c))
                            for j in range(kw)], axis=-1)
    # 2-D operands: XLA:CPU picked a faster layout for them (15-30% on scnn's shapes).
    rows.append(lax.dot_general(cols.reshape(-1, kw * c), g.astype(cols.dtype).reshape(-1, o),
                                (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32))
  return jnp.stack(rows).reshape(kh, kw, c, o)


def _input_grad(g, w, x_hw, strides, pads):
  """dx as a forward-form (NHWC × HWIO) conv of g with the flipped, in/out-swapped kernel."""
  kh, kw = w.shape[:2]
  lo_h, lo_w = kh - 1 - pads[0][0], kw - 1 - pads[1][0]
  hi_h = x_hw[0] + kh - 1 - lo_h - ((g.shape[1] - 1) * strides[0] + 1)
  hi_w = x_hw[1] + kw - 1 - lo_w - ((g.shape[2] - 1) * strides[1] + 1)
  wt = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
  padding = ((lo_h, hi_h), (lo_w, hi_w))
  if strides == (1, 1) and _narrow(wt.shape, padding):
    return _taps_conv(g, wt.astype(g.dtype), (1, 1), padding)
  return lax.conv_general_dilated(g, wt.astype(g.dtype), (1, 1), padding, lhs_dilation=strides,
                                  dimension_numbers=_DN)


def _weight_grad_conv(x, g, kh, kw, strides, pads):
  """dW as a forward-form conv: the input's channels act as the batch, its batch as features."""
  hi_h = kh - 1 + (g.shape[1] - 1) * strides[0] + 1 - x.shape[1] - pads[0][0]
  hi_w = kw - 1 + (g.shape[2] - 1) * strides[1] + 1 - x.shape[2] - pads[1][0]
  dw = lax.conv_general_dilated(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3).astype(x.dtype),
                                (1, 1), ((pads[0][0], hi_h), (pads[1][0], hi_w)),
                                rhs_dilation=strides, dimension_numbers=_DN,
                                preferred_element_type=jnp.float32)
  return dw.transpose(1, 2, 0, 3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_cpu(x, w, strides, pads):
  return _forward(x, w, strides, pads)


def _conv_cpu_fwd(x, w, strides, pads):
  return _forward(x, w, strides, pads), (x, w)


def _conv_cpu_bwd(strides, pads, res, g):
  # Why not jax.vjp of the conv: XLA:CPU rewrites a backward conv into the fast forward form only
  # when it sits in the entry computation; inside a while loop (lax.scan / lax.map, how the engine
  # runs steps) it falls back to a generic loop nest, 7-25x slower (bench/README.md, "Train step
  # vs PyTorch").
  # Both gradients are therefore written in forward form here.
  x, w = res
  kh, kw = w.shape[:2]
  dx = _input_grad(g, w, x.shape[1:3], strides, pads)
  if strides == (1, 1):
    dw = _weight_grad_rows(x, g, kh, kw, pads)
  else:
    dw = _weight_grad_conv(x, g, kh, kw, strides, pads)
  return dx.astype(x.dtype), dw.astype(w.dtype)


_conv_cpu.defvjp(_conv_cpu_fwd, _conv_cpu_bwd)


def im2col_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
  """Drop-in ``lax.conv_general_dilated`` (NHWC × HWIO) with a backward pass written for XLA:CPU.

  Shapes: ``lhs`` (B, H, W, C), ``rhs`` (kh, kw, C, O) → (B, H', W', O); the forward pass is XLA's
  conv, or for narrow inputs (C ≤ 4, C·O ≤ 64, kh·kw·C ≤ 36) a sum of broadcast products, and the outputs and
  gradients equal XLA's to float32 rounding (tested). Backward: dx is a forward-form conv
  of g with the flipped kernel (lhs-dilated by the stride); dW is, at stride 1, kh im2col
  matmuls (one per kernel row), at larger strides a forward-form conv with the channels as batch.
  Grouped (MobileNet's depthwise) and dilated convs use XLA's conv unchanged.
  """
  dilated = any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
  plain = feature_group_count == 1 and not dilated and lhs.ndim == 4 and not kwargs
  if not plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                    rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                    feature_group_count=feature_group_count, precision=precision,
                                    **kwargs)
  kh, kw = rhs.shape[:2]
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), tuple(window_strides), padding)
  pads = tuple(tuple(int(p) for p in pair) for pair in padding)
  return _conv_cpu(lhs, rhs, tuple(int(s) for s in window_strides), pads)


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
