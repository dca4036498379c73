"""``--sweep=all``: every point of a config's grid in one process (README, Launching the studies).

Each point writes ``<workdir>/<point name>/`` exactly as ``--sweep=<i>`` does, and resumes on its
own: a killed grid re-run skips the finished points and resumes the interrupted one.
"""

from __future__ import annotations

import os

from reinit_jax.launch import study, sweep


def run_grid(path_arg: str, flag_values: dict, workdir: str) -> dict[str, dict]:
  """Runs every point of ``get_sweep`` of the config file ``path_arg`` (``file.py:arg``) with the
  ``--config.*`` values applied; returns {point name: summary}. Every point is validated first."""
  from reinit_jax.train import validate
  points = sweep.points(path_arg)
  configs = {}
  for i in range(len(points)):
    name, config = sweep.point_config(path_arg, i)
    sweep.set_overrides(config, flag_values)
    validate(config)
    configs[name] = config
  out = {}
  for name, config in configs.items():
    for method, summary in study.run_study(config, os.path.join(workdir, name)).items():
      out[name if len(config.reinit.methods) <= 1 else f"{name}/{method}"] = summary
  return out
