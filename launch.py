"""Launches a study: ``python launch.py --config=configs/<study>.py:<k=v,...> --workdir=DIR``.

Any field can also be overridden with ``--config.<field>=<value>``. With no flags it runs
configs/default.py (Fashion-MNIST, standard vs shrink_perturb vs layerwise on a small CNN) in
./runs/default. Ends with a table of test accuracy per method and the paths of the outputs.
"""

import os

from absl import app, flags
from ml_collections import config_flags

_HERE = os.path.dirname(os.path.abspath(__file__))
_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(_HERE, "configs", "default.py"), "study config file (path[:k=v,...])")
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (default: ./runs/<config name>)")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from absl import logging
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  from reinit_jax.train import study
  config = _CONFIG.value
  workdir = _WORKDIR.value or os.path.join("runs", config.name)
  summaries = study.run_study(config, workdir)
  print("\n" + study.table(summaries))
  print("\noutputs (config.json, metrics.jsonl, summary.json, tensorboard/, checkpoints/):")
  for s in summaries.values():
    print("  " + s["workdir"])


if __name__ == "__main__":
  app.run(main)
