"""Fashion-MNIST read offline from Debian's ``dataset-fashion-mnist`` package, with numpy only.

Debian ships the four original Fashion-MNIST ``.gz`` files in ``/usr/share/datasets/fashion-mnist``
(``apt-get install dataset-fashion-mnist``). :func:`read_split` verifies them (size and sha256), parses
the idx format and puts the examples in the order in which TFDS's ``fashion_mnist`` 3.0.1 stores
them: TFDS writes the examples of a split sorted by ``md5(split name + str(index))`` (its shuffling
hash, ``tensorflow_datasets/core/hashing.py``), so the arrays are identical to those read from the
prepared TFDS data (tests/test_data_tfds.py) and a run gives the same result with or without
TensorFlow installed.

Debian recompressed the files, so their sha256 differs from the checksums TFDS registered for the
upstream files; ``tfds_io.DebianFashionMnist`` registers Debian's so that TFDS can prepare them too
(the streaming path needs TFDS's prepared files).
"""

from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np

DEFAULT_MANUAL_DIR = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = "apt-get install dataset-fashion-mnist"
VERSION = "3.0.1"  # the TFDS version whose example order read_split reproduces

# (size in bytes, sha256) of the files in Debian's dataset-fashion-mnist package.
DEBIAN_FILES = {
  "train-images-idx3-ubyte.gz":
    (26421856, "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
  "train-labels-idx1-ubyte.gz":
    (29491, "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
  "t10k-images-idx3-ubyte.gz":
    (4422079, "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
  "t10k-labels-idx1-ubyte.gz":
    (5125, "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
}
SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000)}
_REINSTALL = "reinstall with `apt-get install --reinstall dataset-fashion-mnist`"


def has_files(manual_dir: str | None) -> bool:
  """Whether all four Debian files exist in ``manual_dir`` (None: Debian's folder); unverified."""
  d = manual_dir or DEFAULT_MANUAL_DIR
  return all(os.path.isfile(os.path.join(d, f)) for f in DEBIAN_FILES)


def check_manual_dir(manual_dir: str | None, names=None) -> str:
  """Verifies Debian's files (all four, or ``names``) by size and sha256; returns the directory.

  Raises ValueError with one line: the install command when a file is missing, or the file that is
  corrupt or truncated.
  """
  manual_dir = manual_dir or DEFAULT_MANUAL_DIR
  for fname in names or DEBIAN_FILES:
    size, sha = DEBIAN_FILES[fname]
    path = os.path.join(manual_dir, fname)
    if not os.path.isfile(path):
      raise ValueError(
        f"fashion_mnist: {path} is missing; run `{INSTALL_HINT}` (or set manual_dir to a folder "
        "with the four Debian Fashion-MNIST .gz files)")
    actual = os.path.getsize(path)
    if actual != size:
      raise ValueError(f"fashion_mnist: {path} is corrupt or truncated ({actual} bytes, expected "
                       f"{size}); {_REINSTALL}")
    with open(path, "rb") as f:
      digest = hashlib.file_digest(f, "sha256").hexdigest()
    if digest != sha:
      raise ValueError(f"fashion_mnist: {path} is corrupt (sha256 {digest[:12]}..., expected "
                       f"{sha[:12]}...); {_REINSTALL}")
  return manual_dir


def _idx(path: str, magic: int, n: int) -> np.ndarray:
  """The array of an idx file: big-endian magic, dimension sizes, then uint8 data."""
  with gzip.open(path, "rb") as f:
    raw = f.read()
  ndim = magic & 0xFF
  header = np.frombuffer(raw, ">u4", count=1 + ndim)
  if int(header[0]) != magic or int(header[1]) != n:
    raise ValueError(f"fashion_mnist: {path} has an unexpected idx header {header.tolist()}; "
                     f"{_REINSTALL}")
  return np.frombuffer(raw, np.uint8, offset=4 * (1 + ndim)).reshape(header[1:].tolist())


def tfds_order(split: str, n: int) -> np.ndarray:
  """The permutation TFDS applies to examples ``0..n-1`` of ``split`` when it prepares them.

  TFDS keys MNIST-style examples by their index and sorts them by the 128-bit
  ``md5(split + str(key))``. Shape ``(n,)``, int64: position i holds the file index of example i.
  """
  salt = hashlib.md5(split.encode())

  def key(i):
    h = salt.copy()
    h.update(str(i).encode())
    return h.digest()  # big-endian bytes order like the integer TFDS sorts by

  return np.asarray(sorted(range(n), key=key), np.int64)


def read_split(split: str, manual_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """A whole split from the verified Debian files: ``(x uint8 (n, 28, 28, 1), y int32 (n,))``.

  ``split`` is ``'train'`` (60,000) or ``'test'`` (10,000); examples in TFDS's order (module doc).
  """
  if split not in SPLITS:
    raise ValueError(f"fashion_mnist: split={split!r}; the Debian files hold 'train' and 'test'")
  images, labels, n = SPLITS[split]
  d = check_manual_dir(manual_dir, (images, labels))
  x = _idx(os.path.join(d, images), 0x0803, n)[..., None]
  y = _idx(os.path.join(d, labels), 0x0801, n).astype(np.int32)
  order = tfds_order(split, n)
  return np.ascontiguousarray(x[order]), y[order]
