"""A method from the user's own file, named on the command line (config.run.modules)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USER = '''
from reinit_jax import masks, methods

@methods.register("halfway", hparams={"mix": methods.unit_interval(0.5)},
                  mask=lambda params, stage, key, context, **hparams: masks.all_true(params))
def halfway(params, fresh, stage, key, context, mix):
  """(1 − mix)·θ + mix·θ_init everywhere."""
  return methods.shrink_perturb(params, fresh, 1.0 - mix, mix)
'''


def test_launch_uses_a_method_from_a_user_file(tmp_path):
  path = tmp_path / "my_methods.py"
  path.write_text(USER)
  args = [sys.executable, os.path.join(ROOT, "launch.py"),
          "--config=configs/synthetic.py:method=halfway,seeds=1,epochs=4,stages=2,synthetic_test=200",
          f"--config.run.modules=('{path}',)",
          "--config.reinit.hparams.mix=0.25", "--config.run.progress=off"]
  p = subprocess.run(args + [f"--workdir={tmp_path / 'w'}"], cwd=ROOT, capture_output=True,
                     text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  s = json.load(open(tmp_path / "w" / "summary.json"))
  assert s["method"] == "halfway" and s["events"] == 1
  # Without the module the name is unknown: one line naming the field and the registry.
  q = subprocess.run([a for a in args if "modules" not in a] + [f"--workdir={tmp_path / 'v'}"],
                     cwd=ROOT, capture_output=True, text=True,
                     env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
  assert q.returncode == 1
  assert "config.reinit.method='halfway' is invalid" in q.stderr
