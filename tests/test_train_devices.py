"""A run on 8 simulated CPU devices (batches sharded over a 'data' mesh) matches 1 device."""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
import jax
from reinit_jax import train
from train_helpers import tiny_config, records
c = tiny_config(method='layerwise', batch_size=16, epochs=4, stages=2)
s = train.run(c, sys.argv[1])
print(json.dumps({{'devices': jax.device_count(), 'acc': s['test_accuracy']['mean'],
                  'loss': [r['loss'] for r in records(sys.argv[1], 'train')]}}))
"""


def _run(devices, workdir):
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
         "PYTHONPATH": ROOT}
  code = _SCRIPT.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
  p = subprocess.run([sys.executable, "-c", code, workdir], env=env, capture_output=True,
                     text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  return json.loads(p.stdout.strip().splitlines()[-1])


def test_eight_devices_match_one(tmp_path):
  one = _run(1, str(tmp_path / "one"))
  eight = _run(8, str(tmp_path / "eight"))
  assert (one["devices"], eight["devices"]) == (1, 8)
  np.testing.assert_allclose(eight["loss"], one["loss"], rtol=1e-4)
  assert abs(eight["acc"] - one["acc"]) <= 2 / 256  # at most two of 256 test predictions flip
