"""Packed grids (train/pack.py): points that differ only in values train together on the run axis and
write what each point alone writes, bitwise."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinit_jax.launch import grid, sweep
from reinit_jax import train
from reinit_jax.train import compiled, pack as packing, step as step_fns, validate
from train_helpers import config_json_without_pack, count_builds, summary_without_timing

GRID = '''
from reinit_jax import launch

def get_config(arg=None):
  c = launch.base_config()
  c.name = "pack_grid"
  c.data.synthetic_train = 64
  c.data.synthetic_test = 300
  c.data.per_seed = True
  c.optim.epochs = 6
  c.optim.momentum = 0.9
  c.reinit.stages = 3
  c.reinit.method = "shrink_perturb"
  c.reinit.norm_batch_size = 32
  c.run.max_steps_per_call = 10
  c.run.progress = "off"
  c.run.seeds = (0, 1)
  k = launch.apply(c, arg, alpha=1.0, lr=0.05, l2=0.0, shrink=0.4, q=0.0, grid="main")
  c.data.synthetic_alpha = float(k["alpha"])
  c.data.label_noise = float(k["q"])
  c.optim.learning_rate = float(k["lr"])
  c.optim.weight_decay = float(k["l2"])
  if c.reinit.method == "shrink_perturb":
    c.reinit.hparams = {"shrink": float(k["shrink"])}
  return c

def get_sweep(arg=None):
  if "grid=noise" in (arg or ""):
    return [dict(q=0.0), dict(q=0.4), dict(q=0.4, lr=0.1)]
  return [dict(alpha=0.5), dict(alpha=2.0, lr=0.1), dict(l2=0.01, shrink=0.8),
          dict(alpha=2.0, method="standard")]
'''


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
  path = tmp_path_factory.mktemp("cfg") / "pack_grid.py"
  path.write_text(GRID)
  return str(path)


@pytest.fixture(scope="module")
def alone(cfg, tmp_path_factory):
  """Every point run by itself (run.pack='off'): the reference."""
  wd = tmp_path_factory.mktemp("alone")
  grid.run_grid(cfg, {"run.pack": "off"}, str(wd))
  return wd


def _configs(cfg, **flags):
  out = {}
  for i in range(len(sweep.points(cfg))):
    name, c = sweep.point_config(cfg, i)
    sweep.set_overrides(c, flags)
    out[name] = validate(c)
  return out


def test_groups_and_values(cfg):
  """The S&P points share a pack whatever their α (per-seed data), lr, L2 or λ; the standard point
  (another method: another event) runs alone; only the values that differ are traced."""
  configs = _configs(cfg)
  names = list(configs)
  assert packing.groups(configs) == [names[:3], names[3:]]
  assert packing.groups(_configs(cfg, **{"run.pack": "off"})) == [[n] for n in names]
  # At most run.pack_max_runs runs a pack (2 seeds a point): [2 points], [1 point]; [standard].
  assert packing.groups(_configs(cfg, **{"run.pack_max_runs": 5})) == [names[:2], names[2:3], names[3:]]
  pack = packing.Pack.of({n: configs[n] for n in names[:3]}, ["a", "b", "c"])
  assert sorted(pack.hyper) == ["hparams.shrink", "learning_rate", "weight_decay"]
  np.testing.assert_allclose(pack.hyper["learning_rate"], [0.05, 0.05, 0.1, 0.1, 0.05, 0.05])
  np.testing.assert_allclose(pack.hyper["weight_decay"], [0, 0, 0, 0, 0.01, 0.01])
  np.testing.assert_allclose(pack.hyper["hparams.shrink"], [0.4, 0.4, 0.4, 0.4, 0.8, 0.8])
  assert pack.seeds == [0, 1] * 3 and pack.point_of == [0, 0, 1, 1, 2, 2]
  assert pack.runs(1) == slice(2, 4)


def test_runs_are_named_by_their_pack_and_a_point_alone_is_a_pack_of_one(cfg):
  """The loop names runs (records, messages, progress) through its pack: with several points a run
  carries its point; a point alone (``Pack.alone``) is a pack of one whose records and messages
  name the seed only, with nothing to write but its own directory."""
  configs = _configs(cfg)
  names = list(configs)
  pack = packing.Pack.of({n: configs[n] for n in names[:3]}, ["grid/a", "grid/b", "grid/c"])
  assert pack.label == "pack of 3 points: a, ..."
  assert [pack.who(s) for s in (0, 3)] == [{"seed": 0, "point": 0}, {"seed": 1, "point": 1}]
  assert [pack.name(s) for s in (0, 5)] == [f"{names[0]}:0", f"{names[2]}:1"]
  alone = packing.Pack.alone(configs[names[3]], "grid/standard/")
  assert (alone.points, alone.configs, alone.seeds, alone.point_of) == (
      ["standard"], [configs[names[3]]], [0, 1], [0, 0])
  assert alone.hyper == {} and not alone.per_run_data and alone.label == "standard"
  assert [alone.who(s) for s in (0, 1)] == [{"seed": 0}, {"seed": 1}]
  assert [alone.name(s) for s in (0, 1)] == [0, 1]
  assert packing.Pack.alone(configs[names[3]]).label == configs[names[3]].name


def test_data_values_stack_data_only_when_they_differ(cfg):
  """Without per-seed data the points still pack; only a pack whose points differ in a data value
  stacks one data set per run."""
  configs = _configs(cfg, **{"data.per_seed": False})
  names = list(configs)
  assert packing.groups(configs) == [names[:3], names[3:]]
  assert packing.Pack.of({n: configs[n] for n in names[:3]}, names[:3]).per_run_data
  same = {n: configs[n] for n in names[:3]}
  for c in same.values():
    c.data.synthetic_alpha = 1.0
  assert not packing.Pack.of(same, names[:3]).per_run_data


def test_packed_grid_equals_points_alone(cfg, alone, tmp_path):
  """Each point of the packed grid writes what it writes alone: summary (timing aside, same
  params_digest), metrics.jsonl, config.json (run.pack aside), TensorBoard and a checkpoint."""
  wd = tmp_path / "grid"
  out = grid.run_grid(cfg, {}, str(wd))
  packs = os.listdir(wd / ".packs")
  assert len(packs) == 1  # the three S&P points: one run of 6 = 3 points × 2 seeds
  assert len(json.load(open(wd / ".packs" / packs[0] / "summary.json"))["seeds"]) == 6
  names = [n for n in os.listdir(alone)]
  assert sorted(names) == sorted(out) and len(names) == 4
  digests = set()
  for n in names:
    a, b = summary_without_timing(wd / n), summary_without_timing(alone / n)
    assert a == b, n
    digests.add(a["params_digest"])
    assert (wd / n / "metrics.jsonl").read_text() == (alone / n / "metrics.jsonl").read_text()
    assert config_json_without_pack(wd / n) == config_json_without_pack(alone / n)
    assert os.listdir(wd / n / "tensorboard")
    assert str(a["steps"]) in os.listdir(wd / n / "checkpoints")
  assert len(digests) == 4  # the values reached every run: no two points trained alike


def test_interrupted_pack_resumes(cfg, alone, tmp_path):
  """A pack stopped mid-training (as after kill -9: its checkpoint is what is left) resumes from
  its checkpoint on the next grid run and ends as an uninterrupted one; finished points are kept."""
  wd = tmp_path / "grid"
  grid.run_grid(cfg, {"run.stop_after_steps": 4}, str(wd))
  names = sorted(n for n in os.listdir(alone))
  packed = [n for n in names if "standard" not in n]
  assert not any((wd / n / "summary.json").exists() for n in packed)
  assert all((wd / n / "config.json").exists() for n in packed)  # written before any compute
  grid.run_grid(cfg, {}, str(wd))
  for n in names:
    assert summary_without_timing(wd / n) == summary_without_timing(alone / n), n
  # A point whose summary was removed is written again from the pack's last checkpoint (no
  # training); the other points stay as they were.
  kept = {n: (wd / n / "summary.json").read_text() for n in names if n != packed[1]}
  os.remove(wd / packed[1] / "summary.json")
  grid.run_grid(cfg, {}, str(wd))
  assert summary_without_timing(wd / packed[1]) == summary_without_timing(alone / packed[1])
  assert all((wd / n / "summary.json").read_text() == t for n, t in kept.items())
  # The point's own checkpoint restores in a run of the point alone (its optimizer without the
  # pack's weight decay: schedules.without_decay).
  os.remove(wd / packed[0] / "summary.json")
  train.run(_configs(cfg)[packed[0]], str(wd / packed[0]))
  assert summary_without_timing(wd / packed[0]) == summary_without_timing(alone / packed[0])
  assert not (wd / packed[0] / "checkpoints.corrupt").exists()  # restored, not set aside


def test_finished_points_are_not_packed_again(cfg, alone, tmp_path):
  """A point finished before the grid ran (e.g. by --sweep=<i>) is kept; only the missing points of
  its group train, as a pack of those alone."""
  wd = tmp_path / "grid"
  configs = _configs(cfg)
  names = list(configs)
  train.run(configs[names[0]], str(wd / names[0]))
  first = (wd / names[0] / "summary.json").read_text()
  grid.run_grid(cfg, {}, str(wd))
  assert (wd / names[0] / "summary.json").read_text() == first
  packs = os.listdir(wd / ".packs")
  assert len(packs) == 1  # points 1 and 2 (point 0 was finished): 2 points × 2 seeds
  assert len(json.load(open(wd / ".packs" / packs[0] / "summary.json"))["seeds"]) == 4
  for n in names:
    assert summary_without_timing(wd / n) == summary_without_timing(alone / n), n


def test_label_noise_levels_share_a_pack(cfg, tmp_path):
  """Label-noise levels q of data shared by the seeds: one pack holding every run's own noisy
  labels; each point (with its training-set fit splits) equals the point alone."""
  noise = cfg + ":grid=noise"
  flags = {"data.per_seed": False, "run.eval_train": "stage"}
  configs = _configs(noise, **flags)
  assert packing.groups(configs) == [list(configs)]
  assert packing.Pack.of(configs, list(configs)).per_run_data
  grid.run_grid(noise, flags, str(tmp_path / "grid"))
  grid.run_grid(noise, {**flags, "run.pack": "off"}, str(tmp_path / "alone"))
  for n in configs:
    a, b = tmp_path / "grid" / n, tmp_path / "alone" / n
    assert summary_without_timing(a) == summary_without_timing(b), n
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()
  splits = {json.loads(x)["split"] for x in (tmp_path / "grid" / "q-0.4" / "metrics.jsonl")
            .read_text().splitlines()}
  assert {"train_noisy", "train_noisy_clean"} <= splits


def test_vmapped_pack_as_on_accelerators(cfg, alone, tmp_path, monkeypatch):
  """The accelerator path on CPU: every per-run function vmapped, so the traced values (lr, L2, λ)
  are batched. Batching changes the floating-point order of the matmuls and reductions, so a point
  matches its run alone (lax.map, unbatched) to a tolerance, not bitwise: final test accuracy
  within 1% of 300 examples, per-stage test losses within 1e-4 relative."""
  orig = step_fns.over_runs
  monkeypatch.setattr(step_fns, "over_runs", lambda fn, in_axes, seed_axis="auto": orig(fn, in_axes,
                                                                                  "vmap"))
  monkeypatch.setattr(compiled, "_CACHE", {})  # nothing compiled with lax.map is reused
  wd = tmp_path / "grid"
  grid.run_grid(cfg, {}, str(wd))
  differ = 0
  for n in os.listdir(alone):
    a, b = summary_without_timing(wd / n), summary_without_timing(alone / n)
    differ += a["params_digest"] != b["params_digest"]
    np.testing.assert_allclose(a["test_accuracy"]["per_seed"], b["test_accuracy"]["per_seed"],
                               atol=0.01, err_msg=n)
    la = [r["loss"] for r in map(json.loads, (wd / n / "metrics.jsonl").read_text().splitlines())
          if r["split"] == "test"]
    lb = [r["loss"] for r in map(json.loads, (alone / n / "metrics.jsonl").read_text().splitlines())
          if r["split"] == "test"]
    np.testing.assert_allclose(la, lb, rtol=1e-4, err_msg=n)
  assert differ  # the vmapped path ran (lax.map would have given the same bits)


@pytest.mark.parametrize("seed_axis", ["map", "vmap"])
def test_over_runs(seed_axis):
  """over_runs maps the arguments with in_axes 0 and passes the others whole."""
  f = step_fns.over_runs(lambda a, b, c: a * b + c.sum(), (0, None, 0), seed_axis)
  a, c = jnp.arange(3.0), jnp.arange(6.0).reshape(3, 2)
  np.testing.assert_array_equal(jax.jit(f)(a, 2.0, c), a * 2.0 + c.sum(1))


def test_bad_pack_value_names_the_field(cfg):
  name, c = sweep.point_config(cfg, 0)
  sweep.set_overrides(c, {"run.pack": "always"})
  with pytest.raises(ValueError, match="run.pack"):
    validate(c)


def test_a_pack_builds_its_parts_once(cfg, tmp_path, monkeypatch):
  """A grid validates each point once (one model, one method, one optimizer); its pack builds no
  model and no method (one more method is read for its default hyperparameters) and one more
  optimizer, since a traced weight decay keeps the decay stage (``validation.for_pack``)."""
  from reinit_jax.train import validation
  calls = count_builds(monkeypatch, validation, "_optimizer")
  grid.run_grid(cfg, {}, str(tmp_path / "grid"))
  points = len(sweep.points(cfg))  # 3 S&P points (lr, L2, λ differ: one pack) and a standard one
  assert calls == {"model": points, "method": points + 1, "optimizer": points + 1}
