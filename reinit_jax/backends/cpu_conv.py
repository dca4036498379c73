"""The CNNs' convolution on the CPU backend: ``conv_impl='im2col'``, what 'auto' picks there.

Two slow spots of XLA:CPU, worked around here so that the accelerator path (XLA's conv,
reinit_jax/models/layers.py) reads without them:

* Inside a while loop (the engine's ``lax.scan`` over steps) XLA:CPU leaves the backward
  convolutions in a generic, 7-25x slower form: :func:`im2col_conv`'s custom VJP writes both
  gradients in forward form, the weight gradient of a stride-1 conv as im2col matmuls
  (bench/README.md, "Train step vs PyTorch").
* Convs with a few input channels (a grayscale stem, scnn_tiny) run at 1-3 GFLOP/s: here they are
  fused broadcast products, "taps" (bench/README.md, "Narrow convolutions and kernel draws").

Outputs and gradients equal XLA's conv to float32 rounding (tests/test_models.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

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
