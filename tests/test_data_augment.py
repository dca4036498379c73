"""Augmentation presets of [Z] and [LW]: the device path equals a numpy reference and the tf.data
path."""

import jax
import numpy as np
import pytest
import tensorflow as tf

from reinit_jax.data import augment as aug
from reinit_jax.data import registry

MEAN3, STD3 = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def reference(x, key, preset, train):
  """numpy semantics: decisions drawn as documented, then flip, zero-pad 4, crop (cifar; flip
  stops after the flip), normalize."""
  k_flip, k_crop = jax.random.split(key)
  flip = np.asarray(jax.random.bernoulli(k_flip, 0.5, (len(x),)))
  off = np.asarray(jax.random.randint(k_crop, (len(x), 2), 0, 9 if preset == "cifar" else 1))
  out = []
  for i, img in enumerate(x.astype(np.float64) / 255.0):
    h, w, c = img.shape
    if train and preset in ("cifar", "flip") and flip[i]:
      img = img[:, ::-1]
    if train and preset == "cifar":
      padded = np.zeros((h + 8, w + 8, c))
      padded[4:4 + h, 4:4 + w] = img
      img = padded[off[i, 0]:off[i, 0] + h, off[i, 1]:off[i, 1] + w]
    mean, std = (MEAN3, STD3) if c == 3 else (MEAN3.mean(), STD3.mean())
    out.append((img - mean) / std)
  return np.stack(out), flip, off


@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1)])
@pytest.mark.parametrize("preset,train", [("cifar", True), ("cifar", False), ("flip", True),
                                          ("flip", False), ("none", True)])
def test_device_augment_equals_numpy_reference(shape, preset, train):
  x = np.random.default_rng(0).integers(0, 256, (16,) + shape, dtype=np.uint8)
  key = jax.random.key(42)
  fn = jax.jit(aug.make_augment(preset, None, True), static_argnames="train")
  got = np.asarray(fn(key, x, train=train))
  want, flip, off = reference(x, key, preset, train)
  assert got.dtype == np.float32 and got.shape == (16,) + shape
  np.testing.assert_allclose(got, want, atol=1e-5)
  if preset == "cifar" and train:
    assert 0 < flip.sum() < 16 and len(np.unique(off)) > 3  # the key really drives decisions
  if preset == "flip" and train:  # some images mirrored, none shifted
    assert 0 < flip.sum() < 16 and not off.any()
    np.testing.assert_allclose(got[~flip], np.asarray(fn(key, x, train=False))[~flip], atol=1e-6)


def test_normalization_constants():
  m, s = aug.mean_std(1)
  np.testing.assert_allclose([m[0], s[0]], [0.449, 0.226], atol=1e-6)
  with pytest.raises(ValueError, match="channels=2"):
    aug.mean_std(2)
  white = np.full((1, 2, 2, 3), 255, np.uint8)
  out = np.asarray(aug.augment(jax.random.key(0), white, False, preset="none"))
  np.testing.assert_allclose(out[0, 0, 0], (1 - MEAN3) / STD3, rtol=1e-6)


@pytest.mark.parametrize("preset,shape,image_size", [
  ("cifar", (32, 32, 3), None), ("cifar", (28, 28, 1), None), ("none", (28, 28, 1), 16),
  ("flip", (28, 28, 1), None), ("flip", (32, 32, 3), 16),
  ("lw224", (32, 32, 3), None), ("lw224", (300, 260, 3), None)])
@pytest.mark.parametrize("train", [True, False])
def test_tf_path_equals_device_path_for_same_decisions(preset, shape, image_size, train):
  x = np.random.default_rng(1).integers(0, 256, (3,) + shape, dtype=np.uint8)
  flip, off = aug.draw(jax.random.key(7), 3, preset)
  dev = np.asarray(aug.apply(x, flip, off, preset=preset, train=train, image_size=image_size))
  host = np.stack([aug.tf_apply(tf.constant(x[i]), tf.constant(bool(flip[i])),
                                tf.constant(np.asarray(off[i])), preset=preset, train=train,
                                image_size=image_size).numpy() for i in range(3)])
  assert dev.shape == host.shape == (3,) + registry.output_shape(preset, shape, image_size)
  np.testing.assert_allclose(dev, host, atol=1e-4)


@pytest.mark.parametrize("preset,top", [("cifar", 8), ("lw224", 24)])
def test_tf_decisions_have_device_distribution(preset, top):
  draws = [aug.tf_draw(tf.constant([3, i], tf.int64), preset) for i in range(400)]
  flips = np.array([bool(f) for f, _ in draws])
  offs = np.array([o.numpy() for _, o in draws])
  dflip, doff = aug.draw(jax.random.key(0), 1000, preset)
  for f in (flips, np.asarray(dflip)):
    assert 0.42 < f.mean() < 0.58
  for o in (offs, np.asarray(doff)):
    assert o.min() == 0 and o.max() == top
    assert abs(o.mean() - top / 2) < 0.1 * top
  # Same (seed, index) → same decision: the streaming path is reproducible.
  again = aug.tf_draw(tf.constant([3, 5], tf.int64), preset)
  assert bool(again[0]) == flips[5] and np.array_equal(again[1].numpy(), offs[5])


@pytest.mark.parametrize("dataset,preset,image_size", [
  ("synthetic", "none", None), ("fashion_mnist", "none", None), ("fashion_mnist", "flip", None),
  ("fashion_mnist", "cifar", None), ("fashion_mnist", "lw224", None),
  ("fashion_mnist", "none", 16)])
def test_example_shape_from_the_config_is_the_built_datas(dataset, preset, image_size):
  """Validation builds the model from ``registry.example_shape`` before any data is read; the data
  built from the same config has those classes and that input shape."""
  from reinit_jax import data
  from reinit_jax.data import fashion_mnist
  if dataset == "fashion_mnist" and not fashion_mnist.has_files(None):
    pytest.skip("apt-get install dataset-fashion-mnist")
  view = {"dataset": dataset, "augmentation": preset, "image_size": image_size, "seed": 0,
          "train_subset": 64}
  meta = data.build(view).meta
  assert registry.example_shape(registry.options(view)) == (meta.num_classes,
                                                            tuple(meta.input_shape))
