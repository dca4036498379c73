"""Bad configs and bad inputs fail before any compute, in one line naming the field (README,
Reliability): property tests over every field (hypothesis), overrides, launch.py's exit status."""

import gzip
import os
import subprocess
import sys

import ml_collections
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from reinit_jax import launch, train
from reinit_jax.train.config import fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

not_int = st.one_of(st.text(max_size=5), st.floats(allow_nan=True).filter(lambda f: f != int(f)
                    if f == f and abs(f) < 1e300 else True), st.booleans(), st.lists(st.integers(),
                    max_size=2))
not_num = st.one_of(st.text(max_size=5), st.booleans(), st.just(float("nan")), st.just(float("inf")),
                    st.lists(st.floats(), max_size=2))
not_str = st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.text(), max_size=2))
unknown_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1,
                       max_size=12).map(lambda s: "x" + s)


def _int_below(low, none_ok=False):
  """Integers < low, and non-integers (None too unless the field allows it)."""
  return st.one_of(not_int, st.integers(max_value=low - 1), *([] if none_ok else [st.none()]))


def _fraction(none_ok=False):  # a number in [0, 1)
  return st.one_of(not_num, st.floats(min_value=1.0, allow_infinity=False),
                   st.floats(max_value=-1e-9, allow_infinity=False),
                   *([] if none_ok else [st.none()]))


def _num0():  # a finite number >= 0
  return st.one_of(not_num, st.none(), st.floats(max_value=-1e-9, allow_infinity=False))


def _bool(none_ok=False):
  return st.one_of(st.integers(), st.text(max_size=4), st.floats(),
                   *([] if none_ok else [st.none()]))


def _name():  # a registry name or one of a fixed set of strings
  return st.one_of(not_str, st.none(), unknown_name)


def _path():  # None or a string
  return st.one_of(st.integers(), st.floats(), st.lists(st.text(), max_size=2))


_DICT = st.one_of(st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=2))
_STR_TUPLE = st.one_of(st.integers(), st.text(min_size=1, max_size=4), st.just((1,)),
                       st.lists(st.integers(), min_size=1, max_size=2))

# Values every field must reject, by dotted name, written from the field's documented meaning
# (launch.py --help) rather than from the validator's checks.
BAD = {
  "name": not_str,
  "data.dataset": _name(),
  "data.data_dir": _path(),
  "data.manual_dir": _path(),
  "data.validation_fraction": _fraction(none_ok=True),
  "data.batch_size": _int_below(0),
  "data.augmentation": _name(),
  "data.image_size": _int_below(1, none_ok=True),
  "data.label_noise": _fraction(),
  "data.chunks": _int_below(1),
  "data.train_subset": _int_below(1, none_ok=True),
  "data.in_memory": _bool(none_ok=True),
  "data.download": _bool(),
  "data.seed": _int_below(0, none_ok=True),
  "data.per_seed": _bool(),
  "data.synthetic_alpha": not_num,
  "data.synthetic_train": _int_below(1),
  "data.synthetic_test": _int_below(1),
  "model.name": _name(),
  "model.num_blocks": _int_below(1, none_ok=True),
  "model.options": _DICT,
  "optim.optimizer": _name(),
  "optim.options": _DICT,
  "optim.momentum": _fraction(),
  "optim.learning_rate": st.one_of(not_num, st.none(), st.floats(max_value=0, allow_infinity=False)),
  "optim.schedule": _name(),
  "optim.weight_decay": _num0(),
  "optim.l2_init": _num0(),
  "optim.epochs": _int_below(1),
  "optim.setting": _name(),
  "optim.setting_weight_decay": _num0(),
  "optim.setting_augmentation": _name(),
  "reinit.method": st.one_of(_name(), st.just(()), st.just(("standard", "standard")),
                             st.just(("standard", 1)), st.just(("standard", "nope"))),
  "reinit.hparams": _DICT,
  "reinit.stages": _int_below(1),
  "reinit.optimizer_policy": _name(),
  "reinit.batch_stats_policy": _name(),
  "reinit.idle_norm_policy": _name(),
  "reinit.select_impl": _name(),
  "reinit.norm_batch_size": _int_below(1),
  "reinit.every_steps": _int_below(0),
  "reinit.step_trigger": _name(),
  "reinit.step_threshold": st.one_of(not_num, st.none(), st.floats(max_value=0, allow_infinity=False),
                                     st.floats(min_value=1.0001, allow_infinity=False)),
  "reinit.distill": _bool(),
  "reinit.distill_beta": _num0(),
  "reinit.distill_live": _bool(),
  "run.seeds": st.one_of(st.integers(), st.text(min_size=1, max_size=4), st.just(()),
                         st.just((0, 0)), st.just((-1,)), st.just((0.5,)), st.just((True,))),
  "run.eval_every_epochs": _int_below(0),
  "run.eval_batch_size": _int_below(1),
  "run.max_steps_per_call": _int_below(1),
  "run.checkpoint_every": _int_below(0),
  "run.keep_checkpoints": _int_below(2),  # one checkpoint could not fall back
  "run.progress": _name(),
  "run.distributed": _bool(),
  "run.feature_diagnostics": _bool(),
  "run.stop_after_steps": _int_below(0),
  "run.nan_policy": _name(),
  "run.restart": _bool(),
  "run.tune_cpu_allocator": _bool(),
  "run.compilation_cache": st.one_of(not_str, st.none(), st.just("")),
  "run.modules": _STR_TUPLE,
  "run.mesh": _name(),
  "run.pack": _name(),
  "run.pack_max_runs": _int_below(1),
  "run.eval_train": _name(),
  # A number in (0, 1]: 0, negatives and anything above 1 are refused.
  "run.fit_threshold": st.one_of(not_num, st.none(), st.floats(max_value=0, allow_infinity=False),
                                 st.floats(min_value=1.0001, allow_infinity=False)),
}
FIELDS = sorted(fields())


def test_every_field_has_a_strategy():
  assert sorted(BAD) == FIELDS, set(BAD) ^ set(FIELDS)


@st.composite
def bad_config(draw):
  field = draw(st.sampled_from(FIELDS))
  value = draw(BAD[field])
  d = train.base_config().to_dict()
  section, _, leaf = field.rpartition(".")
  (d[section] if section else d)[leaf] = value
  return field, value, ml_collections.ConfigDict(d)  # a plain dict config: no type safety


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_config())
def test_invalid_field_one_line_value_error(fcv):
  field, value, c = fcv
  with pytest.raises(ValueError) as e:
    train.validate(c)
  msg = str(e.value)
  assert "\n" not in msg and f"config.{field}" in msg, (field, value, msg)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["learning_rate", "optim.epochs", "seeds", "hparams", "distill",
                        "model.name", "model.options.width", "run.modules"]),
       st.text(alphabet="abc(;)1.=-", min_size=1, max_size=6))
def test_overrides_of_any_text_fail_in_one_line(field, text):
  try:
    c = train.base_config()
    launch.apply(c, f"{field}={text}")
    train.validate(c)
  except ValueError as e:  # the field itself, or another field it conflicts with (stages > epochs)
    assert "\n" not in str(e) and str(e).startswith("config"), str(e)


def test_misspelt_field_is_named():
  c = train.base_config()
  with c.unlocked():
    c.run.seed = 3
  with pytest.raises(ValueError, match=r"^config.run.seed is not a field; did you mean "
                     r"config.run.seeds\?"):
    train.validate(c)
  c = train.base_config()
  with c.unlocked():
    c.optm = {"learning_rate": 0.1}
  with pytest.raises(ValueError, match=r"^config.optm is not a field"):
    train.validate(c)
  c = train.base_config()
  with c.unlocked():
    del c["reinit"]
  with pytest.raises(ValueError, match=r"^config.reinit is missing"):
    train.validate(c)


def _launch(args, timeout=120):
  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=timeout)


def test_launch_corrupt_data_and_bad_config_one_line_nonzero(tmp_path):
  """Truncated Fashion-MNIST files: exit 1 and one stderr line naming the file, no traceback; then
  a bad value given as an override."""
  manual = tmp_path / "manual"
  manual.mkdir()
  for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    (manual / name).write_bytes(gzip.compress(b"\0" * 64))
  p = _launch(["--config=configs/synthetic.py:shared_data=1", f"--workdir={tmp_path / 'w'}",
               "--config.data.dataset=fashion_mnist", f"--config.data.manual_dir={manual}",
               f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.run.progress=off"])
  err = [line for line in p.stderr.splitlines() if line.strip()]
  assert p.returncode == 1, p.stderr[-2000:]
  assert "Traceback" not in p.stderr
  assert err[-1].startswith("error: ") and "is corrupt or truncated" in err[-1], err
  p = _launch(["--config=configs/synthetic.py:learning_rate=abc", f"--workdir={tmp_path / 'v'}"])
  assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
  assert p.stderr.strip().splitlines()[-1].startswith("error: config.optim.learning_rate='abc'")


@pytest.mark.parametrize("field,arg,shown", [
  ("model.options", "model.options={'widht':3}", "{'widht': 3}"),
  ("optim.options", "optim.options={'nonexistent':1}", "{'nonexistent': 1}"),
  ("reinit.method", "method=redo,every_steps=1,model.num_blocks=2", "'redo'"),
  ("reinit.method", "method=redo,every_steps=1,model.name=scnn_tiny,dataset=fashion_mnist",
   "'redo'"),
])
def test_a_part_refused_below_names_its_field_and_value(field, arg, shown):
  """What the schema allows but the module that builds the part refuses (a model option it does
  not take, an optimizer option, a unit-level method on a model without a chain of dense layers)
  fails in validation with one line naming the field and its value."""
  c = train.base_config()
  launch.apply(c, arg)
  with pytest.raises(ValueError) as e:
    train.validate(c)
  assert str(e.value).startswith(f"config.{field}={shown} is invalid; allowed: "), str(e.value)
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("field,values", [
  ("reinit.distill_live", {"reinit.distill": True, "reinit.distill_live": False}),
  ("run.eval_train", {"data.label_noise": 0.2, "run.eval_train": "stage"}),
  ("run.feature_diagnostics", {"run.feature_diagnostics": True}),
])
def test_streamed_data_constraints_fail_before_any_data(field, values):
  """What a streamed data set rules out is known from the config alone: validation names the
  field without reading data (ImageNet is not prepared on this machine, so reading would fail)."""
  c = train.base_config()
  launch.apply(c, "dataset=imagenet2012,augmentation=lw224")
  for key, value in values.items():
    launch.apply(c, f"{key}={value!r}")
  with pytest.raises(ValueError, match=rf"^config\.{field}=.* streamed data set"):
    train.validate(c)
  launch.apply(c, "in_memory=True")  # the same config in memory passes these checks
  try:
    train.validate(c)
  except ValueError as e:
    assert "streamed" not in str(e), str(e)


def test_packed_points_with_different_data_on_a_stream_fail():
  from reinit_jax.train import validation
  configs = []
  for noise in (0.0, 0.1):
    c = train.base_config()
    launch.apply(c, f"dataset=imagenet2012,augmentation=lw224,label_noise={noise}")
    configs.append(c)
  with pytest.raises(ValueError, match=r"^config\.run\.pack=.*streamed data set"):
    validation.check_pack(configs, per_run_data=True)
  validation.check_pack(configs, per_run_data=False)
  for c in configs:
    launch.apply(c, "in_memory=True")
  validation.check_pack(configs, per_run_data=True)


@pytest.mark.parametrize("batch,devices,ok", [(0, 1, True), (0, 7, False), (8, 2, True),
                                              (6, 4, False), (40, 1, False)])
def test_batch_sizes_against_the_built_stages(batch, devices, ok):
  """The one check after the data is read: every stage's batch (full batch: all its examples)
  splits over the devices and fits the stage."""
  from reinit_jax.train import validation
  c = train.base_config()
  launch.apply(c, f"batch_size={batch}")
  stages = [16, 32]  # examples of each stage (online learning grows them)
  if ok:
    validation.check_batch_sizes(c, stages, devices)
  else:
    with pytest.raises(ValueError, match=r"^config\.data\.batch_size="):
      validation.check_batch_sizes(c, stages, devices)
