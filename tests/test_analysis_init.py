"""[HR] initialization diagnostics: failure modes 1 and 2, fresh draws vs the model's init."""

import math

import jax
import numpy as np
import pytest

from reinit_jax import models
from reinit_jax.analysis import init_diagnostics


def test_redraw_kernels_variances():
  model = models.create("mlp", 8, widths=(256,))
  p = jax.jit(model.init)(jax.random.key(0))["params"]
  redraw = jax.jit(init_diagnostics.redraw_kernels, static_argnums=(2, 3))
  torch = redraw(jax.random.key(1), p, "kaiming_uniform_sqrt5", 2.0)
  k = np.asarray(torch["dense1"]["kernel"])
  # U(-b, b), b = sqrt(6 / ((1 + 5) * 128)) = 1/sqrt(128): variance 1/(3*128), 6x below He's 2/128.
  assert np.abs(k).max() <= 1 / math.sqrt(128) + 1e-7
  assert k.var() == pytest.approx(1 / (3 * 128), rel=0.03)
  assert np.asarray(p["dense1"]["kernel"]).var() / k.var() == pytest.approx(6.0, rel=0.05)
  b = np.asarray(torch["dense1"]["bias"])  # PyTorch's bias init, bound 1/sqrt(fan_in)
  assert b.std() > 0 and np.abs(b).max() <= 1 / math.sqrt(128)
  half = redraw(jax.random.key(1), p, "normal", 1.0)
  assert np.asarray(half["dense1"]["kernel"]).var() == pytest.approx(1 / 128, rel=0.03)
  assert np.all(np.asarray(half["dense1"]["bias"]) == 0)  # only kernels change
  with pytest.raises(ValueError, match="distribution"):
    init_diagnostics.redraw_kernels(jax.random.key(1), p, "lecun")


def test_compare_init_flags_torch_default_on_he_normal_model():
  model = models.create("mlp", 8)
  bad = lambda k: init_diagnostics.redraw_kernels(k, model.init(k)["params"], "kaiming_uniform_sqrt5")
  c = init_diagnostics.compare_init(model, bad, jax.random.key(0), num_draws=4)
  assert c.flagged
  for name in ("dense1", "dense2", "dense3"):
    assert c.leaf_ratio[f"{name}/kernel"] == pytest.approx(1 / 6, rel=0.1)
    assert f"{name}/kernel" in c.flagged_leaves and name in c.flagged_layers
  # E[M] shrinks by ~6x per layer: layer 3 is ~1/36..1/216 of the own init.
  assert c.layer_ratio["dense3"] < c.layer_ratio["dense2"] < c.layer_ratio["dense1"] < 0.3
  assert "**yes**" in c.table()
  ok = init_diagnostics.compare_init(model, model.init, jax.random.key(0), num_draws=4)
  assert not ok.flagged, ok.table()
  with pytest.raises(ValueError, match="tolerance"):
    init_diagnostics.compare_init(model, model.init, jax.random.key(0), tolerance=0)


def test_deep_narrow_mlp_fm1_flagged_for_variance_one_over_fan_in():
  model = models.create("mlp", 8, widths=(16,) * 20)
  lecun = lambda k: init_diagnostics.redraw_kernels(k, model.init(k)["params"], "normal", scale=1.0)
  d = init_diagnostics.diagnose(model, jax.random.key(0), variables_fn=lecun, num_inputs=32, num_draws=8)
  assert d.fm1 and d.fm1_log_change < -10  # halves per layer: 19 layers * log(1/2) ≈ -13
  assert d.fully_connected and d.fm2 is not None
  assert d.mean[-2] < 1e-4 * d.mean[0]


def test_deep_narrow_mlp_he_has_no_fm1_but_fm2():
  model = models.create("mlp", 8, widths=(16,) * 20)
  he = init_diagnostics.diagnose(model, jax.random.key(0), num_inputs=32, num_draws=8)
  assert not he.fm1 and abs(he.fm1_log_change) < math.log(10)
  # Width 16, depth 20: Σ1/width = 1.25, [HR]'s regime of large fluctuations (FM2) even under He.
  assert he.fm2 and he.fm2_fluctuation > 1.0
  assert "FM1" in he.table() and len(he.names) == 21


def test_shallow_he_mlp_has_neither_failure_mode():
  model = models.create("mlp", 8)
  d = init_diagnostics.diagnose(model, jax.random.key(0), num_inputs=32, num_draws=8)
  assert not d.fm1 and d.fm2 is False
  np.testing.assert_allclose(d.beta, np.cumsum([1 / 32, 1 / 32, 1 / 8]))
  assert list(d.widths) == [32, 32, 8]
  # He keeps E[M] of post-ReLU layers equal to the input's E[x²] = 1 ([HR] FM1 avoided).
  np.testing.assert_allclose(d.mean[:2], 1.0, rtol=0.25)
  with pytest.raises(ValueError, match="num_draws"):
    init_diagnostics.diagnose(model, jax.random.key(0), num_draws=1)
  with pytest.raises(ValueError, match="x must"):
    init_diagnostics.diagnose(model, jax.random.key(0), x=np.zeros((2, 5)))


@pytest.mark.slow
@pytest.mark.parametrize("name", models.names())
def test_diagnostics_and_weight_size_on_every_registered_model(name):
  from reinit_jax.analysis import margins
  model = models.create(name, 10)
  d = init_diagnostics.diagnose(model, jax.random.key(0), num_inputs=2, num_draws=2)
  assert len(d.mean) == len(model.blocks) and np.all(np.isfinite(d.mean)), name
  assert d.fully_connected == (name == "mlp")
  v = model.init(jax.random.key(0))
  ws = margins.weight_size(model, v, np.zeros((2, *model.input_shape), np.float32) + 0.5)
  assert ws.head_weight_norm > 0 and np.isfinite(ws.size)
