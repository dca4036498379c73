"""The engine's streaming path (data that does not fit in memory) on Fashion-MNIST, in_memory=False.

Fashion-MNIST is prepared from Debian's files into the pytest cache, as in tests/test_data_tfds.py.
Streamed evaluation decodes every example each time, so most tests cut the 10,000-example test
split to its first 500 (``_run``); one (slow) test goes through ``train.run`` unchanged. A run
costs ~10 s here, mostly tracing, plus ~15 s once for importing TensorFlow: the default run keeps
the resume test (layerwise: equal steps, one event, same digest), the feed and the placement;
every method, the probe counting R's calls, the unchanged ``train.run`` and 4 simulated devices
are marked slow.
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from reinit_jax import data, launch, train
from reinit_jax.data import fashion_mnist
from reinit_jax.train import feed, stream, validation
from train_helpers import COUNTING_CALLS, records, run_keeping

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_debian = pytest.mark.skipif(
  not os.path.isfile(os.path.join(fashion_mnist.DEFAULT_MANUAL_DIR, "train-images-idx3-ubyte.gz")),
  reason="apt-get install dataset-fashion-mnist")
pytestmark = needs_debian


@pytest.fixture(scope="session")
def fmnist_dir(request):
  return str(request.config.cache.mkdir("reinit_jax_tfds"))


def stream_config(data_dir, **overrides):
  """scnn_tiny on 256 streamed Fashion-MNIST examples: batches of 64, 2 stages of 1 epoch (4 steps)."""
  c = train.base_config()
  c.name = "stream"
  c.data.dataset = "fashion_mnist"
  c.data.data_dir = data_dir
  c.data.in_memory = False
  c.data.train_subset = 256
  c.data.validation_fraction = 0.005  # the last 300 examples of the TFDS train split
  c.data.batch_size = 64
  c.model.name = "scnn_tiny"
  c.optim.epochs = 2
  c.optim.learning_rate = 0.05
  c.reinit.stages = 2
  c.reinit.norm_batch_size = 32
  c.run.eval_batch_size = 256
  c.run.seeds = (0,)
  c.run.progress = "off"
  for k, v in overrides.items():
    launch.set_field(c, k, v)
  return c


def _run(c, workdir, test_n=500):
  """``train.run`` with the streamed test split cut to its first ``test_n`` examples."""

  def cut(r):
    assert r.inputs.streaming
    data = r.inputs.data
    r.inputs = dataclasses.replace(r.inputs, data=dataclasses.replace(
        data, test=dataclasses.replace(data.test, hi=test_n)))

  return run_keeping(c, workdir, cut)[1]


@pytest.mark.slow  # the full 10,000-example test split streamed twice (~80 s on 2 loaded cores)
def test_train_run_streams_end_to_end(fmnist_dir, tmp_path):
  s = train.run(stream_config(fmnist_dir), str(tmp_path))
  assert s["steps"] == s["total_steps"] == 8 and s["events"] == 1 and len(s["stages"]) == 2
  assert 0.0 <= s["test_accuracy"]["mean"] <= 1.0 and s["best_validation_accuracy"] is not None
  ev = records(str(tmp_path), "test")
  assert [r["step"] for r in ev] == [4, 8]
  assert json.load(open(tmp_path / "config.json"))["data"]["in_memory"] is False


@pytest.mark.slow  # ~12 s a method; the default run covers layerwise (resume) and a counting R
@pytest.mark.parametrize("method", ["standard", "layerwise", "shrink_perturb"])
def test_methods_stream_with_equal_steps(method, fmnist_dir, tmp_path):
  s = _run(stream_config(fmnist_dir, method=method), str(tmp_path))
  assert s["steps"] == 8 and s["events"] == 1
  assert np.isfinite(s["test_accuracy"]["mean"])
  assert [r["step"] for r in records(str(tmp_path), "train")] == [4, 8]


@pytest.mark.slow  # its own compilation (a probe method, 3 stages): ~40 s on 2 loaded cores
def test_streaming_event_applied_T_minus_1_times(fmnist_dir, tmp_path):
  COUNTING_CALLS.clear()
  s = _run(stream_config(fmnist_dir, method="_test_counting", epochs=3, stages=3),
           str(tmp_path))
  assert sorted(COUNTING_CALLS) == [1, 2] and s["events"] == 2 and s["steps"] == 12


def test_streaming_resume_mid_epoch_same_digest(fmnist_dir, tmp_path):
  # Calls of 2 steps: half an epoch, so the stop lands at (epoch 0, step 2) and the resumed run
  # reopens the epoch with start_step=2.
  kw = dict(method="layerwise", max_steps_per_call=2, checkpoint_every=2)
  full = _run(stream_config(fmnist_dir, **kw), str(tmp_path / "full"))
  part = _run(stream_config(fmnist_dir, stop_after_steps=6, **kw), str(tmp_path / "resumed"))
  assert part["interrupted"] and part["steps"] == 6
  done = _run(stream_config(fmnist_dir, **kw), str(tmp_path / "resumed"))
  assert not done["interrupted"] and done["steps"] == full["steps"] == 8
  assert done["events"] == full["events"] == 1  # T − 1
  assert done["params_digest"] == full["params_digest"]
  assert records(str(tmp_path / "resumed")) == records(str(tmp_path / "full"))


def test_feed_positions_and_steps_per_call(fmnist_dir):
  assert stream.steps_per_call(4, 3, 256) == 12  # whole epochs while they fit
  assert stream.steps_per_call(1, 12, 5) == 4  # else a divisor of the epoch's steps
  c = validation.validate(stream_config(fmnist_dir))
  d = data.build(validation.data_view(c))
  place = feed.Placement()
  split = d.train(1)
  f = stream.TrainFeed(split, 0, 4, 64, place)
  a = np.concatenate([np.asarray(f.take(0, 0, 3)[1]), np.asarray(f.take(0, 3, 3)[1])])
  b = [y for _, y in split.batches(0, 0, 64)] + [y for _, y in split.batches(0, 1, 64)][:2]
  np.testing.assert_array_equal(a, np.stack(b))  # continues across an epoch boundary
  again = stream.TrainFeed(split, 0, 4, 64, place).take(0, 3, 3)[1]  # reopened at step 3
  np.testing.assert_array_equal(np.asarray(again), a[3:])


def test_one_process_global_batch_is_the_local_batch():
  place = feed.Placement()
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 8, 4, 4, 1)).astype(np.float32)
  y = rng.integers(0, 10, (3, 8)).astype(np.int32)
  xs, ys = stream.place_steps(place, x, y, 8)
  assert xs.sharding == place.batch(5, 1) and ys.sharding == place.batch(2, 1)
  np.testing.assert_array_equal(np.asarray(xs), x)
  np.testing.assert_array_equal(np.asarray(ys), y)
  g = data.global_batch(x[0], place.batch(4, 0))
  assert g.shape == x[0].shape and g.sharding == place.batch(4, 0)
  np.testing.assert_array_equal(np.asarray(g), x[0])


_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
import jax
import numpy as np
from reinit_jax.train import feed, stream
from test_train_stream import _run, stream_config
xs, _ = stream.place_steps(feed.Placement(), np.zeros((2, 64, 28, 28, 1), np.float32),
                           np.zeros((2, 64), np.int32), 64)
shards = sorted(tuple(s.data.shape) for s in xs.addressable_shards)
s = _run(stream_config(sys.argv[2], method='layerwise'), sys.argv[1])
rows = [json.loads(l) for l in open(sys.argv[1] + '/metrics.jsonl')]
print(json.dumps({{'devices': jax.device_count(), 'steps': s['steps'], 'shards': shards,
                  'acc': s['test_accuracy']['mean'],
                  'loss': [r['loss'] for r in rows if r['split'] == 'train']}}))
"""


@pytest.mark.slow
def test_streaming_on_four_devices_matches_one(fmnist_dir, tmp_path):
  out = {}
  for n in (1, 4):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}",
           "PYTHONPATH": ROOT}
    code = _SCRIPT.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / str(n)), fmnist_dir], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out[n] = json.loads(p.stdout.strip().splitlines()[-1])
  assert (out[1]["devices"], out[4]["devices"]) == (1, 4) and out[4]["steps"] == 8
  assert out[4]["shards"] == [[2, 16, 28, 28, 1]] * 4  # each device holds a quarter of a batch
  np.testing.assert_allclose(out[4]["loss"], out[1]["loss"], rtol=1e-4)
  assert abs(out[4]["acc"] - out[1]["acc"]) <= 2 / 500
