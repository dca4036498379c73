"""reinit_jax/continual.py on a small synthetic stream: records per task and seed, one compilation
for the whole stream, every method runs, unit resets happen where the method says."""

import numpy as np
import pytest

from reinit_jax import continual


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
  out = continual.run(continual.Stream(seeds=(0, 1), tasks=5, examples=64, passes=1), x, y)
  assert len(traced) == 1  # traced once (vmapped), reused for every task
  assert not np.array_equal(out["records"]["param_norm"][:, 0], out["records"]["param_norm"][:, 1])


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
