"""Launches a study: ``python launch.py --config=configs/<study>.py:<k=v,...> --workdir=DIR``.

Any field can be overridden with ``--config.<section>.<field>=<value>`` (``--help`` lists them).
With no flags it runs configs/default.py ([Z] §6 label noise on 3,000 Fashion-MNIST images:
standard vs shrink_perturb vs layerwise, an MLP, 5 seeds) in ./runs/default and ends with a table
of test accuracy and memorized noisy labels per method and the path of curves.png.
``--sweep=list|<i>|all`` lists, runs one point of, or runs every point of the config's grid.

Path of a run: this file (flags → config) → reinit_jax.launch (sweeps, studies) →
reinit_jax.train.run (validation → setup → stage loop → step/event → outputs).

Exit status (README, Reliability): 0 when every run finished; 143 after a SIGTERM checkpoint and
130 after Ctrl-C (re-run the same command to resume); 1 after a one-line error on stderr (bad
config or data, a NaN/inf with nan_policy='stop', a checkpoint that could not be written).
"""

import os
import signal
import sys


def _stopped_early(signum, frame):
  # Until a run installs its own handler (train/faults.py), Ctrl-C or SIGTERM has nothing to save.
  print(f"stopped: {signal.Signals(signum).name} before training started", file=sys.stderr,
        flush=True)
  os._exit(128 + signum)


signal.signal(signal.SIGINT, _stopped_early)
signal.signal(signal.SIGTERM, _stopped_early)

# One XLA:CPU device per core (before JAX starts), so that the CPU backend can split a run's seeds
# over the cores (run.mesh='auto'); other backends ignore it.
from reinit_jax.backends import cpu_host  # noqa: E402  (imports no JAX)

cpu_host.one_cpu_device_per_core()

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from reinit_jax.launch import cli  # noqa: E402

# --config.<field>=<value> words leave argv before config_flags sees them (it would apply them with
# its own parser and tracebacks); cli applies them through the config schema, one line per mistake.
_FIELD_WORDS = cli.take_field_flags(sys.argv)

_HERE = os.path.dirname(os.path.abspath(__file__))
_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(_HERE, "configs", "default.py"), "study config file (path[:k=v,...])")
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (default: ./runs/<config name>)")
_SWEEP = flags.DEFINE_string(
    "sweep", None, "'list': print one command per point of the config's get_sweep grid; an index: "
    "run that point into <workdir>/<point name>/; 'all': run every point in this process")


def main(command: cli.Command):
  if len(command.argv) > 1:
    raise app.UsageError(f"unexpected arguments: {command.argv[1:]}")
  path = config_flags.get_config_filename(flags.FLAGS["config"])
  cli.main(_CONFIG.value, path, _WORKDIR.value, _SWEEP.value, command)


if __name__ == "__main__":
  app.run(cli.one_line_errors(main), flags_parser=lambda argv: cli.parse_flags(argv, _FIELD_WORDS))
