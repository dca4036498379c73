"""Models of [LW] and [Z] (docs/CONTRACTS.md): shapes, blocks, options, conv implementations.

Full-size models are only traced with ``jax.eval_shape`` (free); real forwards use the tiny
variants on small inputs so the file runs in seconds on 2 CPU cores.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from reinit_jax import models
from reinit_jax.models import layers
from reinit_jax.models.base import LAYERWISE_NORM, LayerwiseNorm

KEY = jax.random.key(0)
FULL = ("scnn", "resnet18", "preact_resnet18", "mobilenet_v2", "vgg16", "mobilenet_v1", "resnet50")
TINY = tuple(f"{n}_tiny" for n in FULL)
# K per model at its finest declaration (the K of [LW]: scnn 4, VGG16 13, MobileNetV1 7, ResNet-50 16).
EXPECTED_K = {"scnn": 4, "vgg16": 13, "mobilenet_v1": 7, "resnet50": 16, "resnet18": 5,
              "preact_resnet18": 5, "mobilenet_v2": 7, "mlp": 3}
SMALL = (16, 16, 3)


def _registered(names):
  return [n for n in names if n in models.names()]


def _tiny(name, **options):
  if name == "mlp":
    return models.create(name, 8, **options)
  return models.create(name, 10, input_shape=SMALL, **options)


def _x(model, batch=2, seed=1):
  return jax.random.normal(jax.random.key(seed), (batch, *model.input_shape), jnp.float32)


_INITS = {}


def _init(model):
  # Jitted: eager init dispatches (and compiles) every primitive separately, ~10× slower. Compiling
  # the random initializers dominates (seconds per model on 2 busy cores), so draws are cached.
  # conv_impl does not change init (tested below), so it is not part of the key.
  opts = {k: v for k, v in model.options.items() if k != "conv_impl"}
  cache_key = (model.name, model.num_classes, repr(sorted(opts.items())))
  if cache_key not in _INITS:
    _INITS[cache_key] = jax.jit(model.init)(KEY)
  return _INITS[cache_key]


def _apply(model, variables, x, **kw):
  rngs, mutable = kw.pop("rngs", None), kw.pop("mutable", False)
  fn = jax.jit(lambda v, x, r: model.apply(v, x, rngs=r, mutable=mutable, **kw))
  return fn(variables, x, rngs)


def _top_level(variables):
  return {k for col in ("params", "batch_stats") for k in variables.get(col, {})}


def test_registry_lists_all_models():
  for name in ("mlp", *FULL, *TINY):
    assert name in models.names()


@pytest.mark.parametrize("name", _registered(FULL))
def test_full_models_trace_to_logits(name):
  model = models.create(name, 7)
  shapes = jax.eval_shape(model.init, KEY)
  x = jax.ShapeDtypeStruct((3, *model.input_shape), jnp.float32)
  out = jax.eval_shape(lambda v, x: model.apply(v, x), shapes, x)
  assert out.shape == (3, 7) and out.dtype == jnp.float32
  expected = (224, 224, 3) if name in ("vgg16", "mobilenet_v1", "resnet50") else (32, 32, 3)
  assert model.input_shape == expected


# Real forwards of the deeper tiny models cost 15–30 s of compilation each on 2 busy cores; their
# full-size versions are traced in the default run, the real forward runs with -m slow.
_SLOW_TINY = ("preact_resnet18_tiny", "mobilenet_v2_tiny", "vgg16_tiny", "resnet50_tiny")


@pytest.mark.parametrize("name", ["mlp", *[
    pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_TINY else n for n in _registered(TINY)]])
def test_tiny_models_forward(name):
  model = _tiny(name)
  variables = _init(model)
  logits, state = _apply(model, variables, _x(model), mutable=["intermediates"])
  assert logits.shape == (2, model.num_classes) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  # Two different inputs give different logits (the network is not collapsed at init).
  assert float(jnp.abs(logits[0] - logits[1]).max()) > 1e-6
  # Every block's norm sees that block's output (what block_outputs reads).
  raw = state["intermediates"]
  assert all(raw[b.norm]["raw"][0].shape[0] == 2 for b in model.blocks)


@pytest.mark.parametrize("name", ["mlp", *_registered(FULL)])
def test_partition_covers_every_top_level_name_once(name):
  model = models.create(name, 10)
  variables = jax.eval_shape(model.init, KEY)
  in_blocks = [n for b in model.blocks for n in b.names]
  assert len(in_blocks) == len(set(in_blocks)), "a name is in two blocks"
  assert set(model.head).isdisjoint(in_blocks[:-len(model.blocks[-1].names)])
  for top in _top_level(variables):
    count = in_blocks.count(top) + (top in model.head)
    if name == "mlp" and top in model.head:
      assert count == 2  # every MLP layer is a block, the last one is also the head
    else:
      assert count == 1, f"{top} in {count} groups"
  # Every block's norm exists and no LayerwiseNorm is orphaned.
  norms = set(variables[LAYERWISE_NORM])
  assert {b.norm for b in model.blocks} <= norms
  assert len(norms) == EXPECTED_K[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_K))
def test_number_of_blocks(name):
  if name not in models.names():
    pytest.skip("not registered")
  assert models.create(name, 10).num_blocks == EXPECTED_K[name]


def test_resnet18_merges_to_two_blocks():
  model = models.create("resnet18", 10, num_blocks=2)
  assert model.num_blocks == 2
  assert model.blocks[0].names == ("stem", "layer1", "layer2")
  assert model.blocks[1].names == ("layer3", "layer4") and model.blocks[1].norm == "lwnorm5"


@pytest.mark.parametrize("name", ["mlp", "scnn_tiny"])
def test_block_outputs_one_per_block(name):
  model = _tiny(name)
  variables = _init(model)
  outs = jax.jit(model.block_outputs)(variables, _x(model))
  assert len(outs) == model.num_blocks
  assert all(o.shape[0] == 2 for o in outs)


def test_layerwise_norm_is_identity_until_set():
  model = _tiny("scnn_tiny")
  variables = _init(model)
  for stats in variables[LAYERWISE_NORM].values():
    assert float(stats["mu"]) == 0.0 and float(stats["sigma"]) == 1.0
  z = jax.random.normal(KEY, (3, 5))
  lw_vars = LayerwiseNorm().init(KEY, z)
  np.testing.assert_array_equal(LayerwiseNorm().apply(lw_vars, z), z)
  x = _x(model)
  before = _apply(model, variables, x)
  # With identity norms a block's raw output is what the next block sees: set block 2's norm to
  # (mu, sigma) and the logits must change, proving the norm sits on the forward path.
  changed = jax.tree.map(lambda a: a, variables)
  changed[LAYERWISE_NORM]["lwnorm2"] = {"mu": jnp.float32(0.3), "sigma": jnp.float32(2.0)}
  after = _apply(model, changed, x)
  assert float(jnp.abs(after - before).max()) > 1e-4


def _kernel_stats(name, initializer):
  # Full width (a 3×3×64×64 kernel: many draws) on 8×8 inputs (the kernel does not depend on them).
  model = models.create(name, 10, initializer=initializer, input_shape=(8, 8, 3))
  kernel = _init(model)["params"]["conv4"]["conv"]["kernel"]  # (3, 3, 64, 64)
  fan_in = int(np.prod(kernel.shape[:-1]))
  return float(jnp.var(kernel)), fan_in, kernel.shape[-1]


@pytest.mark.parametrize("initializer", ["he_normal", "he_uniform"])
def test_he_variance_is_two_over_fan_in(initializer):
  var, fan_in, _ = _kernel_stats("scnn", initializer)
  # 36,864 draws: the variance estimate's relative std error is sqrt(2/n) ≈ 0.7% (normal; less
  # for the uniform).
  assert abs(var / (2.0 / fan_in) - 1) < 0.03


def test_he_uniform_stays_in_its_bound():
  # U(±b), b = √2·√(3/fan_in) (Dohare et al. 2024's kaiming bound): variance b²/3 = 2/fan_in.
  model = models.create("mlp", 10, initializer="he_uniform", input_shape=(784,), widths=(100,))
  kernel = np.asarray(_init(model)["params"]["dense1"]["kernel"])
  bound = np.sqrt(2.0) * np.sqrt(3.0 / 784)
  assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.99 * bound


def test_xavier_uniform_variance_differs_from_he():
  var, fan_in, fan_out = _kernel_stats("scnn", "xavier_uniform")
  fan_out_total = fan_out * 9  # receptive field counts in Glorot's fan_out
  assert abs(var / (2.0 / (fan_in + fan_out_total)) - 1) < 0.03
  assert var < 0.6 * (2.0 / fan_in)


@pytest.mark.parametrize("name", ["scnn_tiny", "resnet18_tiny"])
def test_normalization_option_changes_variables(name):
  if name not in models.names():
    pytest.skip("not registered")
  # Structure only, so eval_shape: free, no compilation.
  shapes = lambda norm: jax.eval_shape(_tiny(name, normalization=norm).init, KEY)
  batch = shapes("batch")
  assert "batch_stats" in batch
  layer = shapes("layer")
  assert "batch_stats" not in layer
  assert any("scale" in str(p) for p in jax.tree_util.tree_leaves_with_path(layer["params"]))
  none = shapes("none")
  assert "batch_stats" not in none
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(none["params"])]
  assert not any("norm" in p or "scale" in p for p in paths)


def test_batchnorm_training_updates_batch_stats():
  model = _tiny("scnn_tiny", normalization="batch")
  variables = _init(model)
  logits, state = _apply(model, variables, _x(model), train=True, mutable=["batch_stats"])
  assert logits.shape == (2, 10)
  old = jax.tree.leaves(variables["batch_stats"])
  new = jax.tree.leaves(state["batch_stats"])
  assert any(float(jnp.abs(a - b).max()) > 0 for a, b in zip(old, new))


def test_dropout_changes_train_outputs_only():
  model = _tiny("scnn_tiny", dropout=0.5)
  variables = _init(model)
  x = _x(model)
  a = _apply(model, variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  b = _apply(model, variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  a2 = _apply(model, variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  assert float(jnp.abs(a - b).max()) > 1e-4
  np.testing.assert_array_equal(a, a2)
  np.testing.assert_array_equal(_apply(model, variables, x), _apply(model, variables, x))
  plain = _tiny("scnn_tiny")
  c = _apply(plain, variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  d = _apply(plain, variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  np.testing.assert_array_equal(c, d)


def test_width_multiplier_scales_channels():
  small = jax.eval_shape(models.create("scnn", 10, width=0.5).init, KEY)
  assert small["params"]["conv1"]["conv"]["kernel"].shape == (3, 3, 3, 16)
  assert small["params"]["fc1"]["dense"]["kernel"].shape[-1] == 256


def test_scnn_accepts_one_channel_28x28():
  model = models.create("scnn_tiny", 10, input_shape=(28, 28, 1))
  variables = jax.eval_shape(model.init, KEY)
  x = jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)
  assert jax.eval_shape(lambda v, x: model.apply(v, x), variables, x).shape == (1, 10)
  assert variables["params"]["fc1"]["dense"]["kernel"].shape == (7 * 7 * 8, 64)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model = _tiny("scnn_tiny", dtype="bfloat16")
  variables = _init(model)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  logits = _apply(model, variables, _x(model))
  assert logits.dtype == jnp.float32
  ref = _apply(_tiny("scnn_tiny"), variables, _x(model))
  assert float(jnp.abs(logits - ref).max()) < 0.1 * float(jnp.abs(ref).max()) + 0.05


@pytest.mark.parametrize("option,value", [
    ("normalization", "group"), ("initializer", "orthogonal"), ("dropout", 1.0), ("dropout", -0.1),
    ("input_shape", (32, 32)), ("input_shape", (32, 32, 2)), ("width", 0), ("conv_impl", "cudnn"),
    ("dtype", "int8"), ("colour", 1)])
def test_bad_options_raise_one_line(option, value):
  with pytest.raises(ValueError) as err:
    models.create("scnn", 10, **{option: value})
  message = str(err.value)
  assert "\n" not in message
  assert (option in message) if option != "colour" else ("colour" in message)


def test_bad_model_name_and_classes():
  with pytest.raises(ValueError, match="model must be one of"):
    models.create("alexnet", 10)
  with pytest.raises(ValueError, match="num_classes"):
    models.create("scnn", 1)
  with pytest.raises(ValueError, match="num_blocks"):
    models.create("scnn", 10, num_blocks=5)


def test_conv_impl_auto_picks_im2col_only_on_cpu():
  expected = "im2col" if jax.default_backend() == "cpu" else "xla"
  assert layers.resolve_conv_impl("auto") == expected
  assert layers.resolve_conv_impl("xla") == "xla"


@pytest.mark.parametrize("kernel,stride,size,c_in,c_out", [
    (3, 1, 8, 3, 5), (3, 1, 7, 3, 5), (1, 1, 5, 3, 5), (5, 1, 9, 3, 5), (3, 2, 7, 3, 5),
    (3, 2, 8, 3, 5), (1, 2, 8, 3, 5), (7, 2, 9, 3, 5),
    # Narrow convs (cpu_conv._narrow): forward and input gradient as broadcast taps, or not.
    (3, 1, 8, 1, 4), (3, 1, 8, 4, 4), (3, 2, 9, 1, 8), (3, 1, 8, 8, 2), (3, 1, 8, 5, 16)])
def test_im2col_matches_xla_conv(kernel, stride, size, c_in, c_out):
  kx, kw = jax.random.split(KEY)
  x = jax.random.normal(kx, (2, size, size, c_in))
  w = jax.random.normal(kw, (kernel, kernel, c_in, c_out))
  dn = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))

  def loss(impl, x, w):
    y = impl(x, w, (stride, stride), "SAME", dimension_numbers=dn,
             precision=lax.Precision.HIGHEST)
    return jnp.sum(jnp.sin(y)), y

  (l1, y1), g1 = jax.value_and_grad(lambda *a: loss(lax.conv_general_dilated, *a), (0, 1),
                                    has_aux=True)(x, w)
  (l2, y2), g2 = jax.value_and_grad(lambda *a: loss(layers.im2col_conv, *a), (0, 1),
                                    has_aux=True)(x, w)
  assert y1.shape == y2.shape
  # Float32 sums of up to kh·kw·C terms in another order: compare relative to the largest entry.
  for a, b in [(y1, y2), *zip(g1, g2)]:
    assert float(jnp.abs(a - b).max()) <= 1e-5 * max(1.0, float(jnp.abs(a).max()))


@pytest.mark.parametrize("name", ["scnn_tiny", "resnet18_tiny",
                                  pytest.param("mobilenet_v1_tiny", marks=pytest.mark.slow),
                                  pytest.param("resnet50_tiny", marks=pytest.mark.slow)])
def test_conv_impls_give_same_params_outputs_and_grads(name):
  xla = _tiny(name, conv_impl="xla")
  col = _tiny(name, conv_impl="im2col")
  v1, v2 = jax.jit(xla.init)(KEY), jax.jit(col.init)(KEY)
  # Same names, shapes and values: checkpoints and initializers do not depend on conv_impl.
  jax.tree.map(np.testing.assert_array_equal, v1, v2)
  x = _x(xla)

  def loss(model, params):
    with jax.default_matmul_precision("float32"):
      out = model.apply({**v1, "params": params}, x)
    return jnp.sum(out ** 2), out

  grad = lambda m: jax.jit(jax.value_and_grad(lambda p: loss(m, p), has_aux=True))
  (_, o1), g1 = grad(xla)(v1["params"])
  (_, o2), g2 = grad(col)(v1["params"])
  np.testing.assert_allclose(o2, o1, rtol=1e-5, atol=1e-5)

  def close(a, b):
    assert float(jnp.abs(a - b).max()) <= 1e-5 * max(1.0, float(jnp.abs(a).max()))

  jax.tree.map(close, g1, g2)


@pytest.mark.parametrize("c_in,c_out,kernel,taps", [(1, 32, 3, True), (4, 16, 3, True),
                                                    (1, 8, 5, True), (8, 8, 3, False),
                                                    (3, 64, 3, False), (1, 8, 7, False)])
def test_narrow_convs_run_as_broadcast_taps(c_in, c_out, kernel, taps):
  # The CPU path's forward conv: broadcast products for narrow inputs, XLA's conv otherwise.
  x, w = jnp.zeros((2, 8, 8, c_in)), jnp.zeros((kernel, kernel, c_in, c_out))
  jaxpr = str(jax.make_jaxpr(lambda x, w: layers.im2col_conv(x, w, (1, 1), "SAME"))(x, w))
  assert ("conv_general_dilated" not in jaxpr) == taps


@pytest.mark.parametrize("shape", [(3, 3, 1, 4), (3, 3, 4, 8), pytest.param((7, 7, 3, 64),
                                   marks=pytest.mark.slow), (392, 64), (64, 10)])
def test_kernel_init_draws_flax_values_bitwise(shape):
  # Drawn flat for XLA:CPU's compile time (base.kernel_init); the values must not move.
  from reinit_jax.models import base
  ref = {"he_normal": nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
         "he_uniform": nn.initializers.variance_scaling(2.0, "fan_in", "uniform"),
         "xavier_uniform": nn.initializers.xavier_uniform()}
  assert set(ref) == set(base.INITIALIZERS)  # every initializer the models offer
  for name, init in ref.items():
    np.testing.assert_array_equal(base.kernel_init(name)(KEY, shape), init(KEY, shape))
  with pytest.raises(ValueError, match="initializer must be one of"):
    base.kernel_init("lecun")
