"""Packed grids: points that differ only in values train together on the run axis (README.md,
"Launching").

A grid's points often differ in a learning rate, a weight decay (the [LW] §1.1 L2 grid), β of the
distillation loss ([Z] §3.1), S&P's λ and γ ([AA] §4), or a data value that every run draws on its
own anyway (the synthetic α with ``data.per_seed``). Such values are not structure: the compiled
step is the same for all of them. A pack stacks the runs of those points (points × seeds) on one
run axis; the values that differ travel in ``TrainState.hyper`` (one scalar per run) and the step
and the event read them there instead of the config's constants, so one compiled call trains every
point of the pack. Values the points share stay compile-time constants, as in a run of one point.

The pack trains in ``<grid workdir>/.packs/<id>/`` (hidden: reports read the points' directories;
its own checkpoints: a killed grid resumes the pack) and, once finished, writes every point's
directory as a run of that point alone writes it: config.json, metrics.jsonl, TensorBoard,
summary.json and a checkpoint of the point's final state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import jax
import numpy as np

from reinit_jax.train import multihost, outputs, schedules, validation
from reinit_jax.train import workdir as workdir_
from reinit_jax.train.position import Best, Position

# Config fields whose values ride in TrainState.hyper, by their key there.
VALUE_FIELDS = {"optim.learning_rate": "learning_rate", "optim.weight_decay": "weight_decay",
                "reinit.distill_beta": "distill_beta"}
# Data values: nothing is traced; when they differ inside a pack every run gets its point's data
# set on the run axis (as with data.per_seed), which costs one copy of the training set per run.
DATA_FIELDS = ("data.synthetic_alpha", "data.label_noise")
# Method hyperparameters used only arithmetically (traceable); others (a fraction fixes a count,
# K fixes a block) are structure.
TRACED_HPARAMS = {"shrink_perturb": ("shrink", "perturb")}


def _flat(c) -> dict:
  """``c`` as {'section.field': value}, the method's hyperparameters as 'reinit.hparams.<name>'."""
  flat = workdir_.flat_sections(workdir_.config_json(c))
  for k, v in dict(flat.get("reinit.hparams") or {}).items():
    flat[f"reinit.hparams.{k}"] = v
  flat.pop("reinit.hparams", None)
  return flat


def _free(c) -> set:
  """The fields of ``c`` that may differ inside a pack."""
  free = set(VALUE_FIELDS) | set(DATA_FIELDS) | {"run.seeds"}
  free |= {f"reinit.hparams.{h}" for h in TRACED_HPARAMS.get(c.reinit.method, ())}
  return free


def structure(c) -> str | None:
  """What must be equal for two points to share a pack (a JSON text); None: the point runs alone
  (``run.pack='off'``, several methods in one point)."""
  if c.run.pack == "off" or not isinstance(c.reinit.method, str):
    return None
  free = _free(c)
  return json.dumps({k: v for k, v in _flat(c).items() if k not in free}, sort_keys=True,
                    default=str)


def groups(configs: dict) -> list[list[str]]:
  """Point names grouped into packs (every point in exactly one; grid order kept), each pack at
  most ``run.pack_max_runs`` runs (a point alone may hold more)."""
  out: dict = {}
  for name, c in configs.items():
    key = structure(c)
    out.setdefault(name if key is None else key, []).append(name)
  packs = []
  for names in out.values():
    cap = configs[names[0]].run.pack_max_runs
    packs.append([])
    runs = 0
    for n in names:
      k = len(configs[n].run.seeds)
      if packs[-1] and runs + k > cap:
        packs.append([])
        runs = 0
      packs[-1].append(n)
      runs += k
  return packs


@dataclasses.dataclass
class Pack:
  """The runs on a run axis: ``points`` (names), ``configs``, per run its point index ``point_of``
  and its ``seeds``; ``hyper``: {key: float32 (R,)} for every value field that differs;
  ``per_run_data``: the points' data sets differ, in a data value or in the seed of data the
  seeds share (every run gets its point's data set).

  Every run trains as a pack: a point alone is a pack of one (:meth:`alone`), written in its own
  directory, so the engine reads the run axis from here and never asks which kind it holds. What
  differs between one point and several lives in the methods below: a record's and a message's
  name for a run, the progress label, and the points' directories written at the end.
  """

  points: list
  configs: list
  point_of: list
  seeds: list
  hyper: dict
  workdirs: list
  per_run_data: bool = False

  @classmethod
  def of(cls, configs: dict, workdirs: list) -> "Pack":
    """The pack of ``configs`` ({point name: validated config}, one pack of :func:`groups`), the
    points writing into ``workdirs``."""
    names, cs = list(configs), list(configs.values())
    point_of = [p for p, c in enumerate(cs) for _ in c.run.seeds]
    seeds = [int(s) for c in cs for s in c.run.seeds]
    flats = [_flat(c) for c in cs]
    hyper = {}
    fields = dict(VALUE_FIELDS, **{f"reinit.hparams.{h}": f"hparams.{h}"
                                   for h in TRACED_HPARAMS.get(cs[0].reinit.method, ())})
    differs = lambda field: len({json.dumps(f.get(field)) for f in flats}) > 1
    for field, key in fields.items():
      if differs(field):
        default = _method_default(cs[0].reinit.method, key)
        vals = [default if f.get(field) is None else f[field] for f in flats]
        hyper[key] = np.asarray([vals[p] for p in point_of], np.float32)
    # The data section as the data package reads it (validation.data_view): a data value (the
    # DATA_FIELDS) or, for data the seeds share, the seed it is drawn from (data.seed, else the
    # point's first seed: points that differ in their seeds alone differ in their data too).
    views = {json.dumps(validation.data_view(c).to_dict(), sort_keys=True, default=str) for c in cs}
    per_run_data = len(views) > 1
    validation.check_pack(cs, per_run_data)
    return cls(names, cs, point_of, seeds, hyper, list(workdirs), per_run_data)

  @classmethod
  def alone(cls, config, workdir: str | None = None) -> "Pack":
    """The runs of one point (its seeds) training in its own ``workdir``: nothing differs between
    them but the seed, so no per-run values, and one data set unless ``data.per_seed``. Without a
    workdir (a run built, not trained) the point is named by ``config.name``."""
    seeds = [int(s) for s in config.run.seeds]
    name = os.path.basename(os.path.normpath(workdir)) if workdir else str(config.name)
    return cls([name], [config], [0] * len(seeds), seeds, {}, [workdir], False)

  @property
  def label(self) -> str:
    """What progress lines call the runs: the point's name, or a pack's first point's directory."""
    if len(self.points) == 1:
      return self.points[0]
    first = os.path.basename(os.path.normpath(self.workdirs[0]))
    return f"pack of {len(self.points)} points: {first}, ..."

  def who(self, s: int) -> dict:
    """Run s in a record: its seed, and with several points its point's index (``point``, which
    :func:`point_position` reads and drops)."""
    if len(self.points) == 1:
      return {"seed": self.seeds[s]}
    return {"seed": self.seeds[s], "point": self.point_of[s]}

  def name(self, s: int):
    """Run s in a message: its seed, with several points '<point name>:<seed>'."""
    if len(self.points) == 1:
      return self.seeds[s]
    return f"{self.points[self.point_of[s]]}:{self.seeds[s]}"

  def finish(self, state, pos: Position, summarize, wall: float, steps_per_second: float,
             stopped: bool):
    """The runs' parameters on the host (the summary's digest), after writing every point's
    directory (:func:`write_points`) when several points finished; a point alone has written its
    own directory as it trained."""
    if len(self.points) == 1 or stopped:
      return multihost.fetch(state.variables["params"])
    host_state = multihost.fetch(state)  # one transfer: the points' checkpoints and digests
    if multihost.is_primary():
      write_points(self, pos, host_state, summarize, wall, steps_per_second)
    return host_state.variables["params"]

  @property
  def ident(self) -> str:
    """The pack's directory name under ``.packs/``: a digest of its point names."""
    return hashlib.sha256("\n".join(self.points).encode()).hexdigest()[:12]

  def runs(self, p: int) -> slice:
    """The runs of point ``p`` on the run axis (contiguous)."""
    idx = [i for i, q in enumerate(self.point_of) if q == p]
    return slice(idx[0], idx[-1] + 1)


def _method_default(method: str, key: str):
  if not key.startswith("hparams."):
    return None
  from reinit_jax import methods
  return methods.get(method).hparams[key.split(".", 1)[1]]


def resolver(c, tx, lr_fn, method, stage_steps, total_steps):
  """``(step_values, event_values)`` for ``step.make_step`` and ``step.make_event``: from a run's
  ``hyper`` (traced scalars) its optimizer, schedule, β and method; fields not in ``hyper`` keep
  the run's built constants."""
  o = c.optim

  def optimizer(hyper):
    if "weight_decay" not in hyper:
      return tx
    return schedules.make_optimizer(o.optimizer, hyper["weight_decay"], o.momentum,
                                    o.options.to_dict(), decay=True)

  def step_values(hyper):
    lr = lr_fn if "learning_rate" not in hyper else schedules.make_schedule(
        o.schedule, hyper["learning_rate"], stage_steps, total_steps)
    return optimizer(hyper), lr, hyper.get("distill_beta", c.reinit.distill_beta)

  def event_values(hyper):
    hp = {k.split(".", 1)[1]: v for k, v in hyper.items() if k.startswith("hparams.")}
    m = method if not hp else type(method)(method.declaration, {**method.hparams, **hp})
    return m, optimizer(hyper)

  return step_values, event_values


def _own(rec: dict) -> dict:
  return {k: v for k, v in rec.items() if k != "point"}


def point_position(pos: Position, p: int, runs: slice) -> Position:
  """Point ``p``'s share of the pack's position: its records (untagged) and per-seed lists."""
  mine = lambda recs: [_own(x) for x in recs if x.get("point") == p]
  b = pos.best
  return dataclasses.replace(
      pos, records=mine(pos.records),
      stages=[{**st, "metrics": mine(st["metrics"])} for st in pos.stages],
      best=Best(b.validation[runs], b.test[runs], b.step[runs]), last_test=pos.last_test[runs])


def write_points(pack: "Pack", pos: Position, state, summarize, wall: float,
                 steps_per_second: float) -> None:
  """Writes every point's directory from the finished ``pack`` at position ``pos`` (``state``
  fetched to the host): what a run of the point alone writes, its timing fields the pack's;
  ``summarize``: the loop's summary.json builder (``_Loop.summary_of``). A finished point is kept
  as it is."""
  from reinit_jax.checkpoint import Checkpoints
  for p, (c, d) in enumerate(zip(pack.configs, pack.workdirs)):
    if workdir_.finished_summary(d, c) is not None:
      continue
    runs = pack.runs(p)
    mine = point_position(pos, p, runs)
    workdir_.prepare(d, c)
    log = outputs.MetricsLog(d)
    log.write(mine.records)
    log.close()
    st = jax.tree.map(lambda a: a[runs], state).replace(hyper=None)
    if "weight_decay" in pack.hyper and not c.optim.weight_decay:
      # The point alone has no weight decay in its optimizer: its checkpoint holds the state it
      # would restore.
      st = st.replace(opt_state=schedules.without_decay(st.opt_state))
    ckpt = Checkpoints(os.path.join(d, "checkpoints"), c.run.keep_checkpoints)
    try:
      if pos.step not in ckpt.all_steps():  # else written by an earlier write of this pack
        ckpt.save(pos.step, st, mine.to_json())
    finally:
      ckpt.close()
    summary = summarize(mine, pack.seeds[runs], st.variables["params"], False, d, wall,
                        steps_per_second, c.reinit.method)
    workdir_.write_json(os.path.join(d, "summary.json"), summary, indent=2)
