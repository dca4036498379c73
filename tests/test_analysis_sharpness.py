"""Sharpness under N(0, σ²I) parameter noise ([LW] §4.2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinit_jax import models
from reinit_jax.analysis import sharpness


def _quadratic(params):
  # loss = ||θ||²: E[Δloss] = σ²·n exactly when θ = 0; "accuracy" = 1 while ||θ||² < 1.
  sq = sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(params))
  return sq, (sq < 1.0).astype(jnp.float32)


def test_quadratic_loss_change_is_sigma_squared_times_n():
  params = {"w": jnp.zeros((25, 20)), "b": jnp.zeros((200,))}  # n = 700
  r = sharpness.sharpness(_quadratic, params, jax.random.key(0), [0.0, 0.01, 0.1], num_draws=16)
  assert r.base_loss == 0.0 and r.base_accuracy == 1.0
  assert r.loss_change[0] == 0.0 and r.accuracy_change[0] == 0.0
  np.testing.assert_allclose(r.loss_change[1:], [700e-4, 7.0], rtol=0.05)
  assert r.accuracy_change[1] == 0.0  # 0.07 < 1: still "correct"
  assert r.accuracy_change[2] == -1.0  # 7 > 1 on every draw
  # Keyed per σ index: the same key reproduces, and the draws at a σ do not depend on the others.
  again = sharpness.sharpness(_quadratic, params, jax.random.key(0), [0.0, 0.01], num_draws=16)
  np.testing.assert_array_equal(again.loss_change, r.loss_change[:2])


def test_perturb_has_sigma_std_on_every_leaf():
  params = {"a": jnp.ones((200, 100)), "b": jnp.ones((20000,))}
  noisy = sharpness.perturb(params, jax.random.key(1), 0.3)
  for k in params:
    d = np.asarray(noisy[k] - params[k]).ravel()
    assert d.std() == pytest.approx(0.3, rel=0.03) and abs(d.mean()) < 0.01


def test_model_sharpness_grows_with_sigma_and_bad_inputs():
  model = models.create("mlp", 8)
  v = model.init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (64, 128))
  y = jnp.arange(64) % 8
  r = sharpness.model_sharpness(model, v, x, y, jax.random.key(2), [0.0, 0.01, 0.3], num_draws=4)
  assert r.loss_change[0] == 0.0 and abs(r.loss_change[1]) < r.loss_change[2]
  assert r.base_loss > 0 and 0 <= r.base_accuracy <= 1
  with pytest.raises(ValueError, match="sigmas"):
    sharpness.sharpness(_quadratic, {"w": jnp.zeros(3)}, jax.random.key(0), [-1.0])
  with pytest.raises(ValueError, match="num_draws"):
    sharpness.sharpness(_quadratic, {"w": jnp.zeros(3)}, jax.random.key(0), [1.0], num_draws=0)
  with pytest.raises(ValueError, match="same length"):
    sharpness.model_loss_acc_fn(model, v, x, y[:3])
