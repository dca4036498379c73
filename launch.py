"""Launches a study: ``python launch.py --config=configs/<study>.py:<k=v,...> --workdir=DIR``.

Any field can also be overridden with ``--config.<field>=<value>``. With no flags it runs
configs/default.py (Fashion-MNIST, standard vs shrink_perturb vs layerwise on a small CNN) in
./runs/default. Ends with a table of test accuracy per method and the paths of the outputs.

Exit status (README, Reliability): 0 when every run finished; 143 (128 + SIGTERM) after a SIGTERM
checkpoint (re-run the same command to resume); 1 after a one-line error on stderr (bad config or
data, a NaN/inf with nan_policy='stop', a checkpoint that could not be written), not a traceback.
"""

import os

from absl import app, flags
from ml_collections import config_flags

_HERE = os.path.dirname(os.path.abspath(__file__))
_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(_HERE, "configs", "default.py"), "study config file (path[:k=v,...])")
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (default: ./runs/<config name>)")
_SWEEP = flags.DEFINE_string(
    "sweep", None, "'list': print one command per point of the config's get_sweep grid; an index: "
    "run that point into <workdir>/<point name>/ (reinit_jax/train/sweep.py)")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from absl import logging
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  from reinit_jax.train import study
  config = _CONFIG.value
  workdir = _WORKDIR.value or os.path.join("runs", config.name)
  if _SWEEP.value is not None:
    config, workdir = _sweep_point(workdir)
    if config is None:
      return
  summaries = study.run_study(config, workdir)
  print("\n" + study.table(summaries))
  print("\noutputs (config.json, metrics.jsonl, summary.json, tensorboard/, checkpoints/):")
  for s in summaries.values():
    print("  " + s["workdir"])


def _sweep_point(workdir):
  """--sweep=list prints the commands (returns None); --sweep=<i> gives point i's config, workdir."""
  import sys
  from reinit_jax.train import sweep
  flag = flags.FLAGS["config"]
  path = config_flags.get_config_filename(flag)
  if _SWEEP.value == "list":
    for line in sweep.commands(path, workdir, sweep.config_override_flags(sys.argv[1:])):
      print(line)
    return None, None
  try:
    index = int(_SWEEP.value)
  except ValueError:
    raise app.UsageError(f"--sweep must be 'list' or an integer index, got {_SWEEP.value!r}")
  name, config = sweep.point_config(path, index)
  sweep.set_overrides(config, config_flags.get_override_values(flag))
  return config, os.path.join(workdir, name)


def _one_line_errors(fn):
  """``fn(argv)`` with the run's expected failures as one stderr line and an exit status."""
  def wrapped(argv):
    import sys
    from reinit_jax.train import faults
    try:
      return fn(argv)
    except faults.Preempted as e:
      print(f"preempted: {e}", file=sys.stderr, flush=True)
      sys.exit(faults.PREEMPTED_EXIT_CODE)
    except (ValueError, FloatingPointError, OSError) as e:
      print(f"error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
      sys.exit(faults.ERROR_EXIT_CODE)
  return wrapped


def _parse_flags(argv):
  """absl's flag parsing, with a bad config file argument (whose ValueError config_flags wraps in
  a traceback) reported as its one-line ValueError, exit status 1."""
  import sys
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("ValueError: ")]
    msg = errs[-1][len("ValueError: "):] if errs else " ".join(lines)
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
  app.run(_one_line_errors(main), flags_parser=_parse_flags)
