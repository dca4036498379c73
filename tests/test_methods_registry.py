"""The one registration path: declared hyperparameters, masks, prepare, and the user's own modules."""

import importlib.util
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinit_jax import events, masks, methods, models


def _setup():
  model = models.create("mlp", 8)
  v, fresh = model.init(jax.random.key(0)), model.init(jax.random.key(1))
  return model, v["params"], fresh["params"], methods.make_context(model, v["params"])


def test_every_builtin_is_declared_with_its_mask_and_checked_hyperparameters():
  assert set(methods.SPEC_METHODS) | {"rescale_only"} <= set(methods.names())
  assert importlib.util.find_spec("reinit_jax.extra_methods") is None
  for name in methods.SPEC_METHODS + ("rescale_only",):
    R = methods.get(name)
    assert R.declaration.mask is not None, name  # no probe call at an event
    assert all(isinstance(h, methods.Hparam) for h in R.declaration.hparams.values()), name
  assert methods.get("shrink_perturb").hparams == {"shrink": 0.4, "perturb": 0.1}
  assert methods.get("layerwise", events_per_block=np.int64(3)).events_per_block == 3
  assert type(methods.get("layerwise", events_per_block=np.int64(3)).hparams["events_per_block"]) \
      is int
  assert methods.get("shrink_perturb").events_per_block is None
  # Integer hyperparameters take Python and numpy integers, stored as int, and refuse the rest.
  assert type(methods.get("continual_backprop", maturity=np.int32(0)).hparams["maturity"]) is int
  for bad in (-1, 1.5, True, "3"):
    with pytest.raises(ValueError, match=r"continual_backprop: maturity must be an integer >= 0"):
      methods.get("continual_backprop", maturity=bad)
  assert [methods.get(n).uses_normalization for n in ("layerwise", "standard")] == [True, False]
  carried = [n for n in methods.names() if methods.get(n).carries_state]
  assert carried == ["continual_backprop"] and methods.get("continual_backprop").prepares
  assert [methods.get(n).prepares for n in ("fixed_subset", "redo")] == [True, False]


def test_a_carry_is_made_by_prepare_and_advanced_before_each_event():
  """A user's method with a carry (an event counter kept in the context): prepare makes it,
  events.advance_context advances it, R reads the advanced value."""
  @methods.register("test_counting", activations=True, carry=methods.Carry(
      lambda params, context: jnp.zeros((), jnp.int32),
      lambda carry, params, context: carry + 1))
  def counting(params, fresh, stage, key, context):
    return jax.tree.map(lambda p: p + context.carry, params)

  model = models.create("mlp", 8)
  variables = model.init(jax.random.key(0))
  params, fresh = variables["params"], model.init(jax.random.key(1))["params"]
  context = methods.make_context(model, params)
  method = methods.get("test_counting")
  context = method.prepare(jax.random.key(0), params, context)
  assert int(context.carry) == 0
  x = jnp.ones((2, *model.input_shape))
  for n in (1, 2):
    context = events.advance_context(method, model, variables, context, x)
    assert int(context.carry) == n and context.activations is not None
  out = method(params, fresh, 1, jax.random.key(0), context)
  for got, p in zip(jax.tree.leaves(out), jax.tree.leaves(params)):
    np.testing.assert_array_equal(got, p + 2)


@pytest.mark.parametrize("name,kw,match", [
    ("shrink_perturb", {"shrik": 0.3},
     r"^shrink_perturb: no hyperparameter 'shrik' \(did you mean 'shrink'\?\); allowed: perturb, "
     r"shrink$"),
    ("standard", {"shrink": 0.3}, r"^standard: no hyperparameter 'shrink'; allowed: none$"),
    ("fixed_subset", {"p": 0.3}, r"no hyperparameter 'p'; allowed: fraction$"),
    ("shrink_perturb", {"shrink": 1.5}, r"^shrink_perturb: shrink must be in \[0, 1\], got 1.5$"),
    ("shrink_perturb", {"perturb": "0.1"}, r"perturb must be in \[0, 1\], got '0.1'"),
    ("shrink_perturb", {"perturb": True}, r"perturb must be in \[0, 1\], got True"),
    ("fixed_subset", {"fraction": -0.1}, r"fraction must be in \[0, 1\], got -0.1"),
    ("layerwise", {"events_per_block": 1.5}, r"events_per_block must be an integer >= 1, got 1.5"),
    ("layerwise", {"events_per_block": 0}, r"events_per_block must be an integer >= 1, got 0"),
])
def test_get_rejects_a_bad_hyperparameter_in_one_line(name, kw, match):
  with pytest.raises(ValueError, match=match) as e:
    methods.get(name, **kw)
  assert "\n" not in str(e.value)


def _head_mask(params, stage, key, context, **hparams):
  return masks.head(params, context.head)


CALLS = []


@methods.register("test_declared_head_sp", mask=_head_mask,
                  hparams={"shrink": methods.unit_interval(0.4),
                           "perturb": methods.Hparam(0.1, "in (0, 1)", lambda g: 0 < g < 1)})
def _declared_head_sp(params, fresh, stage, key, context, shrink, perturb):
  CALLS.append(stage)
  return methods.shrink_perturb(params, fresh, shrink, perturb,
                                mask=_head_mask(params, stage, key, context))


def test_a_declared_mask_replaces_the_probe_call():
  _, p, f, ctx = _setup()
  R = methods.get("test_declared_head_sp", shrink=0.5)
  CALLS.clear()
  mask = R.reinit_mask(p, 1, jax.random.key(0), ctx)
  assert CALLS == []  # R was not called to find the mask
  assert bool(jnp.all(mask["dense3"]["kernel"])) and not bool(jnp.any(mask["dense1"]["kernel"]))
  out = R(p, f, 2, jax.random.key(0), ctx)
  assert CALLS == [2]
  np.testing.assert_allclose(out["dense3"]["kernel"],
                             0.5 * p["dense3"]["kernel"] + 0.1 * f["dense3"]["kernel"], rtol=1e-6)
  with pytest.raises(ValueError, match=r"perturb must be in \(0, 1\), got 0"):
    methods.get("test_declared_head_sp", perturb=0)


def _r(params, fresh, stage, key, context, shrink):
  return params


@pytest.mark.parametrize("register,match", [
    (lambda: methods.register("test_bad1", hparams={"shrink": methods.unit_interval(0.4),
                                                    "extra": methods.unit_interval(0.1)})(_r),
     r"R takes no argument 'extra'"),
    (lambda: methods.register("test_bad2", hparams={})(_r),
     r"R's argument 'shrink' is not a declared hyperparameter"),
    (lambda: methods.register("test_bad3", hparams={"shrink": 0.4})(_r),
     r"hparams must map names to methods.Hparam"),
    (lambda: methods.register("test_bad4")(lambda params, fresh, key, stage, context: params),
     r"R must take params, fresh, stage, key, context first"),
    (lambda: methods.register("shrink_perturb")(_r), r"'shrink_perturb' is already registered by "
     r"reinit_jax.methods.shrink_perturb_everywhere"),
    (lambda: methods.register("")(_r), r"method name must be a non-empty string"),
    (lambda: methods.register("test_bad5", carry=methods.Carry(lambda *a, **k: 0,
                                                               lambda *a, **k: 0))(_r),
     r"carry must be a methods.Carry and needs activations=True"),
    (lambda: methods.register("test_bad6", carry=(len, len), activations=True)(_r),
     r"carry must be a methods.Carry"),
])
def test_a_bad_declaration_fails_at_registration(register, match):
  with pytest.raises(ValueError, match=match):
    register()
  assert "test_bad" not in " ".join(methods.names())


USER_MODULE = '''
import jax
from reinit_jax import masks, methods


def first_block(params, stage, key, context, **hparams):
  return masks.up_to_block(params, context.blocks, 1)


def drawn(key, params, context, fraction):
  return masks.and_(masks.random_fraction(key, params, fraction), first_block(params, 1, key,
                                                                            context))


def where_drawn(params, stage, key, context, fraction):
  return context.fixed_mask


@methods.register("{name}", hparams={{"fraction": methods.unit_interval(0.5)}},
                  mask=where_drawn, prepare=drawn)
def fixed_first_block(params, fresh, stage, key, context, fraction):
  """θ_init on a fraction of block 1 drawn once before training."""
  return methods.blend(params, fresh, context.fixed_mask)
'''


def test_import_modules_registers_a_method_from_a_file_and_from_a_module_name(tmp_path,
                                                                             monkeypatch):
  path = tmp_path / "my_methods.py"
  path.write_text(USER_MODULE.format(name="test_user_file_method"))
  (mod,) = methods.import_modules((str(path),))
  assert "test_user_file_method" in methods.names()
  assert methods.import_modules([str(path)]) == (mod,)  # once per process: no re-registration
  _, p, f, ctx = _setup()
  R = methods.get("test_user_file_method", fraction=0.3)
  c = R.prepare(jax.random.key(5), p, ctx)
  out = jax.jit(R)(p, f, jnp.int32(1), jax.random.key(0), c)
  mask = R.reinit_mask(p, 1, jax.random.key(0), c)
  changed = np.asarray(out["dense1"]["kernel"]) != np.asarray(p["dense1"]["kernel"])
  np.testing.assert_array_equal(changed, np.asarray(mask["dense1"]["kernel"]))
  assert 0.25 < changed.mean() < 0.35
  np.testing.assert_array_equal(out["dense2"]["kernel"], p["dense2"]["kernel"])
  with pytest.raises(ValueError, match=r"^test_user_file_method: fraction must be in \[0, 1\]"):
    methods.get("test_user_file_method", fraction=2)
  # a dotted module name on sys.path
  (tmp_path / "my_pkg").mkdir()
  (tmp_path / "my_pkg" / "__init__.py").write_text("")
  (tmp_path / "my_pkg" / "more.py").write_text(USER_MODULE.format(name="test_user_pkg_method"))
  monkeypatch.syspath_prepend(str(tmp_path))
  methods.import_modules("my_pkg.more")
  assert "test_user_pkg_method" in methods.names()
  for name in ("my_pkg.more", "my_pkg"):  # tmp_path goes away with the test
    sys.modules.pop(name)


def test_import_modules_fails_in_one_line_and_keeps_a_real_import_error(tmp_path):
  with pytest.raises(ValueError, match=r"^modules: no file 'nope/none.py'"):
    methods.import_modules(["nope/none.py"])
  with pytest.raises(ValueError, match=r"^modules: cannot import 'no_such_pkg.sub' \(no module "
                                       r"named 'no_such_pkg'\)$"):
    methods.import_modules(["no_such_pkg.sub"])
  with pytest.raises(ValueError, match=r"modules: each entry must be"):
    methods.import_modules([3])
  broken = tmp_path / "broken.py"
  broken.write_text(textwrap.dedent("""
      import a_dependency_that_is_not_installed
  """))
  with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_not_installed"):
    methods.import_modules([str(broken)])
  assert not any("broken" in m for m in sys.modules)  # a failed file import can be retried
