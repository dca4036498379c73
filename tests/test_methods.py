"""Methods ([AA] §4, [LW] §3, [Z] §3) and their primitives: blends, S&P, rescaling, registry, layer-wise."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from reinit_jax import events, masks, methods, models

SETTINGS = settings(max_examples=15, deadline=None)
floats = hnp.arrays(np.float32, (3, 4), elements=st.floats(-10, 10, width=32))


@SETTINGS
@given(a=floats, b=floats, c=floats, d=floats, lam=st.floats(0, 1), gam=st.floats(0, 1))
def test_shrink_perturb_is_lambda_theta_plus_gamma_init_leaf_by_leaf(a, b, c, d, lam, gam):
  params, fresh = {"x": jnp.asarray(a), "y": {"z": jnp.asarray(b)}}, \
                  {"x": jnp.asarray(c), "y": {"z": jnp.asarray(d)}}
  out = methods.shrink_perturb(params, fresh, lam, gam)
  np.testing.assert_allclose(out["x"], lam * a + gam * c, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out["y"]["z"], lam * b + gam * d, rtol=1e-5, atol=1e-5)
  # the registered method with the same hyperparameters agrees
  R = methods.get("shrink_perturb", shrink=lam, perturb=gam)
  out2 = R(params, fresh, 1, jax.random.key(0), methods.Context())
  np.testing.assert_allclose(out2["x"], out["x"], rtol=1e-6)


@SETTINGS
@given(a=floats, b=floats)
def test_blend_all_false_is_identity_all_true_is_fresh(a, b):
  params, fresh = {"w": jnp.asarray(a)}, {"w": jnp.asarray(b)}
  np.testing.assert_array_equal(methods.blend(params, fresh, masks.all_false(params))["w"], a)
  np.testing.assert_array_equal(methods.blend(params, fresh, masks.all_true(params))["w"], b)


def test_structure_and_dtypes_preserved_for_every_method():
  model = models.create("mlp", 8)
  v = model.init(jax.random.key(0))
  params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), v["params"])
  fresh = jax.tree.map(lambda p: p.astype(jnp.bfloat16), model.init(jax.random.key(1))["params"])
  ctx = methods.make_context(model, params)
  for name in methods.SPEC_METHODS:
    R = methods.get(name)
    c = R.prepare(jax.random.key(2), params, ctx)
    out = jax.jit(R)(params, fresh, jnp.int32(1), jax.random.key(3), c)
    assert jax.tree.structure(out) == jax.tree.structure(params), name
    assert all(o.dtype == jnp.bfloat16 and o.shape == p.shape
               for o, p in zip(jax.tree.leaves(out), jax.tree.leaves(params))), name


def _setup(seed=0):
  model = models.create("mlp", 8)
  v = model.init(jax.random.key(seed))
  fresh = model.init(jax.random.key(seed + 100))
  return model, v, fresh, methods.make_context(model, v["params"])


def _frac_changed(a, b):
  return np.mean(np.asarray(a) != np.asarray(b))


def test_standard_full_head_do_what_spec_says():
  model, v, fresh, ctx = _setup()
  p, f = v["params"], fresh["params"]
  key = jax.random.key(0)
  assert jax.tree.all(jax.tree.map(jnp.array_equal, methods.get("standard")(p, f, 1, key, ctx), p))
  assert jax.tree.all(jax.tree.map(jnp.array_equal, methods.get("full")(p, f, 1, key, ctx), f))
  out = methods.get("head")(p, f, 1, key, ctx)
  np.testing.assert_array_equal(out["dense3"]["kernel"], f["dense3"]["kernel"])
  np.testing.assert_array_equal(out["dense1"]["kernel"], p["dense1"]["kernel"])


def test_random_subset_redraws_each_event_fixed_subset_reuses_one_mask():
  model, v, fresh, ctx = _setup()
  p, f = v["params"], fresh["params"]
  key = jax.random.key(7)  # the same key at both events: the stage must still change the draw
  rs = methods.get("random_subset", fraction=0.2)
  m1, m2 = rs.reinit_mask(p, 1, key, ctx), rs.reinit_mask(p, 2, key, ctx)
  assert not np.array_equal(m1["dense1"]["kernel"], m2["dense1"]["kernel"])
  assert abs(_frac_changed(rs(p, f, 1, key, ctx)["dense1"]["kernel"], p["dense1"]["kernel"])
             - 0.2) < 0.01
  fs = methods.get("fixed_subset", fraction=0.2)
  c = fs.prepare(jax.random.key(3), p, ctx)
  f1, f2 = fs.reinit_mask(p, 1, key, c), fs.reinit_mask(p, 5, jax.random.key(9), c)
  assert np.array_equal(f1["dense1"]["kernel"], f2["dense1"]["kernel"])
  with pytest.raises(ValueError, match="prepare"):
    fs(p, f, 1, key, ctx)


def test_magnitude_reinitializes_the_smallest_entries():
  model, v, fresh, ctx = _setup()
  p, f = v["params"], fresh["params"]
  out = methods.get("magnitude", fraction=0.25)(p, f, 1, jax.random.key(0), ctx)
  k, ko, kf = (np.asarray(t["dense2"]["kernel"]) for t in (p, out, f))
  changed = ko != k
  assert abs(changed.mean() - 0.25) < 0.01
  assert np.abs(k[changed]).max() <= np.abs(k[~changed]).min()
  np.testing.assert_array_equal(ko[changed], kf[changed])


@pytest.mark.parametrize("M", [1, 2, 3])
@pytest.mark.parametrize("t", [1, 2, 3, 4, 5, 6])
def test_layerwise_keeps_rescaled_blocks_and_reinitializes_the_rest(M, t):
  model, v, fresh, ctx = _setup()
  # move away from θ_1 so that rescaling is visible
  trained = jax.tree.map(lambda x: 3.0 * x + 0.01, v["params"])
  R = methods.get("layerwise", events_per_block=M)
  out = jax.jit(R)(trained, fresh["params"], jnp.int32(t), jax.random.key(0), ctx)
  k = min(-(-t // M), model.num_blocks)
  for i in range(1, 4):
    name = f"dense{i}"
    if i <= k:  # kept, kernel rescaled to its first-init norm, direction kept
      np.testing.assert_allclose(np.linalg.norm(out[name]["kernel"]),
                                 np.linalg.norm(v["params"][name]["kernel"]), rtol=1e-5)
      cos = np.sum(out[name]["kernel"] * trained[name]["kernel"]) / (
          np.linalg.norm(out[name]["kernel"]) * np.linalg.norm(trained[name]["kernel"]))
      assert cos > 0.9999
      # biases start at zero norm: left as trained (documented choice)
      np.testing.assert_allclose(out[name]["bias"], trained[name]["bias"])
    else:
      np.testing.assert_array_equal(out[name]["kernel"], fresh["params"][name]["kernel"])


def test_layerwise_normalization_gives_zero_mean_unit_std_block_output():
  model, v, fresh, ctx = _setup()
  x = jax.random.normal(jax.random.key(1), (256, 128)) * 2.0 + 1.0
  R = methods.get("layerwise", events_per_block=1)
  trained = dict(v, params=jax.tree.map(lambda a: 2.0 * a, v["params"]))
  set_before = None
  for t in (1, 2):
    out, _ = events.apply_event(R, model, trained, fresh, None, None, t, jax.random.key(0), ctx, x,
                                optimizer_policy="keep")
    # block t's normalized output on the measuring batch
    _, state = model.module.apply(out, x, train=False, mutable=["intermediates"])
    raw = state["intermediates"][f"lwnorm{t}"]["raw"][0]
    lw = out["layerwise_norm"][f"lwnorm{t}"]
    z = (raw - lw["mu"]) / lw["sigma"]
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1.0) < 1e-4
    # a later block's normalization is still the identity; a lower one keeps its values
    assert float(out["layerwise_norm"]["lwnorm3"]["mu"]) == 0.0
    assert float(out["layerwise_norm"]["lwnorm3"]["sigma"]) == 1.0
    if set_before is not None:
      assert jax.tree.all(jax.tree.map(jnp.array_equal, out["layerwise_norm"]["lwnorm1"],
                                       set_before))
    set_before = out["layerwise_norm"]["lwnorm1"]
    trained = out


def test_registered_function_method_in_a_few_lines():
  @methods.register("test_head_sp")
  def head_sp(params, fresh, stage, key, context, shrink=0.4, perturb=0.1):
    return methods.shrink_perturb(params, fresh, shrink, perturb,
                                  mask=masks.head(params, context.head))

  model, v, fresh, ctx = _setup()
  R = methods.get("test_head_sp", shrink=0.5)
  p, f = v["params"], fresh["params"]
  out = jax.jit(R)(p, f, jnp.int32(1), jax.random.key(0), ctx)
  np.testing.assert_allclose(out["dense3"]["kernel"],
                             0.5 * p["dense3"]["kernel"] + 0.1 * f["dense3"]["kernel"], rtol=1e-6)
  np.testing.assert_array_equal(out["dense1"]["kernel"], p["dense1"]["kernel"])
  mask = R.reinit_mask(p, 1, jax.random.key(0), ctx)  # derived: where θ_init has weight
  assert bool(jnp.all(mask["dense3"]["kernel"])) and not bool(jnp.any(mask["dense1"]["kernel"]))
  with pytest.raises(ValueError, match="no hyperparameter 'gamma'"):
    methods.get("test_head_sp", gamma=1.0)


@pytest.mark.parametrize("call,match", [
    (lambda: methods.get("nope"), r"method must be one of \(.*'layerwise'"),
    (lambda: methods.get("shrink_perturb", shrink=1.5), "shrink must be in"),
    (lambda: methods.get("shrink_perturb", perturb=-0.1), "perturb must be in"),
    (lambda: methods.get("random_subset", fraction=2.0), "fraction must be in"),
    (lambda: methods.get("magnitude", fraction=-1), "fraction must be in"),
    (lambda: methods.get("layerwise", events_per_block=0), "events_per_block"),
    (lambda: methods.get("standard")({"a": jnp.ones(2)}, {"a": jnp.ones(2)}, 0,
                                     jax.random.key(0)), "stage must be"),
    (lambda: methods.blend({"a": jnp.ones(2)}, {"a": jnp.ones(2)}, {"b": True}),
     "mask must have the structure"),
    (lambda: methods.blend({"a": jnp.ones(2)}, {"b": jnp.ones(2)}, {"a": True}),
     "fresh must have the structure"),
    (lambda: models.create("nope", 10), r"model must be one of"),
    (lambda: methods.shrink_perturb({"a": jnp.ones(2)}, {"a": jnp.ones(3)}),
     "fresh leaf 'a' has shape"),
])
def test_bad_input_fails_with_one_clear_line(call, match):
  with pytest.raises(ValueError, match=match) as e:
    call()
  assert "\n" not in str(e.value)
