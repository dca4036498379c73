"""The array cache (reinit_jax/data/cache.py): checksums written with the arrays, verified on load;
a damaged, truncated or unrecorded cache is rebuilt with one warning line, or one error line when it
cannot be (README, Reliability)."""

import json
import logging
import os
import shutil

import numpy as np
import pytest

from reinit_jax import data
from reinit_jax.data import cache, fashion_mnist

needs_debian = pytest.mark.skipif(
  not fashion_mnist.has_files(None), reason="apt-get install dataset-fashion-mnist")


def _source(calls, seed=0):
  """A rebuild function counting its calls: 50 random 4×4×3 images and labels."""
  def rebuild():
    calls.append(1)
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (50, 4, 4, 3), dtype=np.uint8),
            rng.integers(0, 10, 50).astype(np.int32), "test source")
  return rebuild


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records
          if r.name == "reinit_jax" and r.levelno >= logging.WARNING]


def test_first_load_writes_checksums_then_reads_without_the_source(tmp_path, caplog):
  calls = []
  x, y = cache.load(str(tmp_path), "toy", "train[:80%]", _source(calls))
  fx, fy, fj = cache.paths(str(tmp_path), "toy", "train[:80%]")
  assert os.path.basename(fx) == "train_80_x.npy" and len(calls) == 1
  record = json.load(open(fj))
  assert record["files"]["train_80_x.npy"]["bytes"] == os.path.getsize(fx)
  assert record["source"] == "test source" and record["split"] == "train[:80%]"
  with caplog.at_level(logging.INFO, logger="reinit_jax"):
    x2, y2 = cache.load(str(tmp_path), "toy", "train[:80%]", _source(calls))
  assert len(calls) == 1 and not caplog.records  # read from the cache, silently
  np.testing.assert_array_equal(x2, x)
  np.testing.assert_array_equal(y2, y)
  assert x2.dtype == np.uint8 and y2.dtype == np.int32


@pytest.mark.parametrize("damage", ["flip", "truncate", "no_record", "bad_record"])
def test_damaged_cache_is_rebuilt_with_one_warning(damage, tmp_path, caplog):
  calls = []
  clean = cache.load(str(tmp_path), "toy", "train", _source(calls))
  fx, fy, fj = cache.paths(str(tmp_path), "toy", "train")
  if damage == "flip":  # same size, one byte of pixel data changed
    b = bytearray(open(fx, "rb").read())
    b[-7] ^= 0x55
    open(fx, "wb").write(bytes(b))
  elif damage == "truncate":
    with open(fy, "r+b") as f:
      f.truncate(os.path.getsize(fy) - 20)
  elif damage == "no_record":  # arrays written, killed before the record
    os.remove(fj)
  else:
    open(fj, "w").write("{not json")
  arrays, problem = cache.read(str(tmp_path), "toy", "train")
  assert arrays is None and problem is not None
  with caplog.at_level(logging.WARNING, logger="reinit_jax"):
    x, y = cache.load(str(tmp_path), "toy", "train", _source(calls))
  assert len(calls) == 2
  np.testing.assert_array_equal(x, clean[0])
  np.testing.assert_array_equal(y, clean[1])
  (w,) = _warnings(caplog)
  named = {"flip": fx, "truncate": fy}.get(damage, fj)
  assert f"the array cache {named} was " in w and "rebuilt it from test source" in w
  assert "\n" not in w
  assert cache.read(str(tmp_path), "toy", "train")[1] is None  # written again, intact


def test_damaged_cache_that_cannot_be_rebuilt_is_one_error_line(tmp_path):
  cache.load(str(tmp_path), "toy", "test", _source([]))
  fx = cache.paths(str(tmp_path), "toy", "test")[0]
  with open(fx, "r+b") as f:
    f.truncate(100)

  def offline():
    raise ValueError("toy: the source files are gone; place them in /somewhere")
  with pytest.raises(ValueError) as e:
    cache.load(str(tmp_path), "toy", "test", offline)
  msg = str(e.value)
  assert "\n" not in msg and msg.startswith(f"toy: the array cache {fx} is truncated")
  assert "place them in /somewhere" in msg and cache.directory(str(tmp_path), "toy") in msg


def test_unwritable_data_dir_means_no_cache(tmp_path):
  root = tmp_path / "a_file"  # the cache folder cannot be made under a file (as root too)
  root.write_text("")
  calls = []
  cache.load(str(root), "toy", "train", _source(calls))
  cache.load(str(root), "toy", "train", _source(calls))
  assert len(calls) == 2 and root.read_text() == ""


@pytest.fixture(scope="module")
def clean_fmnist(tmp_path_factory):
  """A fashion_mnist array cache built from Debian's files, and its training arrays."""
  root = str(tmp_path_factory.mktemp("fm"))
  d = data.build({"dataset": "fashion_mnist", "data_dir": root, "seed": 0})
  return root, d


@needs_debian
@pytest.mark.parametrize("damage", ["same_size", "truncated"])
def test_fashion_mnist_damaged_cache_rebuilt_identical(damage, clean_fmnist, tmp_path, caplog):
  root, clean = clean_fmnist
  shutil.copytree(os.path.join(root, cache.CACHE_DIR), tmp_path / cache.CACHE_DIR)
  fx = cache.paths(str(tmp_path), "fashion_mnist", "train")[0]
  if damage == "same_size":  # 1% of the pixels changed, size kept (the run would train on them)
    arr = np.load(fx)
    flat = arr.reshape(-1)
    flat[::100] = 255 - flat[::100]
    np.save(fx, arr)
    assert os.path.getsize(fx) == os.path.getsize(os.path.join(root, os.path.relpath(fx, tmp_path)))
  else:
    with open(fx, "r+b") as f:
      f.truncate(os.path.getsize(fx) // 2)
  with caplog.at_level(logging.WARNING, logger="reinit_jax"):
    d = data.build({"dataset": "fashion_mnist", "data_dir": str(tmp_path), "seed": 0})
  (w,) = _warnings(caplog)
  assert fx in w and "rebuilt it from Debian dataset-fashion-mnist" in w
  for split in ("train", "validation", "test"):
    a = clean.train(1) if split == "train" else getattr(clean, split)
    b = d.train(1) if split == "train" else getattr(d, split)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
