"""train/compiled.py: a grid's runs reuse a compiled function only when nothing it reads differs.

Two classes: (1) every schema field outside a kind's exclusion lists changes that kind's key (so
the step, the event, ... are rebuilt for it); (2) every field a list excludes, changed between two
runs of one process, gives the second run the result it gets alone (fresh cache), bit for bit on
this machine. A field the step or the event reads but a list wrongly excludes fails (2). A host
field without a hand-written case gets one from its schema entry (:func:`generated_cases`).
"""

import ast

import pytest

from reinit_jax import schema, train
from reinit_jax.train import compiled
from reinit_jax.train.config import base_config, fields
from train_helpers import tiny_config

KINDS = tuple(compiled.NOT_READ)


def test_lists_name_real_fields():
  known = set(fields())
  assert set(compiled.NOT_COMPILED) <= known
  for kind, names in compiled.NOT_READ.items():
    assert set(names) <= known, kind


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_not_listed_is_in_the_key(kind):
  base = base_config().to_dict()
  skip = set(compiled.NOT_COMPILED) | set(compiled.NOT_READ[kind])
  want = compiled.key(kind, base, [1])
  assert compiled.key(kind, base, [2]) != want  # what the built data and devices decide
  for name in fields():
    section, _, leaf = name.rpartition(".")
    changed = base_config().to_dict()
    (changed[section] if section else changed)[leaf] = "<another value>"
    same = compiled.key(kind, changed, [1]) == want
    assert same == (name in skip), (kind, name)


# An excluded field, its value in run A and in run B (a tiny synthetic run; method and hparams of
# both runs where the field needs them).
EXCLUDED = [
  ("reinit.method", dict(method="standard"), dict(method="shrink_perturb")),
  ("reinit.hparams", dict(method="shrink_perturb"),
   dict(method="shrink_perturb", hparams={"shrink": 0.7})),
  ("reinit.optimizer_policy", dict(method="magnitude"), dict(method="magnitude",
                                                            optimizer_policy="mask")),
  ("reinit.select_impl", dict(method="magnitude", select_impl="bracket"),
   dict(method="magnitude", select_impl="sort")),
  ("reinit.norm_batch_size", dict(method="layerwise", model__num_blocks=3),
   dict(method="layerwise", model__num_blocks=3, norm_batch_size=16)),
  ("reinit.idle_norm_policy", dict(method="layerwise", model__num_blocks=2),
   dict(method="layerwise", model__num_blocks=2, idle_norm_policy="skip")),
  ("data.synthetic_alpha", dict(), dict(synthetic_alpha=3.0)),
  ("data.seed", dict(), dict(data__seed=7)),
  ("data.synthetic_train", dict(), dict(synthetic_train=32)),
  ("run.seeds", dict(seeds=(0, 1)), dict(seeds=(5, 6))),
  ("run.eval_batch_size", dict(), dict(eval_batch_size=100)),
  ("run.max_steps_per_call", dict(method="full"), dict(method="full", max_steps_per_call=1)),
  ("run.nan_policy", dict(method="full"), dict(method="full", nan_policy="skip")),
  ("reinit.distill_beta", dict(method="full", distill=True),
   dict(method="full", distill=True, distill_beta=0.5)),
  ("reinit.batch_stats_policy", dict(method="full"), dict(method="full", batch_stats_policy="keep")),
  ("reinit.distill_live", dict(method="full", distill=True),
   dict(method="full", distill=True, distill_live=True)),
  ("name", dict(), dict(name="other")),
  ("data.label_noise", dict(), dict(label_noise=0.3)),
  ("data.synthetic_test", dict(), dict(synthetic_test=128)),
  ("data.train_subset", dict(), dict(train_subset=48)),
  ("data.validation_fraction", dict(), dict(validation_fraction=0.25)),
  ("data.per_seed", dict(seeds=(0, 1)), dict(seeds=(0, 1), per_seed=True)),
  ("data.chunks", dict(), dict(chunks=3)),
  ("optim.setting", dict(), dict(setting="none")),  # Ø resolves to the fields' defaults
  ("optim.setting_weight_decay", dict(setting="DCW", setting_augmentation="none"),
   dict(setting="DCW", setting_augmentation="none", setting_weight_decay=0.1)),
  ("optim.setting_augmentation", dict(setting_augmentation="cifar"),
   dict(setting_augmentation="flip")),
  ("run.eval_every_epochs", dict(), dict(eval_every_epochs=1)),
  ("run.eval_train", dict(), dict(eval_train="stage")),
  ("run.fit_threshold", dict(eval_train="eval"), dict(eval_train="eval", fit_threshold=0.5)),
  ("run.checkpoint_every", dict(), dict(checkpoint_every=2)),
  ("run.keep_checkpoints", dict(), dict(keep_checkpoints=3)),
  ("run.progress", dict(), dict(progress="log")),
  ("run.restart", dict(), dict(restart=True)),
  ("run.mesh", dict(seeds=(0, 1)), dict(seeds=(0, 1), mesh="data")),
  ("run.tune_cpu_allocator", dict(), dict(tune_cpu_allocator=False)),
  ("run.compilation_cache", dict(), dict(compilation_cache="off")),
  ("run.feature_diagnostics", dict(), dict(feature_diagnostics=True)),
]
# Excluded fields a tiny synthetic run cannot exercise, and where they are read instead.
UNEXERCISED = {
  "data.download": "TFDS preparation only (tests/test_data_tfds.py)",
  "data.data_dir": "TFDS preparation only", "data.manual_dir": "TFDS preparation only",
  "data.in_memory": "a synthetic data set is always in memory; streaming is in `derived`",
  "run.distributed": "jax.distributed start-up, before any function is built",
  "run.stop_after_steps": "the host loop's stop (a stopped run's digest is of an earlier step)",
  "run.pack": "launch/grid.py's grouping (tests/test_pack.py: packed = alone, bitwise)",
  "run.pack_max_runs": "launch/grid.py's grouping",
}


def another_value(field):
  """A valid value of schema ``field`` other than its default, from its entry alone (the other
  flag, a listed choice, a nearby number), or None."""
  default = field.default
  candidates = [not default] if isinstance(default, bool) else []
  try:
    candidates += list(ast.literal_eval(f"[{field.allowed}]"))  # one_of's choices, as reprs
  except (ValueError, SyntaxError):
    pass
  if schema.is_number(default):
    candidates += [default + 1, default * 2, default / 2]
  return next((v for v in candidates + [1, 2, 0.5] if v != default and field.check(v)), None)


def generated_cases(excluded, unexercised):
  """A case from the schema entry for every host field (read by no compiled function) that has
  none in ``excluded`` and no reason in ``unexercised``: a new host field needs no test case when
  a tiny run takes the value its entry gives (the run both ways below)."""
  cased = {e[0] for e in excluded} | set(unexercised)
  return [(name, {}, {name.replace(".", "__"): another_value(field)})
          for name, field in fields().items() if not field.compiled and name not in cased]


GENERATED = generated_cases(EXCLUDED, UNEXERCISED)


def test_every_excluded_field_has_a_case():
  """The exclusions of the train step, the event, init and prepare (and the fields no function
  reads) are each run both ways below, or named with the reason they cannot be: a new exclusion
  needs a case, which a host field's schema entry gives when it can."""
  listed = set(compiled.NOT_COMPILED).union(
    *(compiled.NOT_READ[k] for k in ("train", "event", "init", "prepare")))
  cased = {e[0] for e in EXCLUDED + GENERATED}
  assert listed == cased | set(UNEXERCISED), (listed - cased - set(UNEXERCISED),
                                               (cased | set(UNEXERCISED)) - listed)
  no_value = [name for name, _, b in GENERATED if None in b.values()]
  assert not no_value, f"give these a case in EXCLUDED (no other value in the schema): {no_value}"


def test_a_host_field_without_a_case_gets_one_from_its_schema_entry():
  """Dropping the hand-written case of each of three host fields (a number, a flag, a choice):
  each gets one from its schema entry, a valid value other than the default."""
  dropped = {"run.keep_checkpoints", "run.restart", "run.progress"}
  got = {e[0]: e[2] for e in generated_cases([e for e in EXCLUDED if e[0] not in dropped],
                                              UNEXERCISED)}
  assert set(got) == dropped
  assert got == {"run.keep_checkpoints": {"run__keep_checkpoints": 3},
                 "run.restart": {"run__restart": True}, "run.progress": {"run__progress": "bar"}}


def test_the_forward_pass_kinds_keep_model_and_input_fields():
  """Evaluation, the teacher's cache and the training-set fit read the model and the input
  transform; only the parameter norm ignores every field (its inputs' shapes are the key)."""
  forward = ("model.name", "model.num_blocks", "model.options", "data.dataset",
             "data.augmentation", "data.image_size")
  for kind, names in compiled.NOT_READ.items():
    if kind != "norm":
      assert not set(forward) & (set(names) | set(compiled.NOT_COMPILED)), kind
QUICK = {"reinit.method", "reinit.select_impl", "data.synthetic_alpha", "run.max_steps_per_call"}


def _digest(config, workdir):
  return train.run(config, str(workdir))["params_digest"]


@pytest.mark.parametrize("name,a,b", [
  pytest.param(*e, marks=() if e[0] in QUICK else pytest.mark.slow, id=e[0])
  for e in EXCLUDED + GENERATED])
def test_an_excluded_field_never_changes_a_result(name, a, b, tmp_path):
  assert any(name in names for names in (compiled.NOT_COMPILED, *compiled.NOT_READ.values()))
  compiled.clear()
  _digest(tiny_config(**a), tmp_path / "a")
  before = len(compiled._CACHE)
  shared = _digest(tiny_config(**b), tmp_path / "b_shared")
  assert len(compiled._CACHE) < before + len(KINDS), "run B reused nothing: the test shows nothing"
  compiled.clear()
  alone = _digest(tiny_config(**b), tmp_path / "b_alone")
  assert shared == alone, name
