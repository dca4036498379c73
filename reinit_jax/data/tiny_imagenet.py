"""A TFDS builder for Tiny ImageNet (64×64×3, 200 classes; [Z] Tables 1–3), prepared offline.

TFDS has no Tiny ImageNet builder. This one reads the official ``tiny-imagenet-200.zip`` placed in
the manual directory (``<data_dir>/downloads/manual`` or ``cfg.manual_dir``), with its layout::

    tiny-imagenet-200/wnids.txt                         one WordNet id a line (200)
    tiny-imagenet-200/train/<wnid>/images/*.JPEG        500 images a class
    tiny-imagenet-200/val/images/*.JPEG                 10,000 images
    tiny-imagenet-200/val/val_annotations.txt           file<TAB>wnid<TAB>bbox...

Splits: ``train`` (100,000) and ``validation`` (10,000); the official test split has no labels and
is not prepared. Label ``i`` is the ``i``-th wnid in sorted order (the ImageFolder convention). Some
images are greyscale JPEGs; they are converted to RGB so every example is ``(64, 64, 3)``.
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import tensorflow_datasets as tfds

ARCHIVE = "tiny-imagenet-200.zip"
ROOT = "tiny-imagenet-200"
NUM_CLASSES = 200
SHAPE = (64, 64, 3)


class TinyImagenet(tfds.core.GeneratorBasedBuilder):
  """Tiny ImageNet from the official archive in the manual directory (see module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Train and validation splits from tiny-imagenet-200.zip."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Place {ARCHIVE} (http://cs231n.stanford.edu/{ARCHIVE}) in the manual directory.")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=SHAPE, encoding_format="jpeg"),
        "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        "wnid": tfds.features.Text(),
      }),
      supervised_keys=("image", "label"),
      homepage="http://cs231n.stanford.edu/",
    )

  def _split_generators(self, dl_manager):
    path = os.path.join(dl_manager.manual_dir, ARCHIVE)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path} not found; {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return {"train": self._generate_examples(path, "train"),
            "validation": self._generate_examples(path, "validation")}

  def _generate_examples(self, path, split):
    with zipfile.ZipFile(path) as archive:
      wnids = sorted(archive.read(f"{ROOT}/wnids.txt").decode().split())
      if not 1 <= len(wnids) <= NUM_CLASSES:
        raise ValueError(f"{path}: wnids.txt lists {len(wnids)} classes, expected 1..{NUM_CLASSES}")
      label = {w: i for i, w in enumerate(wnids)}
      if split == "train":
        items = []
        for name in archive.namelist():
          parts = name.split("/")
          if (len(parts) == 5 and parts[1] == "train" and parts[3] == "images"
              and parts[4].upper().endswith(".JPEG")):
            items.append((name, parts[2]))
      else:
        lines = archive.read(f"{ROOT}/val/val_annotations.txt").decode().splitlines()
        items = [(f"{ROOT}/val/images/{f[0]}", f[1]) for f in (l.split("\t") for l in lines) if f[0]]
      for name, wnid in sorted(items):
        yield os.path.basename(name), {
          "image": _rgb(archive.read(name)), "label": label[wnid], "wnid": wnid}


def _rgb(jpeg: bytes) -> np.ndarray:
  from PIL import Image
  with Image.open(io.BytesIO(jpeg)) as img:
    arr = np.asarray(img.convert("RGB"), np.uint8)
  if arr.shape != SHAPE:
    raise ValueError(f"Tiny ImageNet image of shape {arr.shape}, expected {SHAPE}")
  return arr
