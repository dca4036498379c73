"""Every script in examples/ runs (``--quick``) in a fresh process from a checkout, and prints what
its docstring promises."""

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))
EXTRA = {"plasticity_stream.py": [["--reset=none"], ["--reset=redo"], ["--reset=cbp"],
                                  ["--reset=l2init"], ["--reset=snp"]],
         "staged_training.py": [[], ["--method=magnitude", "--policy=mask"]]}
EXPECT = {"plasticity_stream.py": "online accuracy first task", "staged_training.py": "stage 2:"}
# Each script's first two variants run in the default suite, the rest with -m slow (the same
# script and loop; another reset inside it, each also tested in tests/test_plasticity.py).
DEFAULT_VARIANTS = 2


def test_every_example_is_covered():
  assert {os.path.basename(p) for p in EXAMPLES} == set(EXTRA) == set(EXPECT)


@pytest.mark.parametrize("path,args", [
    pytest.param(p, a, marks=[pytest.mark.slow] if i >= DEFAULT_VARIANTS else [])
    for p in EXAMPLES for i, a in enumerate(EXTRA[os.path.basename(p)])],
    ids=lambda v: os.path.basename(v) if isinstance(v, str) else " ".join(v))
def test_example_runs(path, args, tmp_path):
  p = subprocess.run([sys.executable, path, "--quick", *args], cwd=tmp_path, capture_output=True,
                     text=True, timeout=600, env={k: v for k, v in os.environ.items()
                                                  if k != "PYTHONPATH"})
  assert p.returncode == 0, p.stderr[-3000:]
  assert EXPECT[os.path.basename(path)] in p.stdout, p.stdout
