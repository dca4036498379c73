"""TFDS paths: Debian-backed fashion_mnist, bad files, our Tiny ImageNet builder, streaming resume.

fashion_mnist is prepared through the real TFDS preparation once into the pytest cache
(.pytest_cache/d/reinit_jax_tfds, about 40 s on 2 cores); later sessions reuse it.
``pytest --cache-clear`` (or a clean CI checkout) prepares it again. The in-memory path reads
Debian's files with numpy; the first test checks that it gives TFDS's arrays exactly (about 20 s of
TFDS decoding).
"""

import io
import os
import shutil
import zipfile

import jax
import numpy as np
import pytest

from reinit_jax import data
from reinit_jax.data import fashion_mnist

DEBIAN = fashion_mnist.DEFAULT_MANUAL_DIR
needs_debian = pytest.mark.skipif(
  not os.path.isfile(os.path.join(DEBIAN, "train-images-idx3-ubyte.gz")),
  reason="apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="session")
def fmnist_dir(request):
  """A data dir holding TFDS's fashion_mnist prepared from Debian's files."""
  d = str(request.config.cache.mkdir("reinit_jax_tfds"))
  if os.path.isfile(os.path.join(DEBIAN, "train-images-idx3-ubyte.gz")):
    from reinit_jax.data import tfds_io
    tfds_io.prepare("fashion_mnist", tfds_io.DebianFashionMnist(data_dir=d), None)
  return d


@needs_debian
def test_fashion_mnist_from_debian_files_equals_tfds(fmnist_dir, tmp_path):
  from reinit_jax.data import cache, tfds_io
  d = data.build({"dataset": "fashion_mnist", "data_dir": str(tmp_path), "seed": 0})
  b = tfds_io.DebianFashionMnist(data_dir=fmnist_dir)
  assert b.is_prepared() and str(b.version) == fashion_mnist.VERSION
  assert b.info.splits["train"].num_examples == 60000
  assert b.info.splits["test"].num_examples == 10000
  # The numpy reader of Debian's files puts the examples in TFDS's order: the same arrays.
  for split in ("train", "test"):
    tx, ty, _ = tfds_io.read_split(b, split)
    (cx, cy), problem = cache.read(str(tmp_path), "fashion_mnist", split)
    assert problem is None
    np.testing.assert_array_equal(cx, tx)
    np.testing.assert_array_equal(cy, ty)
  assert d.meta == data.Meta("fashion_mnist", 10, (28, 28, 1), 54000, 6000, 10000, True)
  tr = d.train(1)
  assert tr.x.shape == (54000, 28, 28, 1) and tr.x.dtype == np.uint8
  assert d.test.x.shape == (10000, 28, 28, 1) and d.validation.x.shape == (6000, 28, 28, 1)
  all_y = np.concatenate([tr.y, d.validation.y])
  np.testing.assert_array_equal(np.bincount(all_y, minlength=10), [6000] * 10)
  np.testing.assert_array_equal(np.bincount(d.test.y, minlength=10), [1000] * 10)
  assert 60 < tr.x.mean() < 80  # real images (Fashion-MNIST's mean pixel is ~72.9)


@needs_debian
def test_fashion_mnist_noise_subset_and_chunks(fmnist_dir):
  cfg = {"dataset": "fashion_mnist", "data_dir": fmnist_dir, "seed": 3, "label_noise": 0.2,
         "train_subset": 1000, "chunks": 4}
  d, d2 = data.build(cfg), data.build(cfg)
  assert d.meta.num_train == 1000 and len(d.noisy_indices) == 200
  np.testing.assert_array_equal(d.noisy_indices, d2.noisy_indices)
  np.testing.assert_array_equal(d.train(4).y, d2.train(4).y)
  changed = np.flatnonzero(d.train(4).y != d.train_clean_y)
  assert set(changed) <= set(d.noisy_indices) and 150 < len(changed) < 200  # ~9/10 change
  assert len(d.train(2)) == 500


@needs_debian
def test_streaming_path_resume_noise_and_augmentation(fmnist_dir):
  cfg = {"dataset": "fashion_mnist", "data_dir": fmnist_dir, "seed": 1, "in_memory": False,
         "augmentation": "cifar", "train_subset": 600, "label_noise": 0.5}
  d = data.build(cfg)
  assert not d.meta.in_memory and d.meta.num_train == 600 and d.meta.num_validation == 6000
  split = d.train(1)
  full = list(split.batches(seed=1, epoch=2, batch_size=100))
  resumed = list(split.batches(seed=1, epoch=2, batch_size=100, start_step=3))
  assert len(full) == 6 and len(resumed) == 3
  for (xa, ya), (xb, yb) in zip(full[3:], resumed):
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
  assert full[0][0].shape == (100, 28, 28, 1) and full[0][0].dtype == np.float32
  other = next(iter(split.batches(seed=1, epoch=3, batch_size=100)))
  assert not np.array_equal(other[1], full[0][1])  # a new epoch reshuffles
  # Label noise of the streaming path: exactly the seeded draw; the rest keep their labels.
  ys = np.concatenate([y for _, y in full])
  assert len(d.noisy_indices) == 300 and ys.shape == (600,)
  # Unaugmented test batches equal the in-memory data normalized by the device path.
  mem = data.build({**cfg, "in_memory": True})
  xt, yt = next(iter(d.test.batches(seed=0, epoch=0, batch_size=64)))
  np.testing.assert_array_equal(yt, mem.test.y[:64])
  want = np.asarray(mem.augment(jax.random.key(0), mem.test.x[:64], train=False))
  np.testing.assert_allclose(xt, want, atol=1e-5)
  # Two processes read disjoint halves of each epoch's examples, half a batch each.
  halves = [list(split.batches(1, 2, 100, process_index=i, process_count=2)) for i in range(2)]
  assert [len(h) for h in halves] == [6, 6] and halves[0][0][0].shape == (50, 28, 28, 1)
  both = np.concatenate([y for h in halves for _, y in h])
  np.testing.assert_array_equal(np.sort(both), np.sort(ys))


def _copy_debian(tmp_path, truncate=None, drop=None):
  for name in fashion_mnist.DEBIAN_FILES:
    if name == drop:
      continue
    src, dst = os.path.join(DEBIAN, name), tmp_path / name
    if name == truncate:
      dst.write_bytes(open(src, "rb").read()[: os.path.getsize(src) // 2])
    else:
      os.symlink(src, dst)


@needs_debian
def test_truncated_gz_one_clear_line(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  _copy_debian(manual, truncate="train-images-idx3-ubyte.gz")
  cfg = {"dataset": "fashion_mnist", "data_dir": str(tmp_path / "tfds"), "manual_dir": str(manual)}
  with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz is corrupt or truncated "
                     r"\(13210928 bytes, expected 26421856\)") as err:
    data.build(cfg)
  assert "\n" not in str(err.value)


@needs_debian
def test_corrupt_gz_same_size_one_clear_line(tmp_path):
  _copy_debian(tmp_path, drop="t10k-labels-idx1-ubyte.gz")
  (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\0" * 5125)
  with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz is corrupt \(sha256"):
    data.build({"dataset": "fashion_mnist", "data_dir": str(tmp_path / "t"),
                "manual_dir": str(tmp_path)})


def test_missing_files_say_apt_get(tmp_path):
  with pytest.raises(ValueError, match=r"run `apt-get install dataset-fashion-mnist`") as err:
    data.build({"dataset": "fashion_mnist", "data_dir": str(tmp_path / "t"),
                "manual_dir": str(tmp_path)})
  assert "\n" not in str(err.value)


def _jpeg(rng, grey=False):
  from PIL import Image
  arr = rng.integers(0, 256, (64, 64) if grey else (64, 64, 3), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format="JPEG")
  return buf.getvalue()


def _tiny_archive(path, wnids=("n03", "n01", "n02"), per_class=3, val=4):
  rng = np.random.default_rng(0)
  root = "tiny-imagenet-200"
  with zipfile.ZipFile(path, "w") as z:
    z.writestr(f"{root}/wnids.txt", "\n".join(wnids) + "\n")
    for w in wnids:
      z.writestr(f"{root}/train/{w}/{w}_boxes.txt", "")
      for i in range(per_class):
        z.writestr(f"{root}/train/{w}/images/{w}_{i}.JPEG", _jpeg(rng, grey=(i == 0)))
    lines = []
    for i in range(val):
      z.writestr(f"{root}/val/images/val_{i}.JPEG", _jpeg(rng))
      lines.append(f"val_{i}.JPEG\t{wnids[i % len(wnids)]}\t0\t0\t63\t63")
    z.writestr(f"{root}/val/val_annotations.txt", "\n".join(lines) + "\n")
    z.writestr(f"{root}/test/images/test_0.JPEG", _jpeg(rng))


def test_tiny_imagenet_builder_on_generated_archive(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  _tiny_archive(manual / "tiny-imagenet-200.zip")
  cfg = {"dataset": "tiny_imagenet", "data_dir": str(tmp_path / "tfds"),
         "manual_dir": str(manual), "validation_fraction": 0.0, "augmentation": "cifar"}
  d = data.build(cfg)
  assert d.meta == data.Meta("tiny_imagenet", 200, (64, 64, 3), 9, 0, 4, True)
  tr = d.train(1)
  assert tr.x.shape == (9, 64, 64, 3) and tr.x.dtype == np.uint8
  # Labels follow sorted wnids: n01 → 0, n02 → 1, n03 → 2; validation from val_annotations.
  np.testing.assert_array_equal(np.bincount(tr.y, minlength=3), [3, 3, 3])
  np.testing.assert_array_equal(np.sort(d.test.y), [0, 1, 2, 2])  # n03, n01, n02, n03
  out = d.augment(jax.random.key(0), tr.x, train=True)
  assert out.shape == (9, 64, 64, 3)


def test_tiny_imagenet_missing_archive_one_line(tmp_path):
  (tmp_path / "manual").mkdir()
  (tmp_path / "manual" / "readme").write_text("x")
  with pytest.raises(ValueError, match=r"tiny_imagenet: TFDS preparation failed.*"
                     r"tiny-imagenet-200.zip not found") as err:
    data.build({"dataset": "tiny_imagenet", "data_dir": str(tmp_path / "t"),
                "manual_dir": str(tmp_path / "manual")})
  assert "\n" not in str(err.value)
