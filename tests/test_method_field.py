"""One field says which method(s) run: ``reinit.method`` is a name or a study's tuple of names, and
a name given later (``--config.reinit.method=``, ``:method=``, a sweep point) replaces the tuple,
so a study never silently ignores the method a user asked for."""

import pytest

from reinit_jax.launch import overrides, sweep
from reinit_jax.train import base_config, validate
from reinit_jax.train.validation import method_names, with_method
from reinit_jax.train.validation import method_hparams

DEFAULT = "configs/default.py"


def _default(arg=None):
  return sweep.load_module(DEFAULT).get_config(arg)


@pytest.mark.parametrize("how", ["flag", "arg"])
@pytest.mark.parametrize("name", ["full", "shrink_perturb", "magnitude"])
def test_a_name_replaces_the_default_study(how, name):
  if how == "flag":
    c = _default()
    overrides.set_field(c, "reinit.method", name)
  else:
    c = _default(f"method={name}")
  assert c.reinit.method == name and method_names(c) == (name,)
  assert validate(c).reinit.method == name


def test_a_tuple_replaces_a_name_and_one_name_tuple_is_that_method():
  c = base_config()
  overrides.set_field(c, "reinit.method", ("standard", "full"))
  assert method_names(c) == ("standard", "full")
  overrides.set_field(c, "reinit.method", ("full",))
  assert validate(c).reinit.method == "full"  # ('full',) is the method full, not a study


@pytest.mark.parametrize("bad", ["shrink_perturbb", ("standard", "shrink_perturbb")])
def test_a_misspelt_method_fails_in_one_line_even_in_a_study(bad):
  c = _default()
  overrides.set_field(c, "reinit.method", bad)
  with pytest.raises(ValueError, match=r"config\.reinit\.method='shrink_perturbb' is invalid"):
    validate(c)


def test_the_old_methods_field_is_named_in_one_line():
  with pytest.raises(ValueError, match="no field 'reinit.methods'; did you mean reinit.method"):
    overrides.set_field(base_config(), "reinit.methods", ("standard",))


def test_study_hparams_go_to_the_methods_that_declare_them():
  c = with_method(base_config(), ("standard", "shrink_perturb", "random_subset"))
  c.reinit.hparams = {"shrink": 0.6, "fraction": 0.3}
  validate(c)
  assert method_hparams(c, "standard") == {}
  assert method_hparams(c, "shrink_perturb") == {"shrink": 0.6}
  assert method_hparams(c, "random_subset") == {"fraction": 0.3}
  c.reinit.hparams = {"shrinkk": 0.6}
  with pytest.raises(ValueError, match="none of them declares 'shrinkk'"):
    validate(c)


def test_every_method_of_a_study_is_checked_against_the_stages():
  c = with_method(base_config(), ("standard", "layerwise"))
  c.model.num_blocks = 2
  c.reinit.hparams = {"events_per_block": 2}
  c.optim.epochs, c.reinit.stages = 6, 3  # 3 is not a multiple of layerwise's M = 2
  with pytest.raises(ValueError, match="config.reinit.stages=3 is invalid"):
    validate(c)


@pytest.mark.parametrize("text,want", [("(standard;full)", ("standard", "full")),
                                       ("(full;)", ("full",)), ("(0;1)", (0, 1)),
                                       ("(layerwise; 0.5)", ("layerwise", 0.5)),
                                       ("full", "full"), ("(x)", "(x)")])
def test_arg_tuples_of_bare_names(text, want):
  assert overrides.parse_value(text) == want


def test_a_study_given_in_arg_runs_its_methods():
  c = sweep.load_module("configs/synthetic.py").get_config("method=(standard;layerwise)")
  assert method_names(validate(c)) == ("standard", "layerwise")
