"""Fashion-MNIST prepared offline from Debian's ``dataset-fashion-mnist`` package (SPEC §5).

Debian ships the four original Fashion-MNIST ``.gz`` files in ``/usr/share/datasets/fashion-mnist``
but recompressed them, so their sha256 differs from the checksums TFDS registered for the upstream
files and the stock ``fashion_mnist`` builder refuses them. :class:`DebianFashionMnist` is the stock
builder with the Debian checksums registered: TFDS's download manager finds each file in the manual
directory by its registered file name, verifies it, and prepares the usual ``fashion_mnist`` 3.0.1
data (identical features and splits) into the data directory, with no network access.

The class keeps the TFDS name ``fashion_mnist`` (so prepared data is shared with the stock builder)
and is therefore not registered; :func:`builder` instantiates it.
"""

from __future__ import annotations

import hashlib
import os

import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

DEFAULT_MANUAL_DIR = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = "apt-get install dataset-fashion-mnist"

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


class DebianFashionMnist(tfds_mnist.FashionMNIST, skip_registration=True):
  """TFDS ``fashion_mnist`` 3.0.1 whose registered checksums are those of Debian's files."""

  name = "fashion_mnist"
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"`{INSTALL_HINT}` puts the files in {DEFAULT_MANUAL_DIR}."

  @tfds.core.utils.classproperty
  @classmethod
  def url_infos(cls):
    # The stock builder downloads URL + file name; registering these URLs with the Debian
    # checksums and file names makes the download manager take the files from manual_dir.
    return {
      cls.URL + fname: tfds.core.download.checksums.UrlInfo(
        size=size, checksum=sha, filename=fname)
      for fname, (size, sha) in DEBIAN_FILES.items()
    }


def check_manual_dir(manual_dir: str | None) -> str:
  """Verifies the four Debian files before TFDS sees them; returns the manual directory.

  Raises ValueError with one line: the install command when files are missing, or the file that is
  corrupt or truncated (size/sha256 mismatch).
  """
  manual_dir = manual_dir or DEFAULT_MANUAL_DIR
  for fname, (size, sha) in DEBIAN_FILES.items():
    path = os.path.join(manual_dir, fname)
    if not os.path.isfile(path):
      raise ValueError(
        f"fashion_mnist: {path} is missing; run `{INSTALL_HINT}` (or set manual_dir to a folder "
        "with the four Debian Fashion-MNIST .gz files)")
    actual = os.path.getsize(path)
    if actual != size:
      raise ValueError(
        f"fashion_mnist: {path} is corrupt or truncated ({actual} bytes, expected {size}); "
        f"reinstall with `apt-get install --reinstall dataset-fashion-mnist`")
    with open(path, "rb") as f:
      digest = hashlib.file_digest(f, "sha256").hexdigest()
    if digest != sha:
      raise ValueError(
        f"fashion_mnist: {path} is corrupt (sha256 {digest[:12]}..., expected {sha[:12]}...); "
        f"reinstall with `apt-get install --reinstall dataset-fashion-mnist`")
  return manual_dir


def builder(data_dir: str | None = None) -> DebianFashionMnist:
  """The Debian-backed ``fashion_mnist`` builder rooted at ``data_dir`` (None: TFDS default)."""
  return DebianFashionMnist(data_dir=data_dir)


def download_config(manual_dir: str | None) -> tfds.download.DownloadConfig:
  """A DownloadConfig that prepares from the (verified) Debian manual directory, never the net."""
  return tfds.download.DownloadConfig(manual_dir=check_manual_dir(manual_dir))
