"""Norms, margins and the size of the weights on small known inputs ([Z] Fig. 3, [LW] §4.1,
App. D)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinit_jax import models
from reinit_jax.analysis import margins, norms


def test_global_and_leaf_norms_by_hand():
  params = {"a": {"kernel": jnp.array([[3.0, 0.0], [0.0, 4.0]])}, "b": {"bias": jnp.array([12.0])}}
  assert float(norms.global_norm(params)) == pytest.approx(13.0)  # sqrt(9 + 16 + 144)
  assert float(jax.jit(norms.global_norm)(params)) == pytest.approx(13.0)
  assert norms.norms_by_path(params) == {"a/kernel": pytest.approx(5.0), "b/bias": pytest.approx(12.0)}
  assert norms.norms_by_top_level(params) == {"a": pytest.approx(5.0), "b": pytest.approx(12.0)}
  assert float(norms.global_norm({})) == 0.0
  with pytest.raises(ValueError, match="params"):
    norms.norms_by_top_level([1.0])


def test_margin_by_hand():
  logits = jnp.log(jnp.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.25, 0.25, 0.5]]))
  m = margins.margins(logits, jnp.array([0, 0, 2]))
  # 0.7 - 0.2; 0.2 - 0.5 (misclassified); 0.5 - 0.25
  np.testing.assert_allclose(m, [0.5, -0.3, 0.25], atol=1e-6)
  np.testing.assert_allclose(margins.smallest(m, 2), [-0.3, 0.25], atol=1e-6)
  assert margins.smallest(m, 400).shape == (3,)  # k larger than n keeps all


def test_margin_bad_inputs():
  with pytest.raises(ValueError, match="labels"):
    margins.margins(jnp.zeros((3, 4)), jnp.zeros((2,), jnp.int32))
  with pytest.raises(ValueError, match="logits"):
    margins.margins(jnp.zeros((3,)), jnp.zeros((3,), jnp.int32))
  with pytest.raises(ValueError, match="k must"):
    margins.smallest(jnp.zeros(3), 0)


def test_weight_size_matches_hand_computation():
  model = models.create("mlp", 8, widths=(16, 16))
  v = model.init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (256, 128))
  p = v["params"]
  # The head's input by hand: the second hidden layer's post-ReLU activation.
  h = jax.nn.relu(jax.nn.relu(x @ p["dense1"]["kernel"] + p["dense1"]["bias"]) @ p["dense2"]["kernel"]
                  + p["dense2"]["bias"])
  logits, feats = jax.jit(lambda v, x: margins.logits_and_head_input(model, v, x))(v, x)
  np.testing.assert_allclose(feats, h, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(logits, model.apply(v, x), rtol=1e-5, atol=1e-5)
  w = float(jnp.linalg.norm(p["dense3"]["kernel"]))
  a_fro = float(jnp.linalg.norm(h))
  ws = margins.weight_size(model, v, x)
  assert ws.head_weight_norm == pytest.approx(w, rel=1e-5)
  assert ws.activation_norm == pytest.approx(a_fro / math.sqrt(256), rel=1e-4)
  assert ws.size == pytest.approx(a_fro / 16 * w, rel=1e-4)
  fro = margins.weight_size(model, v, x, activation_norm="frobenius")
  assert fro.size == pytest.approx(a_fro * w, rel=1e-4)
  # features_fn gives the same number without interception.
  alt = margins.weight_size(model, v, x, features_fn=lambda v, x: h)
  assert alt.size == pytest.approx(ws.size, rel=1e-5)
  with pytest.raises(ValueError, match="activation_norm"):
    margins.weight_size(model, v, x, activation_norm="l1")
  with pytest.raises(ValueError, match="head"):
    margins.weight_size(model, v, x, head="nope")


def test_training_margins_batched_equals_unbatched():
  model = models.create("mlp", 8)
  v = model.init(jax.random.key(0))
  x = np.asarray(jax.random.normal(jax.random.key(1), (50, 128)))
  y = np.arange(50) % 8
  m, small = margins.training_margins(model, v, x, y, k=10, batch_size=16)
  np.testing.assert_allclose(m, margins.margins(model.apply(v, x), y), atol=1e-6)
  np.testing.assert_allclose(small, np.sort(np.asarray(m))[:10])
  with pytest.raises(ValueError, match="same length"):
    margins.training_margins(model, v, x, y[:3])
