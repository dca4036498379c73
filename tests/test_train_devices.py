"""Runs on simulated CPU devices match 1 device: batches sharded over a 'data' mesh (8 devices,
equal within float reordering) and seeds split over a 'runs' mesh (bitwise: each device runs the
one-device program on its seeds)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
import jax
from reinit_jax import train
from train_helpers import tiny_config, records, run_keeping
c = tiny_config(method=sys.argv[2], batch_size=16, epochs=4, stages=2, mesh=sys.argv[3],
                seeds=tuple(range(int(sys.argv[4]))), eval_every_epochs=1,
                per_seed=int(sys.argv[4]) > 1, label_noise=0.25, eval_train='eval')
r, s = run_keeping(c, sys.argv[1])
place, fns = r.inputs.place, r.compiled
print(json.dumps({{'devices': jax.device_count(), 'runs': place.runs, 'data': place.n,
                  'acc': s['test_accuracy']['per_seed'], 'digest': s['params_digest'],
                  'loss': [x['loss'] for x in records(sys.argv[1], 'train')],
                  'test': [x['accuracy'] for x in records(sys.argv[1], 'test')],
                  'noisy': [x['accuracy'] for x in records(sys.argv[1], 'train_noisy_clean')],
                  'compiles': [fns.train_call._cache_size(), fns.event_fn._cache_size(),
                               fns.eval_fn._cache_size()]}}))
"""


def _run(devices, workdir, method="layerwise", mesh="auto", seeds=1):
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
         "PYTHONPATH": ROOT}
  code = _SCRIPT.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
  p = subprocess.run([sys.executable, "-c", code, workdir, method, mesh, str(seeds)], env=env,
                     capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # the two-device case (test_seeds_split_over_devices_...) runs by default
def test_eight_devices_match_one(tmp_path):
  one = _run(1, str(tmp_path / "one"), mesh="data")
  eight = _run(8, str(tmp_path / "eight"), mesh="data")
  assert (one["devices"], eight["devices"]) == (1, 8)
  assert (eight["runs"], eight["data"]) == (1, 8)  # every batch split over the 8 devices
  np.testing.assert_allclose(eight["loss"], one["loss"], rtol=1e-4)
  assert abs(eight["acc"][0] - one["acc"][0]) <= 2 / 256  # at most two of 256 predictions flip


def test_seeds_split_over_devices_are_bitwise_one_device(tmp_path):
  # 'auto' on CPU: 4 seeds over 2 devices (2 each); 3 seeds on 2 devices do not split: 1 device.
  # Several seeds train on their own data sets here (data.per_seed), split with them.
  one = _run(1, str(tmp_path / "one"), method="random_subset", seeds=4)
  two = _run(2, str(tmp_path / "two"), method="random_subset", seeds=4)
  assert (one["runs"], two["runs"], two["data"]) == (1, 2, 1)
  assert two["digest"] == one["digest"]
  assert two["loss"] == one["loss"] and two["test"] == one["test"]
  # One call per stage (2 epochs), so 2 evaluations × 4 seeds of the relabelled examples.
  assert two["noisy"] == one["noisy"] and len(one["noisy"]) == 2 * 4
  assert two["compiles"] == [1, 1, 1]  # one compilation per function across stages
  odd = _run(2, str(tmp_path / "odd"), method="random_subset", seeds=3)
  assert (odd["runs"], odd["data"]) == (1, 1)
