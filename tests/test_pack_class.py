"""Class test of packed grids (issue #23): EVERY field that may ride on the run axis, in point lists
that are not in sorted order, each point's directory holding exactly what the point alone writes.

tests/test_pack.py covers some fields in one hand-written grid whose points happen to be listed in
the order their names and values sort in; a bug that gathers a pack's values, runs or directories
in sorted order, or that drops one riding field, passes such a grid. Here:

* the fields are those ``train/pack.py`` itself lets differ inside a pack (``pack._free``, the one
  place that decides it; it reads VALUE_FIELDS, DATA_FIELDS, TRACED_HPARAMS and the seeds), so a
  field added to those tables is swept without editing this file (and fails loudly here if it needs
  a value rule this file lacks);
* every field gets its own grid of three points, listed in an order that is neither the order of
  their names nor the order of their values (the names start with tags b, a, c; the values are
  listed high, low, middle), and, for the fields a point's data depends on, with per-seed data on
  and off (the two ways a pack builds its runs' data sets);
* each point's directory must hold the point's own config.json values, and its summary.json (timing
  aside), metrics.jsonl and params_digest must be bitwise those of the point run alone
  (``run.pack='off'``): same machine, same program, and on CPU a run's bits do not depend on how
  many runs share its call (docs/launching.md, "Grids and packs").
"""

import json
import os

import numpy as np
import pytest

from reinit_jax import methods
from reinit_jax.launch import grid, sweep
from reinit_jax.train import config as config_lib, pack as packing, validate
from train_helpers import config_json_without_pack, summary_without_timing

# The synthetic task at the sizes of tests/test_pack.py (64 examples, 6 epochs in 3 stages, 2
# seeds): a grid of 3 points trains in about a second; what costs is compiling (a pack once, a point
# alone once each: its values are compile-time constants), mostly from the persistent cache.
BASE = '''
from reinit_jax import launch

POINTS = {points!r}

def get_config(arg=None):
  c = launch.base_config()
  c.name = "pack_class"
  c.data.synthetic_train = 64
  c.data.synthetic_test = 200
  c.optim.epochs = 6
  c.optim.momentum = 0.9
  c.reinit.stages = 3
  c.reinit.method = {method!r}
  c.reinit.norm_batch_size = 32
  c.run.max_steps_per_call = 10
  c.run.progress = "off"
  c.run.seeds = (0, 1)
  launch.apply(c, arg, tag="")  # the tag only orders the point names
  return c

def get_sweep(arg=None):
  return POINTS
'''

# The default method of the sweep: one whose event reads traced hyperparameters, so its λ and γ ride
# too (pack.TRACED_HPARAMS); a method listed there later is swept with its own hyperparameters.
METHOD = next(iter(packing.TRACED_HPARAMS))
# Settings without which a field's value has no effect (its points would train alike, and the test
# below says so): β weighs the distillation loss only with distillation on.
NEEDS = {"reinit.distill_beta": {"reinit.distill": True}}
# Tags making the point names sort as (a, b, c) while the points are listed (b, a, c).
TAGS = ("b", "a", "c")


def _base(method):
  """The validated config of the grid without any point (the values the points vary around)."""
  ns = {}
  exec(BASE.format(points=[], method=method), ns)
  return validate(ns["get_config"]())


def _fields():
  """{field: the method its grid trains} for every field pack.py lets differ inside a pack: what
  ``pack._free`` (the one place that decides it) returns for a config of METHOD, and for every
  method with traced hyperparameters its own (swept with that method: another method's event does
  not read them)."""
  out = {f: METHOD for f in packing._free(_base(METHOD))}
  for method in packing.TRACED_HPARAMS:
    out.update({f: method for f in packing._free(_base(method)) if f not in out})
  return out


def _values(field, method):
  """Three valid values of ``field``, listed high, low, middle (neither sorted nor reversed)."""
  if field == "run.seeds":  # different counts too: the points' runs are uneven slices
    return [(2, 0), (1,), (0, 1)]
  if field.startswith("reinit.hparams."):
    b = methods.get(method).hparams[field.rsplit(".", 1)[1]]
  else:
    b = config_lib.get(_base(method), field)
  assert isinstance(b, float), f"{field}: no value rule for {b!r}; add one to _values"
  return [2 * b, b, round(1.5 * b, 9)] if b else [0.2, 0.0, 0.1]


def _per_seed(field):
  """Per-seed data on and off for the fields a point's data sets depend on (the data values and
  the seeds): a pack builds its runs' data sets differently in the two cases (one per seed, or one
  per point drawn from its first seed); other fields with per-seed data only."""
  return (True, False) if field in packing.DATA_FIELDS or field == "run.seeds" else (True,)


CASES = [(f, m, ps) for f, m in sorted(_fields().items()) for ps in _per_seed(f)]


def test_the_sweep_covers_every_riding_field():
  """The cases hold every field of pack.py's tables (learning rate, weight decay, β, the data
  values, the seeds and S&P's λ and γ when written): a table field that ``_free`` stops letting
  differ fails here instead of silently being tested less."""
  swept = {f for f, _, _ in CASES}
  assert set(packing.VALUE_FIELDS) | set(packing.DATA_FIELDS) | {"run.seeds"} <= swept
  assert {f"reinit.hparams.{h}" for hs in packing.TRACED_HPARAMS.values() for h in hs} <= swept


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-per_seed={c[2]}")
def case(request, tmp_path_factory):
  """A grid of three points differing in one field, and every point run alone (the reference)."""
  field, method, per_seed = request.param
  points = [{"tag": t, field: v} for t, v in zip(TAGS, _values(field, method))]
  names = [sweep.point_name(p) for p in points]
  assert names != sorted(names)
  root = tmp_path_factory.mktemp("case")
  cfg = root / "grid.py"
  cfg.write_text(BASE.format(points=points, method=method))
  flags = {"data.per_seed": per_seed, **NEEDS.get(field, {})}
  grid.run_grid(str(cfg), {**flags, "run.pack": "off"}, str(root / "alone"))
  return dict(field=field, points=points, names=names, cfg=str(cfg), flags=flags, root=root)


def _lookup(config_json, field):
  v = config_json
  for part in field.split("."):
    v = v[part]
  return tuple(v) if isinstance(v, list) else v


def test_pack_forms_in_list_order(case):
  """The three points make one pack, in the grid's order: their names, runs and directories."""
  configs = {}
  for i in range(3):
    name, c = sweep.point_config(case["cfg"], i)
    sweep.set_overrides(c, case["flags"])
    configs[name] = validate(c)
  assert list(configs) == case["names"]
  assert packing.groups(configs) == [case["names"]]
  pack = packing.Pack.of(configs, [f"dir/{n}" for n in configs])
  assert pack.points == case["names"] and pack.workdirs == [f"dir/{n}" for n in case["names"]]
  field = case["field"]
  # What makes the field ride: a traced value in hyper (its key in the code's tables), or every run
  # its point's data set (a data value; the seeds, when the seeds share their data and so draw it
  # from the point's first seed: validation.data_view).
  traced = dict(packing.VALUE_FIELDS)
  traced.update({f"reinit.hparams.{h}": f"hparams.{h}" for hs in packing.TRACED_HPARAMS.values()
                 for h in hs})
  assert set(pack.hyper) == ({traced[field]} if field in traced else set())
  if field in packing.DATA_FIELDS or (field == "run.seeds" and not case["flags"]["data.per_seed"]):
    assert pack.per_run_data
  for p, c in enumerate(configs.values()):
    assert pack.seeds[pack.runs(p)] == list(c.run.seeds)
    for key, vals in pack.hyper.items():  # a traced value: the point's own on each of its runs
      want = _lookup(json.loads(json.dumps(c.to_dict())), field)
      np.testing.assert_array_equal(vals[pack.runs(p)], np.float32(want), err_msg=key)


def test_each_directory_gets_its_points_results(case):
  """Packed, each point's directory holds that point's values and what the point alone writes."""
  wd = case["root"] / "grid"
  grid.run_grid(case["cfg"], case["flags"], str(wd))
  assert sorted(os.listdir(wd)) == sorted([".packs", *case["names"]])
  assert len(os.listdir(wd / ".packs")) == 1  # the three points trained as one pack
  alone, digests = case["root"] / "alone", set()
  for point, name in zip(case["points"], case["names"]):
    own = config_json_without_pack(wd / name)
    assert _lookup(own, case["field"]) == point[case["field"]], name
    assert own == config_json_without_pack(alone / name), name
    a, b = summary_without_timing(wd / name), summary_without_timing(alone / name)
    assert a == b, name
    metrics = lambda d: (d / name / "metrics.jsonl").read_text()
    assert metrics(wd) == metrics(alone), name
    digests.add(a["params_digest"])
  assert len(digests) == 3  # the field's value reached every point: no two trained alike
