"""Bad configs and bad inputs fail before any compute, in one line naming the field (README,
Reliability): property tests over every field (hypothesis), overrides, launch.py's exit status."""

import gzip
import os
import subprocess
import sys

import ml_collections
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from reinit_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The expected kind of every field, written here independently of the validator.
INT0 = ("batch_size", "eval_every_epochs", "checkpoint_every", "stop_after_steps")
INT1 = ("chunks", "synthetic_train", "synthetic_test", "epochs", "stages", "eval_batch_size",
        "norm_batch_size", "max_steps_per_call")
OPT_INT1 = ("num_blocks", "image_size", "train_subset")
NUM0 = ("setting_weight_decay", "weight_decay", "distill_beta")
BOOL = ("distill", "distill_live", "distributed", "restart", "tune_cpu_allocator")
DICT = ("model_kwargs", "method_kwargs", "optimizer_kwargs")
NAMES = ("model", "method", "dataset", "augmentation", "setting", "setting_augmentation",
         "optimizer", "schedule", "optimizer_policy", "batch_stats_policy", "idle_norm_policy", "progress",
         "nan_policy")

not_int = st.one_of(st.text(max_size=5), st.floats(allow_nan=True).filter(lambda f: f != int(f)
                    if f == f and abs(f) < 1e300 else True), st.booleans(), st.lists(st.integers(),
                    max_size=2))
not_num = st.one_of(st.text(max_size=5), st.booleans(), st.just(float("nan")), st.just(float("inf")),
                    st.lists(st.floats(), max_size=2))
not_str = st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.text(), max_size=2))
unknown_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1,
                       max_size=12).map(lambda s: "x" + s)


def _bad_value(field):
  """A strategy of values that ``field`` must reject (wrong type, out of range, unknown name)."""
  if field in INT0:
    return st.one_of(not_int, st.none(), st.integers(max_value=-1))
  if field in INT1:
    return st.one_of(not_int, st.none(), st.integers(max_value=0))
  if field in OPT_INT1:
    return st.one_of(not_int, st.integers(max_value=0))
  if field in NUM0:
    return st.one_of(not_num, st.none(), st.floats(max_value=-1e-9, allow_infinity=False))
  if field == "learning_rate":
    return st.one_of(not_num, st.none(), st.floats(max_value=0, allow_infinity=False))
  if field in ("label_noise", "momentum"):
    return st.one_of(not_num, st.floats(min_value=1.0, allow_infinity=False),
                     st.floats(max_value=-1e-9, allow_infinity=False))
  if field == "validation_fraction":
    return st.one_of(not_num, st.floats(min_value=1.0, allow_infinity=False))
  if field == "synthetic_alpha":
    return not_num
  if field in BOOL:
    return st.one_of(st.integers(), st.text(max_size=4), st.none())
  if field in DICT:
    return st.one_of(st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=2))
  if field in NAMES:
    return st.one_of(not_str, st.none(), unknown_name)
  if field in ("seeds", "methods"):
    return st.one_of(st.integers(), st.text(min_size=1, max_size=4).filter(lambda s: field ==
                     "seeds"), st.just((0, 0)) if field == "seeds" else st.just(("nope",)),
                     st.just((-1,)) if field == "seeds" else st.just((1,)))
  if field == "data_seed":
    return st.one_of(not_int, st.integers(max_value=-1))
  if field == "keep_checkpoints":
    return st.one_of(not_int, st.none(), st.integers(max_value=1))
  if field == "name":
    return not_str
  if field == "in_memory":  # None (per data set) is allowed
    return st.one_of(st.integers(), st.text(max_size=4), st.floats())
  if field in ("data_dir", "manual_dir"):
    return st.one_of(st.integers(), st.floats(), st.lists(st.text(), max_size=2))
  raise AssertionError(f"no strategy for config.{field}: add it here")


FIELDS = sorted(train.base_config().keys())


@st.composite
def bad_config(draw):
  field = draw(st.sampled_from(FIELDS))
  value = draw(_bad_value(field))
  d = train.base_config().to_dict()
  d[field] = value
  return field, ml_collections.ConfigDict(d)  # a plain dict config: no ConfigDict type safety


def test_every_field_has_a_strategy():
  for f in FIELDS:
    _bad_value(f)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_config())
def test_invalid_field_one_line_value_error(fc):
  field, c = fc
  with pytest.raises(ValueError) as e:
    train.validate(c)
  msg = str(e.value)
  assert "\n" not in msg and f"config.{field}" in msg, (field, c[field], msg)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["learning_rate", "epochs", "seeds", "method_kwargs", "distill", "model"]),
       st.text(alphabet="abc(;)1.=-", min_size=1, max_size=6))
def test_overrides_of_any_text_fail_in_one_line(field, text):
  try:
    c = train.parse_overrides(train.base_config(), f"{field}={text}")
    train.validate(c)
  except ValueError as e:  # the field itself, or another field it conflicts with (stages > epochs)
    assert "\n" not in str(e) and str(e).startswith("config."), str(e)


def test_misspelt_field_is_named():
  c = train.base_config()
  with c.unlocked():
    c.seed = 3
  with pytest.raises(ValueError, match=r"config.seed is not a field; did you mean config.seeds\?"):
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
  p = _launch(["--config=configs/synthetic.py", f"--workdir={tmp_path / 'w'}",
               "--config.dataset=fashion_mnist", f"--config.manual_dir={manual}",
               f"--config.data_dir={tmp_path / 'tfds'}", "--config.progress=off"])
  err = [line for line in p.stderr.splitlines() if line.strip()]
  assert p.returncode == 1, p.stderr[-2000:]
  assert "Traceback" not in p.stderr
  assert err[-1].startswith("error: ") and "is corrupt or truncated" in err[-1], err
  p = _launch(["--config=configs/synthetic.py:learning_rate=abc", f"--workdir={tmp_path / 'v'}"])
  assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
  assert p.stderr.strip().splitlines()[-1].startswith("error: config.learning_rate='abc'")
