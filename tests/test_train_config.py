"""Bad configs fail before any compute, with one line naming the field and the allowed values."""

import time

import jax
import pytest

from reinit_jax import launch, train
from reinit_jax.train import validation
from train_helpers import tiny_config


@pytest.mark.parametrize("overrides,match", [
  (dict(method="nope"), r"config.reinit.method='nope'.*standard"),
  (dict(model__name="nope"), r"config.model.name='nope'.*mlp"),
  (dict(dataset="nope"), r"config.data.dataset='nope'.*synthetic"),
  (dict(stages=7, epochs=6), r"config.reinit.stages=7.*\[1, optim.epochs=6\]"),
  (dict(learning_rate=0.0), r"config.optim.learning_rate=0.0.*> 0"),
  (dict(learning_rate=-1.0), r"config.optim.learning_rate"),
  (dict(distill_beta=-1.0), r"config.reinit.distill_beta=-1.0.*>= 0"),
  (dict(method="layerwise", stages=3, hparams={"events_per_block": 2}),
   r"config.reinit.stages=3.*multiple of layerwise events_per_block M=2"),
  (dict(setting="X"), r"config.optim.setting='X'.*DCW"),
  (dict(schedule="step"), r"config.optim.schedule='step'.*cosine_per_stage"),
  (dict(optimizer="sgdd"), r"config.optim.optimizer='sgdd'.*adam"),
  (dict(optimizer_policy="zero"), r"config.reinit.optimizer_policy='zero'.*mask"),
  (dict(seeds=()), r"config.run.seeds"),
  (dict(chunks=2, stages=3), r"config.data.chunks=2"),
  (dict(weight_decay=-1e-4), r"config.optim.weight_decay"),
  (dict(dataset="fashion_mnist", per_seed=True), r"config.data.per_seed=True.*synthetic"),
  (dict(per_seed=True, data__seed=3), r"config.data.seed=3 is invalid.*per_seed"),
])
def test_bad_config_raises_one_line_before_compute(overrides, match, tmp_path):
  c = tiny_config()
  for k, v in overrides.items():  # plain item assignment: no type conversion, no early check
    section, _, leaf = launch.overrides.dotted_name(k.replace("__", ".")).rpartition(".")
    c[section][leaf] = v
  t = time.time()
  with pytest.raises(ValueError, match=match) as e:
    train.run(c, str(tmp_path))
  assert "\n" not in str(e.value)
  assert time.time() - t < 5.0
  assert not (tmp_path / "metrics.jsonl").exists()


def test_batch_size_must_divide_by_device_count(monkeypatch):
  monkeypatch.setattr(validation.jax, "device_count", lambda: 8)
  with pytest.raises(ValueError, match=r"config.data.batch_size=12.*multiple of the device count 8"):
    validation.validate(tiny_config(batch_size=12))


def test_settings_map_to_fields():
  for s, (aug, sched, wd) in {"none": ("none", "constant", 0.0), "D": ("cifar", "constant", 0.0),
                              "DC": ("cifar", "cosine_per_stage", 0.0),
                              "DCW": ("cifar", "cosine_per_stage", 5e-4)}.items():
    c = validation.resolve(tiny_config(setting=s))
    assert (c.data.augmentation, c.optim.schedule, c.optim.weight_decay) == (aug, sched, wd)


def test_apply_overrides():
  c = train.base_config()
  knobs = launch.apply(c, "method=layerwise,stages=3,seeds=(0;1),learning_rate=1,"
                       "hparams.events_per_block=3,optim.momentum=0,model.options.width=0.5,q=0.4",
                       q=0.2)
  assert (c.reinit.method, c.reinit.stages, tuple(c.run.seeds)) == ("layerwise", 3, (0, 1))
  assert c.optim.learning_rate == 1.0 and isinstance(c.optim.learning_rate, float)
  assert c.optim.momentum == 0.0 and c.model.options.width == 0.5
  assert c.reinit.hparams.events_per_block == 3
  assert knobs == {"q": 0.4}
  launch.apply(c, "seeds=3")  # an integer n: seeds 0..n-1
  assert tuple(c.run.seeds) == (0, 1, 2)
  launch.apply(c, "seeds=(5;)")
  assert tuple(c.run.seeds) == (5,)
  with pytest.raises(ValueError, match="no field 'nope'"):
    launch.apply(train.base_config(), "nope=1")
  with pytest.raises(ValueError, match=r"config override q='x' is invalid: expected float"):
    launch.apply(train.base_config(), "q=x", q=0.2)
  with pytest.raises(ValueError, match=r"config override seeds='abc' is invalid"):
    launch.apply(train.base_config(), "seeds=abc")
  # A leaf name two sections share ('name': the run's and the model's) needs its section.
  with pytest.raises(ValueError, match="no field 'options'"):
    launch.apply(train.base_config(), "options=1")


def test_cpu_allocator_tuning_applies_on_cpu_only_and_is_idempotent():
  import ctypes
  import sys
  from reinit_jax.backends import cpu_host as host
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
