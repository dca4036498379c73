"""``--sweep=all``: every point of a config's grid in one process (README.md, "Launching").

Each point writes ``<workdir>/<point name>/`` exactly as ``--sweep=<i>`` does. Points that differ
only in values (learning rate, weight decay, β, S&P's λ/γ, per-seed data such as the synthetic α)
train together as one pack on the run axis (``train/pack.py``; ``run.pack='off'``: one by one). A
killed grid re-run skips the finished points and resumes the interrupted pack or point; points
finished before the pack was first formed (``--sweep=<i>`` runs, a grown sweep) are not trained again.
"""

from __future__ import annotations

import logging
import os

from reinit_jax.launch import study, sweep


def run_grid(path_arg: str, flag_values: dict, workdir: str) -> dict[str, dict]:
  """Runs every point of ``get_sweep`` of the config file ``path_arg`` (``file.py:arg``) with the
  ``--config.*`` values applied; returns {point name: summary}. Every point is validated first."""
  from reinit_jax.train import faults, validation, workdir as workdirs
  checked = {}
  for name, config in sweep.point_configs(path_arg):
    sweep.set_overrides(config, flag_values)
    checked[name] = validation.check(config)
  configs = {name: point.config for name, point in checked.items()}
  where = {name: os.path.join(workdir, name) for name in configs}
  # Finished points (of this grid or of --sweep=<i> runs) are not trained again.
  finished = {n for n, c in configs.items() if workdirs.finished_summary(where[n], c) is not None}
  for n in sorted(finished):
    logging.getLogger("reinit_jax").warning("%s: already finished (summary.json kept as it was)",
                                            where[n])
  with faults.StopFlag() as stop:  # a stop during a point's run ends the grid (faults.py)
    return _run_points(checked, where, finished, workdir, stop)


def _run_points(checked, where, finished, workdir, stop):
  """The packs, then the points that train alone (with what validation built for them: the
  ``train.validation.Checked`` of each point); ``stop`` is checked before each."""
  from reinit_jax.train import pack as packing, run, workdir as workdirs
  configs = {name: point.config for name, point in checked.items()}
  packed, out = set(), {}
  stop_here = lambda what: stop.stop_here(
    f"stopped the grid before {what} ({len(packed | finished | set(out))} of {len(configs)} "
    "points finished)")
  pack_of = lambda names: (
    packing.Pack.of({n: configs[n] for n in names}, [where[n] for n in names])
    if len(names) > 1 else None)
  pack_dir = lambda pack: os.path.join(workdir, ".packs", pack.ident)
  for names in packing.groups(configs):
    todo = [n for n in names if n not in finished]
    if not todo:
      continue
    pack = pack_of(names)
    if todo != names and not (pack and os.path.isdir(pack_dir(pack))):
      # Only what is missing trains (points of earlier --sweep=<i> runs, or of a grid whose
      # sweep has grown); a pack that ran before keeps its points and resumes (below).
      names, pack = todo, pack_of(todo)
    if pack is None:
      continue
    stop_here(f"the pack of {len(names)} points {names[0]}, ...")
    for n in names:  # config.json now: another config's run there fails before any compute
      if n not in finished:
        workdirs.prepare(where[n], configs[n])
    # A pack that finished before one of its points was written (killed in between, or a point's
    # outputs removed since): resumed from its last checkpoint, it writes the missing points.
    if os.path.exists(os.path.join(pack_dir(pack), "summary.json")):
      os.remove(os.path.join(pack_dir(pack), "summary.json"))
    run(checked[names[0]], pack_dir(pack), pack=pack)  # validation.for_pack: its traced values
    packed.update(names)
  for name, config in configs.items():
    if name in packed or name in finished:
      out[name] = workdirs.finished_summary(where[name], config)
      continue
    stop_here(f"point {name}")
    for method, summary in study.run_study(checked[name], where[name]).items():
      out[name if isinstance(config.reinit.method, str) else f"{name}/{method}"] = summary
  return out

