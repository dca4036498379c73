"""The command line of launch.py: flags parsed into a config, then a run, a study or a grid.

Every expected failure is one line on stderr and an exit status (README, Reliability): 1 for a
mistake (a misspelt ``--config.<field>``, a malformed value, a bad config, data that cannot be
read, a NaN, a checkpoint that cannot be written), 128 + signal after a SIGTERM/SIGINT checkpoint.
"""

from __future__ import annotations

import os
import sys
from typing import NamedTuple

from reinit_jax.launch import overrides, study, sweep


_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
  __file__)))), "configs")  # the repository's study configs

# ``--config.<field>=<value>`` words are taken out of argv before absl parses it (take_field_flags):
# they are applied here with the one definition of the fields (overrides.set_field), which also
# takes new keys of dict fields (``--config.reinit.hparams.shrink=0.3``) and fails in one line.


class Command(NamedTuple):
  """The parsed command line: absl's remaining argv, the ``--config.<field>=<value>`` words as
  typed (for ``--sweep=list``'s commands) and their values, parsed once (``parse_flags``)."""

  argv: list
  field_words: list
  field_values: dict


def field_values(field_words: list[str]) -> dict:
  """{dotted field: value} of the ``--config.<field>=<value>`` words; a word without a value, an
  unknown field (with a suggestion) or a leaf name without its section fails in one line."""
  out = {}
  for word in field_words:
    if "=" not in word:
      raise ValueError(f"{word} needs a value: --config.<section>.<field>=<value>")
    key, text = word[len("--config."):].split("=", 1)
    dotted = overrides.known_name(key)
    if dotted != key:  # a unique leaf name is fine in :k=v, not on the command line
      raise ValueError(f"--config.{key} must name its section: --config.{dotted}={text}")
    out[key] = overrides.parse_value(text)
  return out


def main(config, path: str, workdir: str | None, sweep_flag: str | None, command: Command) -> None:
  """Runs what the flags ask for: ``config`` with the command's ``--config.*`` values applied,
  its sweep listing (``--sweep=list``), one point (``--sweep=<i>``) or every point
  (``--sweep=all``). The values are applied once to each config that runs: the study's, the
  point's, or every point's (launch/grid.py)."""
  from absl import logging
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  plain_status_lines()
  values = command.field_values
  workdir = workdir or os.path.join("runs", config.name)
  if sweep_flag == "list":  # a value of the wrong type fails here, not in each point
    for line in sweep.commands(path, workdir, command.field_words, values):
      print(line)
    return
  # One cache for the process: the command line's value, else the config file's, for every point.
  compilation_cache(values.get("run.compilation_cache", config.run.compilation_cache))
  if sweep_flag == "all":
    from reinit_jax.launch import grid
    summaries = grid.run_grid(path, values, workdir)
  else:
    if sweep_flag is not None:  # one point of the grid, into its own sub-workdir
      name, config = sweep.point_config(path, _sweep_index(sweep_flag))
      workdir = os.path.join(workdir, name)
    sweep.set_overrides(config, values)
    summaries = study.run_study(config, workdir)
  print("\n" + study.table(summaries))
  print("\noutputs (config.json, metrics.jsonl, summary.json, tensorboard/, checkpoints/):")
  for s in summaries.values():
    print("  " + s["workdir"])
  if sweep_flag is None and len(summaries) > 1:  # a study of several methods: their curves
    png = study.curves_png(summaries, os.path.join(os.path.abspath(workdir), "curves.png"))
    print(f"learning curves: {png}")


def _sweep_index(sweep_flag: str) -> int:
  try:
    return int(sweep_flag)
  except ValueError:
    raise ValueError(f"--sweep must be 'list', 'all' or an integer index, got {sweep_flag!r}")


def plain_status_lines() -> None:
  """The engine's status lines ("already finished", "resuming ...", a rebuilt output) on stderr
  as plain lines, not absl warnings with a timestamp and a source line: they are not problems.
  The command line's choice; a library user's logging configuration is left alone."""
  import logging
  logger = logging.getLogger("reinit_jax")
  if not any(getattr(h, "reinit_jax_plain", False) for h in logger.handlers):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.reinit_jax_plain = True
    logger.addHandler(handler)
    logger.propagate = False


def compilation_cache(where: str) -> str | None:
  """Turns on JAX's persistent compilation cache for this process; returns its directory.

  Why: a grid run one process per point (``--sweep=<i>``, a scheduler's array job) and every re-run
  compile the same train step, evaluation and events again (the default study: 16.8 of its 48 s;
  bench/README.md, "One process per point"). ``where``: a directory, 'auto' (``$REINIT_JAX_CACHE``,
  else ``$XDG_CACHE_HOME`` or ``~/.cache``, then ``reinit_jax/xla``; a directory already given to
  JAX, e.g. by ``JAX_COMPILATION_CACHE_DIR``, is kept) or 'off'. A directory that cannot be created
  leaves the cache off with a warning: it costs time, never a run.
  """
  if where == "off":
    return None
  import jax
  if where == "auto":
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    where = (jax.config.jax_compilation_cache_dir or os.environ.get("REINIT_JAX_CACHE")
             or os.path.join(base, "reinit_jax", "xla"))
  try:
    os.makedirs(where, exist_ok=True)
  except OSError as e:
    from absl import logging
    logging.warning("run.compilation_cache=%r cannot be used (%s): compiling without a cache",
                    where, e)
    return None
  jax.config.update("jax_compilation_cache_dir", where)
  # JAX caches only programs that took ≥ 1 s to compile; a run's many smaller ones (evaluation,
  # norms, init on small models) add up to seconds per process and load in milliseconds.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return where


def one_line_errors(fn):
  """``fn(argv)`` with the run's expected failures as one stderr line and an exit status."""

  def wrapped(argv):
    from reinit_jax.train import faults
    try:
      return fn(argv)
    except faults.Preempted as e:
      print(f"stopped: {e}", file=sys.stderr, flush=True)
      sys.exit(faults.exit_code(e.signum))
    except (ValueError, FloatingPointError, OSError) as e:
      print(f"error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
      sys.exit(faults.ERROR_EXIT_CODE)
    except KeyboardInterrupt:  # Ctrl-C outside a run (imports, listing): nothing to save
      print("stopped: SIGINT", file=sys.stderr, flush=True)
      sys.exit(130)

  return wrapped


def take_field_flags(argv: list[str]) -> list[str]:
  """Removes the ``--config.<field>=<value>`` words from ``argv`` (in place) and returns them."""
  taken = [a for a in argv if a.startswith("--config.")]
  argv[:] = [a for a in argv if not a.startswith("--config.")]
  return taken


def parse_flags(argv, field_words: list[str]) -> Command:
  """absl's flag parsing, with ``--help`` listing every config field (exit 0) and every mistake in
  a ``--config`` word (``field_words``, taken out of argv) reported in one line (exit 1)
  instead of config_flags' traceback. The words are parsed here, once; a value of the wrong type
  for its field fails in one line when it is applied (``main``)."""
  from absl import flags
  if any(a in ("-h", "--help", "--helpfull", "-?", "--helpshort") for a in argv[1:]):
    _print_to_closed_pipe_ok(usage(_config_flag(argv), field_words))
    sys.exit(0)
  config_file = sweep.split_config_path(_config_flag(argv))[0]
  if not os.path.isfile(config_file):
    known = (sorted(f for f in os.listdir(_CONFIGS) if f.endswith(".py"))
             if os.path.isdir(_CONFIGS) else [])
    _die(f"--config={config_file}: no such config file"
         + (f" (configs/ holds {', '.join(known)})" if known else ""))
  try:
    values = field_values(field_words)
    return Command(flags.FLAGS(argv), list(field_words), values)
  except ValueError as e:
    _die(str(e))
  except flags.Error as e:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith(("ValueError: ", "KeyError: ", "TypeError: "))]
    msg = errs[-1].split(": ", 1)[1] if errs else lines[-1] if lines else str(e)
    _die(msg)


def _die(msg: str):
  print(f"error: {' '.join(msg.split())}", file=sys.stderr, flush=True)
  sys.exit(1)


def _config_flag(argv) -> str:
  """The ``--config=`` value of ``argv`` (``--config X`` too); configs/default.py without one."""
  for i, a in enumerate(argv[1:], start=1):
    if a.startswith("--config="):
      return a.split("=", 1)[1]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return os.path.join(_CONFIGS, "default.py")


def _print_to_closed_pipe_ok(text: str) -> None:
  """Prints ``text``; a reader that closed the pipe early (``| head``) ends it quietly."""
  try:
    print(text, flush=True)
  except BrokenPipeError:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
    sys.exit(0)


def usage(config_path: str | None = None, field_words: list[str] = ()) -> str:
  """launch.py's help: the command, the sweep flag and every config field with its value in the
  config ``config_path`` (``file.py[:k=v,...]``) with the ``--config.*`` words applied; the
  schema's defaults when there is none or it cannot be loaded (the reason is stated)."""
  from reinit_jax.train.config import help_text
  config, whose = None, "the schema's defaults"
  if config_path:
    try:
      path, arg = sweep.split_config_path(config_path)
      config = sweep.load_module(path).get_config(arg or None)
      sweep.set_overrides(config, field_values(list(field_words)))
      whose = f"values of {config_path}" + (" with the --config.* flags" if field_words else "")
    except Exception as e:  # noqa: BLE001  help must still print; the run reports the error
      config, whose = None, f"the schema's defaults ({config_path}: {' '.join(str(e).split())})"
  return ("usage: python launch.py [--config=configs/<study>.py[:k=v,...]] [--workdir=DIR]\n"
          "                        [--sweep=list|<i>|all] [--config.<section>.<field>=<value> ...]\n\n"
          "  --config   study config file and its knobs (default configs/default.py)\n"
          "  --workdir  output directory (default runs/<config name>); re-running resumes\n"
          "  --sweep    list: one command per grid point; <i>: run point i; all: run every point\n\n"
          f"config fields (section.field=value, {whose}; ':k=v' also takes a field's unique leaf "
          "name):\n" + help_text(config))
