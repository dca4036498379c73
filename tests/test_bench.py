"""Every benchmark runs: each ``bench/bench_*.py`` in its ``--smoke`` mode, and the commands of
``bench/gpu_all.sh`` name scripts and flags that exist (project issue #23).

The benchmarks are found by globbing, so a new one is covered as soon as it exists; it must take
``--smoke`` (the same code path as its real measurement at a tiny size: bench/README.md) and, when
its docstring promises a JSON last line, print one. Each runs in its own process from the
repository root, as bench/README.md documents them. PyTorch is no test dependency: without it
``bench_step_vs_torch.py --smoke`` times the JAX side alone and says so.

Compilation is most of a smoke run's time, so the processes here (and theirs, which inherit the
environment) share the tests' persistent compilation cache (``$REINIT_JAX_CACHE``,
tests/conftest.py) for every program; ``bench_grid.py`` keeps its own ``launch.py`` processes off
it, as it measures cold starts. This file took 134 s with a cold cache and 58 s with a warm one
(2 cores, shared machine, load 2-3; bench/README.md).
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import json
import os
import re
import shlex
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
SCRIPTS = sorted(glob.glob(os.path.join(BENCH, "bench_*.py")))
TIMEOUT_S = 300  # one smoke takes 10-30 s of CPU on 2 cores; the margin is for a loaded machine
_JSON_PROMISE = re.compile(r"last (output )?line( is)? JSON", re.IGNORECASE)


def _tail(p: subprocess.CompletedProcess, n: int = 4000) -> str:
  return f"rc={p.returncode}\n--- stdout ---\n{p.stdout[-n:]}\n--- stderr ---\n{p.stderr[-n:]}"


def test_benchmarks_found():
  assert len(SCRIPTS) >= 10, SCRIPTS


def _smoke_env() -> dict:
  env = dict(os.environ)
  cache = os.environ.get("REINIT_JAX_CACHE")  # set by tests/conftest.py
  if cache:
    env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  return env


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_smoke(script):
  p = subprocess.run([sys.executable, script, "--smoke"], cwd=ROOT, env=_smoke_env(),
                     capture_output=True, text=True, timeout=TIMEOUT_S)
  assert p.returncode == 0, _tail(p)
  doc = ast.get_docstring(ast.parse(open(script).read())) or ""
  if _JSON_PROMISE.search(doc):
    lines = p.stdout.strip().splitlines()
    assert lines, _tail(p)
    figures = json.loads(lines[-1])
    assert isinstance(figures, dict) and figures, lines[-1][:500]
  if os.path.basename(script) == "bench_step_vs_torch.py" and not importlib.util.find_spec("torch"):
    assert "the PyTorch side is skipped" in p.stdout, _tail(p)


# ---------------------------------------------------------------------------------- gpu_all.sh


def _options(path: str) -> dict[str, dict]:
  """The ``--options`` a benchmark's argparse parser defines, read from its source (importing a
  benchmark would start JAX and tune this process's malloc): option -> {"flag": no value taken,
  "choices": literal choices or None}."""
  tree = ast.parse(open(path).read())
  out = {}
  for node in ast.walk(tree):
    if not isinstance(node, ast.Call):
      continue
    name = getattr(node.func, "attr", getattr(node.func, "id", ""))
    if name == "add_size_flags":  # bench/common.py: --quick and --smoke
      out.update({o: {"flag": True, "choices": None} for o in ("--quick", "--smoke")})
    if name != "add_argument":
      continue
    kw = {k.arg: k.value for k in node.keywords}
    action = kw.get("action")
    flag = isinstance(action, ast.Constant) and action.value in ("store_true", "store_false")
    choices = None
    if isinstance(kw.get("choices"), (ast.Tuple, ast.List)):
      choices = [ast.literal_eval(e) for e in kw["choices"].elts]
    for a in node.args:
      if isinstance(a, ast.Constant) and str(a.value).startswith("--"):
        out[a.value] = {"flag": flag, "choices": choices}
  return out


def _check_bench_args(script: str, args: list[str]) -> list[str]:
  """What is wrong with ``python <script> <args>`` (unknown options, values not among choices)."""
  opts, errors, i = _options(os.path.join(ROOT, script)), [], 0
  while i < len(args):
    word = args[i]
    i += 1
    if not word.startswith("--"):
      errors.append(f"{script}: unexpected word {word!r}")
      continue
    name, eq, value = word.partition("=")
    if name not in opts:
      errors.append(f"{script}: no option {name}")
      continue
    if opts[name]["flag"]:
      continue
    if not eq:
      value, i = (args[i] if i < len(args) else None), i + 1
    if value is None:
      errors.append(f"{script}: {name} without a value")
    elif opts[name]["choices"] and value not in opts[name]["choices"]:
      errors.append(f"{script}: {name}={value!r} not in {opts[name]['choices']}")
  return errors


def _check_launch_args(args: list[str]) -> list[str]:
  from reinit_jax.train import config as config_lib
  fields, errors = config_lib.fields(), []
  for word in args:
    name, _, value = word.partition("=")
    if name.startswith("--config."):
      if name[len("--config."):] not in fields:
        errors.append(f"launch.py: no config field {name}")
    elif name == "--config":
      if not os.path.isfile(os.path.join(ROOT, value.split(":")[0])):
        errors.append(f"launch.py: no config file {value}")
    elif name not in ("--workdir", "--sweep"):
      errors.append(f"launch.py: no flag {name}")
  return errors


@pytest.mark.parametrize("mode", ["gpu", "dry_run"])
def test_gpu_all_sh(tmp_path, mode):
  """bench/gpu_all.sh parses (bash -n) and, run with a PYTHON that only records its arguments,
  names existing scripts with options they define, in both its modes."""
  sh = os.path.join(BENCH, "gpu_all.sh")
  p = subprocess.run(["bash", "-n", sh], capture_output=True, text=True)
  assert p.returncode == 0, p.stderr
  log = tmp_path / "calls.jsonl"
  rec = tmp_path / "python"
  rec.write_text(f"#!{sys.executable}\nimport json, sys\n"
                 f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
  rec.chmod(rec.stat().st_mode | stat.S_IXUSR)
  env = {**os.environ, "PYTHON": str(rec), "OUT": str(tmp_path / "out"), "SWEEP_ALL": "1"}
  env.pop("ONLY", None)
  args = ["--dry-run"] if mode == "dry_run" else []
  p = subprocess.run(["bash", sh, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                     timeout=60)
  assert p.returncode == 0, _tail(p)
  calls = [json.loads(line) for line in log.read_text().splitlines()]
  named = set(re.findall(r"\$PY\s+((?:bench/)?\w+\.py)", open(sh).read()))
  ran = {c[0] for c in calls if c and c[0].endswith(".py")}
  assert named and ran == named, (named, ran, p.stdout[-2000:])
  errors = []
  for c in calls:
    if not c or not c[0].endswith(".py"):
      continue  # `python -` (the environment report) and `python -c`
    assert os.path.isfile(os.path.join(ROOT, c[0])), c[0]
    errors += (_check_launch_args(c[1:]) if c[0] == "launch.py"
               else _check_bench_args(c[0], c[1:]))
  assert not errors, "\n".join(errors) + "\n" + "\n".join(shlex.join(c) for c in calls)
