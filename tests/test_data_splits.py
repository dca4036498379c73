"""reinit_jax.data without TFDS: synthetic task, hold-out, label noise, chunks, order, host shares."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from reinit_jax import data
from reinit_jax.data import splits, synthetic


def test_synthetic_task_matches_lw_1_1():
  (x, y), (xt, yt) = synthetic.generate(seed=3, alpha=2.0)
  assert x.shape == (256, 128) and xt.shape == (10000, 128)
  assert x.dtype == np.float32 and y.dtype == np.int32
  codes = synthetic.class_codes()
  np.testing.assert_array_equal(codes[0], [-1, -1, -1])
  np.testing.assert_array_equal(codes[5], [1, -1, 1])
  np.testing.assert_array_equal(codes[6], [1, 1, -1])
  np.testing.assert_array_equal(x[:, :3], 2.0 * codes[y])
  # Labels uniform over 8 classes; the 125 noise coordinates are standard normal.
  counts = np.bincount(yt, minlength=8)
  assert counts.min() > 1100 and counts.max() < 1400
  assert abs(xt[:, 3:].mean()) < 0.01 and abs(xt[:, 3:].std() - 1) < 0.01
  again = synthetic.generate(seed=3, alpha=2.0)
  np.testing.assert_array_equal(again[0][0], x)
  assert not np.array_equal(synthetic.generate(seed=4)[0][1], y)


def test_build_synthetic_defaults_and_identity_augment():
  d = data.build({"dataset": "synthetic", "seed": 1, "synthetic_alpha": 0.5})
  assert d.meta == data.Meta("synthetic", 8, (128,), 256, 0, 10000, True)
  assert len(d.validation) == 0 and d.validation.x.shape == (0, 128)
  tr = d.train(1)
  np.testing.assert_array_equal(np.abs(tr.x[:, :3]), 0.5)
  out = jax.jit(d.augment, static_argnames="train")(jax.random.key(0), tr.x[:8], train=True)
  np.testing.assert_array_equal(np.asarray(out), tr.x[:8])


@pytest.mark.parametrize("q,n,expected", [(0.2, 256, 51), (0.4, 1000, 400), (0.0, 50, 0)])
def test_label_noise_fraction_exact_and_stable(q, n, expected):
  y = np.arange(n, dtype=np.int32) % 10
  y1, idx1 = splits.label_noise(7, y, q, 10)
  y2, idx2 = splits.label_noise(7, y, q, 10)
  assert len(idx1) == expected and len(np.unique(idx1)) == expected
  np.testing.assert_array_equal(idx1, idx2)
  np.testing.assert_array_equal(y1, y2)
  untouched = np.setdiff1d(np.arange(n), idx1)
  np.testing.assert_array_equal(y1[untouched], y[untouched])
  assert y1.min() >= 0 and y1.max() < 10
  if expected:
    assert not np.array_equal(splits.label_noise(8, y, q, 10)[1], idx1)


def test_label_noise_relabels_uniformly_over_all_classes():
  y = np.zeros(20000, np.int32)
  y1, idx = splits.label_noise(0, y, 0.5, 4)
  counts = np.bincount(y1[idx], minlength=4) / len(idx)
  np.testing.assert_allclose(counts, 0.25, atol=0.02)  # class 0 (the true one) included


def test_build_label_noise_clean_validation_and_recorded_indices():
  cfg = {"dataset": "synthetic", "seed": 2, "label_noise": 0.4, "validation_fraction": 0.25}
  d, d2 = data.build(cfg), data.build(cfg)
  assert d.meta.num_train == 192 and d.meta.num_validation == 64
  assert len(d.noisy_indices) == round(0.4 * 192)
  np.testing.assert_array_equal(d.noisy_indices, d2.noisy_indices)
  tr = d.train(1)
  np.testing.assert_array_equal(tr.y, d2.train(1).y)
  codes = synthetic.class_codes()
  # Features still carry the true class: clean labels agree with the code, noisy ones mostly not.
  true_y = np.argmax(tr.x[:, :3] @ codes.T, axis=1)
  np.testing.assert_array_equal(true_y, d.train_clean_y)
  clean = np.setdiff1d(np.arange(192), d.noisy_indices)
  np.testing.assert_array_equal(tr.y[clean], true_y[clean])
  val_true = np.argmax(d.validation.x[:, :3] @ codes.T, axis=1)
  np.testing.assert_array_equal(d.validation.y, val_true)


def test_holdout_deterministic_disjoint_and_sized():
  tr, va = splits.holdout(5, 1000, 0.1)
  assert len(va) == 100 and len(tr) == 900
  assert len(np.intersect1d(tr, va)) == 0 and len(np.union1d(tr, va)) == 1000
  np.testing.assert_array_equal(splits.holdout(5, 1000, 0.1)[1], va)
  assert not np.array_equal(splits.holdout(6, 1000, 0.1)[1], va)


def test_chunk_views_nested_and_cover():
  d = data.build({"dataset": "synthetic", "seed": 0, "chunks": 5})
  np.testing.assert_array_equal(d.chunk_ends, [52, 103, 154, 205, 256])
  views = [d.train(t) for t in range(1, 7)]
  for small, big in zip(views, views[1:]):
    np.testing.assert_array_equal(big.x[: len(small)], small.x)
    np.testing.assert_array_equal(big.y[: len(small)], small.y)
  assert [len(v) for v in views] == [52, 103, 154, 205, 256, 256]


def test_train_subset_is_prefix_of_shuffled_train():
  full = data.build({"dataset": "synthetic", "seed": 0, "synthetic_train": 100})
  sub = data.build({"dataset": "synthetic", "seed": 0, "synthetic_train": 100, "train_subset": 30})
  assert sub.meta.num_train == 30
  np.testing.assert_array_equal(sub.train(1).x, full.train(1).x[:30])


def test_epoch_indices_deterministic_permutation_and_resume():
  a = data.epoch_indices(seed=1, epoch=3, n=1000, batch_size=128)
  assert a.shape == (7, 128) and len(np.unique(a)) == 896 and a.max() < 1000
  np.testing.assert_array_equal(a, data.epoch_indices(1, 3, 1000, 128))
  assert not np.array_equal(a, data.epoch_indices(1, 4, 1000, 128))
  # Resuming at (epoch=3, step=4) regenerates the row: identical remaining batches.
  uninterrupted = [a[s] for s in range(7)]
  resumed = [data.epoch_indices(1, 3, 1000, 128)[s] for s in range(4, 7)]
  for r, u in zip(resumed, uninterrupted[4:]):
    np.testing.assert_array_equal(r, u)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 5000), count=st.integers(1, 64))
def test_process_shares_disjoint_cover_balanced(n, count):
  shares = [splits.process_share(n, i, count) for i in range(count)]
  assert shares[0][0] == 0 and shares[-1][1] == n
  for (a, b), (c, _) in zip(shares, shares[1:]):
    assert b == c  # contiguous, hence disjoint and covering
  sizes = [b - a for a, b in shares]
  assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n


def test_local_rows_and_global_batch_single_process():
  idx = np.arange(16)
  parts = [data.local_rows(idx, i, 4) for i in range(4)]
  np.testing.assert_array_equal(np.concatenate(parts), idx)
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
  g = data.global_batch({"x": x}, sharding)
  assert g["x"].shape == (16, 3)
  np.testing.assert_array_equal(np.asarray(g["x"]), x)


@pytest.mark.parametrize("cfg,match", [
  ({"dataset": "mnistt"}, r"config.data.dataset='mnistt' is invalid; allowed: .*cifar10.*fashion_mnist"),
  ({"dataset": "synthetic", "label_noise": 1.0}, r"config.data.label_noise=1.0 is invalid; allowed: a number in \[0, 1\)"),
  ({"dataset": "synthetic", "label_noise": -0.1}, r"config.data.label_noise=-0.1 is invalid; allowed: a number in \[0, 1\)"),
  ({"dataset": "synthetic", "chunks": 0}, r"config.data.chunks=0 is invalid; allowed: an integer >= 1"),
  ({"dataset": "synthetic", "chunks": 300}, r"chunks=300 must be in \[1, 256\]"),
  ({"dataset": "synthetic", "augmentation": "cutout"}, r"config.data.augmentation='cutout' is invalid; allowed: 'none'"),
  ({"dataset": "synthetic", "train_subset": 999}, r"train_subset=999 exceeds the 256"),
])
def test_bad_config_one_line(cfg, match):
  with pytest.raises(ValueError, match=match) as err:
    data.build(cfg)
  assert "\n" not in str(err.value)


def test_epoch_indices_batch_larger_than_view():
  with pytest.raises(ValueError, match=r"batch_size=300 must be in \[1, 256\]"):
    data.epoch_indices(0, 0, 256, 300)
