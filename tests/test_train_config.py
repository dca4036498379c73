"""Bad configs fail before any compute, with one line naming the field and the allowed values."""

import time

import jax
import pytest

from reinit_jax import train
from reinit_jax.train import defaults, validation
from train_helpers import tiny_config


@pytest.mark.parametrize("overrides,match", [
  (dict(method="nope"), r"config.method='nope'.*standard"),
  (dict(model="nope"), r"config.model='nope'.*mlp"),
  (dict(dataset="nope"), r"config.dataset='nope'.*synthetic"),
  (dict(stages=7, epochs=6), r"config.stages=7.*\[1, epochs=6\]"),
  (dict(learning_rate=0.0), r"config.learning_rate=0.0.*> 0"),
  (dict(learning_rate=-1.0), r"config.learning_rate"),
  (dict(distill_beta=-1.0), r"config.distill_beta=-1.0.*>= 0"),
  (dict(method="layerwise", stages=3, method_kwargs={"events_per_block": 2}),
   r"config.stages=3.*multiple of layerwise events_per_block M=2"),
  (dict(setting="X"), r"config.setting='X'.*DCW"),
  (dict(schedule="step"), r"config.schedule='step'.*cosine_per_stage"),
  (dict(optimizer="sgdd"), r"config.optimizer='sgdd'.*adam"),
  (dict(optimizer_policy="zero"), r"config.optimizer_policy='zero'.*mask"),
  (dict(seeds=()), r"config.seeds"),
  (dict(chunks=2, stages=3), r"config.chunks=2"),
  (dict(weight_decay=-1e-4), r"config.weight_decay"),
])
def test_bad_config_raises_one_line_before_compute(overrides, match, tmp_path):
  c = tiny_config()
  for k, v in overrides.items():
    c[k] = v
  t = time.time()
  with pytest.raises(ValueError, match=match) as e:
    train.run(c, str(tmp_path))
  assert "\n" not in str(e.value)
  assert time.time() - t < 5.0
  assert not (tmp_path / "metrics.jsonl").exists()


def test_batch_size_must_divide_by_device_count(monkeypatch):
  monkeypatch.setattr(validation.jax, "device_count", lambda: 8)
  with pytest.raises(ValueError, match=r"config.batch_size=12.*multiple of the device count 8"):
    validation.validate(tiny_config(batch_size=12))


def test_settings_map_to_fields():
  for s, (aug, sched, wd) in {"none": ("none", "constant", 0.0), "D": ("cifar", "constant", 0.0),
                              "DC": ("cifar", "cosine_per_stage", 0.0),
                              "DCW": ("cifar", "cosine_per_stage", 5e-4)}.items():
    c = validation.resolve(tiny_config(setting=s))
    assert (c.augmentation, c.schedule, c.weight_decay) == (aug, sched, wd)


def test_parse_overrides():
  c = defaults.parse_overrides(train.base_config(), "method=layerwise,stages=3,seeds=(0;1),"
                               "learning_rate=1,method_kwargs.events_per_block=3")
  assert (c.method, c.stages, tuple(c.seeds), c.learning_rate) == ("layerwise", 3, (0, 1), 1.0)
  assert c.method_kwargs.events_per_block == 3
  with pytest.raises(ValueError, match="no field 'nope'"):
    defaults.parse_overrides(train.base_config(), "nope=1")


def test_cpu_allocator_tuning_applies_on_cpu_only_and_is_idempotent():
  import ctypes
  import sys
  from reinit_jax.train import host
  assert host.tune_cpu_allocator(False) is False
  if jax.default_backend() != "cpu" or not sys.platform.startswith("linux"):
    assert host.tune_cpu_allocator() is False
    return
  assert host.tune_cpu_allocator() is True and host.tune_cpu_allocator() is True
  # With mmap disabled, a 64 MiB block comes from the heap: glibc's mallinfo2 counts it in arena
  # bytes (uordblks), not in mmapped bytes (hblkhd).
  libc = ctypes.CDLL("libc.so.6")

  class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]
  libc.mallinfo2.restype = MallInfo2
  libc.malloc.restype = ctypes.c_void_p
  before = libc.mallinfo2().hblkhd
  p = libc.malloc(64 << 20)
  try:
    assert libc.mallinfo2().hblkhd == before
  finally:
    libc.free(ctypes.c_void_p(p))
