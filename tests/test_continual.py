"""reinit_jax/continual.py on a small synthetic stream: records per task and seed, one compilation
for the whole stream, every method runs, unit resets happen where the method says; its speed-ups
compute what they replace: the unrolled threefry draws jax's bits, the skipped continual-backprop
ranking equals ``select``, seeds split over two devices or mapped give the same records."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinit_jax import continual, plasticity
from reinit_jax.train.step import over_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(n=64, d=12, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  return rng.random((n, d), np.float32), rng.integers(0, classes, n).astype(np.int32)


@pytest.mark.parametrize("method", continual.METHODS)
@pytest.mark.parametrize("stream", continual.STREAMS)
def test_every_method_and_stream_records_every_task_and_seed(method, stream):
  x, y = _data()
  spec = continual.Stream(stream=stream, method=method, seeds=(0, 1), tasks=3, batch=16,
                          examples=64, passes=1)
  out = continual.run(spec, x, y)
  r = out["records"]
  assert r["online_accuracy"].shape == (3, 2) and ((0 <= r["online_accuracy"]) &
                                                  (r["online_accuracy"] <= 1)).all()
  for tau in continual.TAUS:
    assert r[f"dormant_{tau:g}_layer1"].shape == (3, 2)
  assert (r["srank"] >= 1).all() and (r["srank"] <= 100).all()
  if method not in ("cbp", "redo"):
    assert not r["units_reset"].any()


_COMPILES = []
_LISTENING = []


def _count_compile(name, duration, **kwargs):
  if _LISTENING and name == "/jax/core/compile/backend_compile_duration":
    _COMPILES.append(name)


def test_the_stream_compiles_once_and_seeds_differ(monkeypatch):
  traced = []
  orig = continual._task_fn

  def counting(*a, **k):
    fn = orig(*a, **k)

    def wrapped(*args):
      traced.append(1)
      return fn(*args)
    return wrapped

  monkeypatch.setattr(continual, "_task_fn", counting)
  x, y = _data()
  if not _LISTENING:
    jax.monitoring.register_event_duration_secs_listener(_count_compile)
  compiles = []
  try:
    _LISTENING.append(True)
    for tasks in (2, 6):
      _COMPILES.clear()
      out = continual.run(continual.Stream(seeds=(0, 1), tasks=tasks, examples=64, passes=1), x, y)
      compiles.append(len(_COMPILES))
  finally:
    _LISTENING.clear()
  assert traced == [1, 1]  # traced once per stream, reused for every task
  assert compiles[0] == compiles[1] <= 3  # the start, the task, the ranks: whatever the length
  assert not np.array_equal(out["records"]["param_norm"][:, 0], out["records"]["param_norm"][:, 1])


@pytest.mark.parametrize("owed", [(0.2, 0.2, 0.2, 0.2), (0.2, 0.995, 0.2, 0.995)])
def test_cbp_select_skips_the_ranking_only_where_select_resets_nothing(owed):
  """4 seeds of continual-backprop state, two layers (the first mature, the second not): with
  ρ·n_mature = 0.008, a debt of 0.2 owes no unit (every seed: the skip), 0.995 owes one."""
  rng = np.random.default_rng(0)
  state = plasticity.ContinualBackprop(
    utility=tuple(jnp.asarray(rng.random((4, 8)), jnp.float32) for _ in range(2)),
    age=(jnp.asarray(rng.integers(11, 30, (4, 8)), jnp.int32), jnp.full((4, 8), 3, jnp.int32)),
    owed=tuple(jnp.asarray(owed, jnp.float32) for _ in range(2)))
  rate, maturity = 1e-3, 10
  want = jax.jit(jax.vmap(lambda c: c.select(rate=rate, maturity=maturity)))(state)
  got = jax.jit(lambda c: continual.cbp_select(
    c, rate, maturity, functools.partial(over_runs, seed_axis="vmap")))(state)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  assert sum(int(m.sum()) for m in want[1]) == sum(d > 0.5 for d in owed)


_TWO_DEVICES = """
import json, sys
import numpy as np
sys.path.insert(0, {root!r})
import jax
from reinit_jax import continual
assert jax.device_count() == 2
rng = np.random.default_rng(0)
x, y = rng.random((64, 12), np.float32), rng.integers(0, 3, 64).astype(np.int32)
continual.SETTINGS["redo"].update(every=5, tau=0.9)
out = {{}}
for method in ("snp", "redo"):
  r = continual.run(continual.Stream(method=method, seeds=(0, 1, 2), tasks=3, examples=64,
                                     passes=2), x, y)
  out[method] = {{k: v.tolist() for k, v in r["records"].items()}}
together = continual.run_together(
  [continual.Stream(stream=s, method=m, seeds=(0, 1, 2), tasks=t, examples=64, passes=2)
   for s, m, t in (("permuted", "snp", 3), ("random_labels", "redo", 2))], x, y)
out["together"] = [{{k: v.tolist() for k, v in r["records"].items()}} for r in together]
out["side_by_side"] = [r["side_by_side"] for r in together]
print(json.dumps(out))
"""


def test_seeds_split_over_two_devices_or_mapped_give_the_same_records(monkeypatch):
  """Three seeds over two XLA:CPU devices (padded to four; a subprocess, since the device count is
  fixed when JAX starts) and one seed at a time ('map') against one device, vmapped: the training
  records bitwise, norms and ranks to float32 rounding; two streams side by side on the two
  devices (``run_together``) against each alone on one."""
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  p = subprocess.run([sys.executable, "-c", _TWO_DEVICES.format(root=ROOT)], env=env,
                     capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-3000:]
  split = json.loads(p.stdout.strip().splitlines()[-1])
  x, y = _data()
  redo = dict(continual.SETTINGS["redo"], every=5, tau=0.9)
  monkeypatch.setitem(continual.SETTINGS, "redo", redo)
  for method in ("snp", "redo"):
    spec = continual.Stream(method=method, seeds=(0, 1, 2), tasks=3, examples=64, passes=2)
    one = continual.run(spec, x, y)["records"]
    mapped = continual.run(spec, x, y, seed_axis="map")["records"]
    if method == "redo":
      assert one["units_reset"].sum() > 0
    for name, want in one.items():
      got = np.asarray(split[method][name])
      if name in ("param_norm", "effective_rank", "srank"):
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=f"{method} {name}")
      else:  # online accuracy, units reset, dormant fractions
        np.testing.assert_array_equal(got, want, err_msg=f"{method} {name}")
      np.testing.assert_allclose(mapped[name], want, rtol=1e-5, err_msg=f"map: {method} {name}")
  # Side by side (run_together: a stream per device, tasks of unequal streams dispatched in turn),
  # each point's records are those it gets alone on one device.
  assert split["side_by_side"] == [2, 2]
  for (stream, method, tasks), got in zip((("permuted", "snp", 3), ("random_labels", "redo", 2)),
                                          split["together"]):
    alone = continual.run(continual.Stream(stream=stream, method=method, seeds=(0, 1, 2),
                                           tasks=tasks, examples=64, passes=2), x, y)["records"]
    assert set(got) == set(alone)
    for name, want in alone.items():
      np.testing.assert_array_equal(np.asarray(got[name]), want,
                                    err_msg=f"together: {stream} {method} {name}")


def test_redo_resets_dormant_units_at_its_period():
  """A ReDo period of 4 steps on 4 steps per task: a reset at the end of every task, and only of
  units that were dormant."""
  x, y = _data()
  orig = dict(continual.SETTINGS["redo"])
  continual.SETTINGS["redo"].update(every=4, tau=10.0)  # τ above every score: every unit resets
  try:
    out = continual.run(continual.Stream(method="redo", seeds=(0,), tasks=2, examples=64,
                                         passes=1), x, y)
  finally:
    continual.SETTINGS["redo"].update(orig)
  np.testing.assert_array_equal(out["records"]["units_reset"][:, 0], [200, 200])


def test_bad_names_are_one_line():
  with pytest.raises(ValueError, match="method='nope' is invalid; allowed: none, l2init"):
    continual.Stream(method="nope")
  with pytest.raises(ValueError, match="stream='x' is invalid"):
    continual.Stream(stream="x")


def test_together_with_fewer_devices_than_streams_runs_them_one_after_the_other():
  """One XLA:CPU device (this process) and two streams: each runs as ``run`` does, alone."""
  x, y = _data()
  specs = [continual.Stream(stream=s, method="l2init", seeds=(0, 1), tasks=2, examples=64,
                            passes=1) for s in continual.STREAMS]
  together = continual.run_together(specs, x, y)
  assert [r["side_by_side"] for r in together] == [1, 1]
  for spec, got in zip(specs, together):
    alone = continual.run(spec, x, y)["records"]
    for name, want in alone.items():
      np.testing.assert_array_equal(got["records"][name], want, err_msg=f"{spec.stream} {name}")
