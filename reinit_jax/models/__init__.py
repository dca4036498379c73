"""Model registry: ``create(name, num_classes, **options) -> Model`` ([Z], [LW] §3).

Every model declares its ordered blocks and its head (see :mod:`reinit_jax.models.base`), so
``layerwise`` and ``head`` work on all of them with no per-model code in the methods.
"""

from __future__ import annotations

from typing import Callable

from reinit_jax.models import mlp, mobilenet, resnet, scnn, vgg
from reinit_jax.models.layers import CONV_IMPLS, parse_options
from reinit_jax.models.base import (Block, INITIALIZERS, LAYERWISE_NORM, NORMALIZATIONS,
                                    LayerwiseNorm, Model, group_blocks, layer_chain)

_BUILDERS: dict[str, Callable[..., Model]] = {}


def register(name: str):
  """Decorator adding a builder ``f(num_classes, **options) -> Model`` to the registry."""

  def deco(fn):
    _BUILDERS[name] = fn
    return fn

  return deco


def names() -> tuple[str, ...]:
  """The registered model names."""
  return tuple(sorted(_BUILDERS))


def _check_common(options: dict):
  init = options.get("initializer", "he_normal")
  if init not in INITIALIZERS:
    raise ValueError(f"initializer must be one of {INITIALIZERS}, got {init!r}")
  norm = options.get("normalization")
  if norm is not None and norm not in NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {norm!r}")
  dropout = options.get("dropout", 0.0)
  if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
    raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")


def create(name: str, num_classes: int, *, num_blocks: int | None = None, **options) -> Model:
  """Builds model ``name`` with ``num_classes`` logits.

  Args:
    name: one of :func:`names`.
    num_classes: number of classes (≥ 2).
    num_blocks: merge the declared blocks into this many groups for ``layerwise`` (None: finest).
    **options: ``normalization`` ('batch' | 'layer' | 'none'; default per model as in its paper),
      ``initializer`` ('he_normal' | 'he_uniform' | 'xavier_uniform'), ``dropout`` in [0, 1),
      ``input_shape``; for the CNNs also ``width`` (channel multiplier), ``dtype`` (compute dtype,
      e.g. 'bfloat16'; params stay float32) and ``conv_impl`` ('auto' | 'xla' | 'im2col'; 'auto' =
      im2col on CPU).
  Returns:
    A :class:`Model`; ``model.init(key)`` draws its variables.
  """
  if name not in _BUILDERS:
    raise ValueError(f"model must be one of {names()}, got {name!r}")
  if not isinstance(num_classes, int) or num_classes < 2:
    raise ValueError(f"num_classes must be an integer ≥ 2, got {num_classes!r}")
  _check_common(options)
  model = _BUILDERS[name](num_classes, **options)
  if num_blocks is not None:
    import dataclasses
    model = dataclasses.replace(model, blocks=group_blocks(model.blocks, num_blocks))
  return model


@register("mlp")
def _mlp(num_classes, *, widths=(32, 32), input_shape=(128,), initializer="he_normal", dropout=0.0,
         normalization="none"):
  if normalization != "none":
    raise ValueError("normalization for model 'mlp' must be 'none' (the [LW] synthetic MLP has none)")
  module = mlp.MLP(widths=tuple(widths), num_classes=num_classes, initializer=initializer,
                   dropout=dropout)
  blocks, head = mlp.declare(widths)
  return Model("mlp", module, tuple(input_shape), num_classes, blocks, head,
               dict(widths=tuple(widths), initializer=initializer, dropout=dropout,
                    normalization=normalization))


def register_cnn(name: str, make: Callable, *, normalization: str, input_shape=(32, 32, 3),
                 width: float = 1.0, channels=(3,)):
  """Registers a CNN ``name`` built by ``make(opts, num_classes) -> (module, blocks, head)``.

  ``normalization``/``input_shape``/``width`` are the model's defaults (a tiny variant is the same
  ``make`` with a small ``width``); ``channels`` are the input channel counts it accepts.
  """

  def build(num_classes, **options):
    options = {"width": width, **options}
    opts, shape, record = parse_options(name, options, normalization=normalization,
                                        input_shape=input_shape, allowed_channels=channels)
    module, blocks, head = make(opts, num_classes)
    return Model(name, module, shape, num_classes, blocks, head, record)

  build.__doc__ = (f"Builds {name!r} (defaults: {normalization} norm, input {input_shape}, "
                   f"width {width}).")
  register(name)(build)
  return build


def _scnn(opts, num_classes):
  return (scnn.SCNN(opts, num_classes), *scnn.declare())


def _resnet18(opts, num_classes):
  return (resnet.ResNet18(opts, num_classes), *resnet.declare18())


def _preact_resnet18(opts, num_classes):
  return (resnet.ResNet18(opts, num_classes, preact=True), *resnet.declare18(preact=True))


def _resnet50(opts, num_classes):
  return (resnet.ResNet50(opts, num_classes), *resnet.declare50())


def _vgg16(opts, num_classes):
  return (vgg.VGG16(opts, num_classes), *vgg.declare())


def _mobilenet_v1(opts, num_classes):
  return (mobilenet.MobileNetV1(opts, num_classes), *mobilenet.declare_v1())


def _mobilenet_v2(opts, num_classes):
  return (mobilenet.MobileNetV2(opts, num_classes), *mobilenet.declare_v2())


# Defaults per paper: [Z]'s CIFAR models use BatchNorm on 32×32; [LW]'s use LayerNorm on
# 224×224 (scnn on 32×32). Every CNN accepts 1- or 3-channel inputs ([LW] trains on MNIST-like sets
# too). A ``_tiny`` variant is the same code with a small width on 32×32 inputs, for tests and CPU.
_CNNS = (  # name, make, normalization, default input, tiny width
    ("scnn", _scnn, "layer", (32, 32, 3), 0.125),
    ("resnet18", _resnet18, "batch", (32, 32, 3), 0.125),
    ("preact_resnet18", _preact_resnet18, "batch", (32, 32, 3), 0.125),
    ("mobilenet_v2", _mobilenet_v2, "batch", (32, 32, 3), 0.125),
    ("vgg16", _vgg16, "layer", (224, 224, 3), 0.0625),
    ("mobilenet_v1", _mobilenet_v1, "layer", (224, 224, 3), 0.125),
    ("resnet50", _resnet50, "layer", (224, 224, 3), 0.0625),
)
for _name, _make, _norm, _shape, _tiny_width in _CNNS:
  register_cnn(_name, _make, normalization=_norm, input_shape=_shape, channels=(1, 3))
  register_cnn(f"{_name}_tiny", _make, normalization=_norm, input_shape=(32, 32, 3),
               width=_tiny_width, channels=(1, 3))

__all__ = ["CONV_IMPLS", "register_cnn", "Block", "LayerwiseNorm", "Model", "LAYERWISE_NORM",
           "create", "names", "register", "group_blocks", "layer_chain"]
