"""The array cache: prepared in-memory splits as ``.npy`` files with sha256 checksums (numpy only).

A split read once from its source (Debian's Fashion-MNIST files or a prepared TFDS data set) is kept
as ``<root>/reinit_jax_cache/<dataset>/<split>_x.npy`` (uint8 images ``(n, H, W, C)``) and
``<split>_y.npy`` (int32 labels ``(n,)``), where ``<root>`` is ``data_dir`` (default
``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``, as TFDS). Later runs read these files with numpy
alone: no TensorFlow import, no image decoding.

Integrity: after both arrays are written, ``<split>.json`` records each file's size and sha256; it
is written last and atomically (a temporary file, fsync, rename), so a cache interrupted mid-write
has no record. On load both files are checked against the record. A file that is truncated,
damaged (sha256 mismatch), or has no record is rebuilt from the split's source and written again,
with one warning line naming it; if the source cannot be read, one ValueError line names the
damaged file and what to do. (README, Reliability; tests/test_data_cache.py.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from typing import Callable

import numpy as np

log = logging.getLogger("reinit_jax")
CACHE_DIR = "reinit_jax_cache"
_FORMAT = 1


def data_root(data_dir: str | None) -> str:
  """The data directory: ``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
  return os.path.expanduser(
    data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets"))


def directory(root: str, dataset: str) -> str:
  """Where ``dataset``'s arrays live under the data directory ``root``."""
  return os.path.join(root, CACHE_DIR, dataset)


def _tag(split: str) -> str:
  return re.sub(r"[^A-Za-z0-9_]+", "_", split).strip("_") or "split"


def paths(root: str, dataset: str, split: str) -> tuple[str, str, str]:
  """``(x .npy, y .npy, checksum record .json)`` of one split."""
  base = os.path.join(directory(root, dataset), _tag(split))
  return base + "_x.npy", base + "_y.npy", base + ".json"


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def read(root: str, dataset: str, split: str):
  """``((x, y), None)`` from a verified cache, ``(None, None)`` when there is none, or
  ``(None, (file, problem))`` when a file is damaged, truncated or unrecorded."""
  files = paths(root, dataset, split)
  if not any(os.path.exists(p) for p in files):
    return None, None
  try:
    with open(files[2]) as f:
      record = json.load(f)["files"]
  except FileNotFoundError:
    return None, (files[2], "missing: the arrays have no checksum record (an interrupted write or "
                  "an older version's cache)")
  except (OSError, ValueError, KeyError, TypeError) as e:
    return None, (files[2], f"unreadable checksum record ({type(e).__name__})")
  arrays = []
  for path in files[:2]:
    want = record.get(os.path.basename(path)) if isinstance(record, dict) else None
    if not isinstance(want, dict) or not os.path.isfile(path):
      return None, (path, "missing")
    size = os.path.getsize(path)
    if size != want.get("bytes"):
      return None, (path, f"truncated or overwritten ({size} bytes, expected {want.get('bytes')})")
    if _sha256(path) != want.get("sha256"):
      return None, (path, "damaged (sha256 differs from its record)")
    try:
      arrays.append(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as e:
      return None, (path, f"unreadable ({type(e).__name__}: {e})")
  x, y = arrays
  if x.dtype != np.uint8 or y.dtype != np.int32 or y.ndim != 1 or len(x) != len(y):
    return None, (files[0], f"unexpected arrays {x.dtype}{x.shape}, {y.dtype}{y.shape}")
  return (x, y), None


def _atomic(path: str, write: Callable) -> None:
  # Unique per writer: processes of a multi-host run may fill a shared data dir at once.
  tmp = f"{path}.tmp{os.getpid()}-{os.urandom(4).hex()}"
  try:
    with open(tmp, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write(root: str, dataset: str, split: str, x: np.ndarray, y: np.ndarray, source: str) -> None:
  """Writes one split's arrays, then its checksum record (each atomically); OSError on failure."""
  fx, fy, fj = paths(root, dataset, split)
  os.makedirs(os.path.dirname(fx), exist_ok=True)
  record = {}
  for path, arr in ((fx, x), (fy, y)):
    _atomic(path, lambda f, a=arr: np.save(f, a, allow_pickle=False))
    record[os.path.basename(path)] = {"bytes": os.path.getsize(path), "sha256": _sha256(path)}
  meta = {"format": _FORMAT, "dataset": dataset, "split": split, "source": source, "files": record}
  _atomic(fj, lambda f: f.write(json.dumps(meta, indent=1).encode()))


def load(root: str, dataset: str, split: str, rebuild: Callable):
  """The split's ``(x uint8 (n, H, W, C), y int32 (n,))``, from the cache or rebuilt and cached.

  ``rebuild()`` reads the split from its source: ``(x, y, source description)``; it raises one-line
  ValueErrors. A damaged cache is rebuilt and reported in one warning line (module docstring).
  A data directory that cannot be written just means no cache (one info line).
  """
  arrays, problem = read(root, dataset, split)
  if arrays is not None:
    return arrays
  try:
    x, y, source = rebuild()
  except ValueError as e:
    if not problem:
      raise
    why = str(e).removeprefix(f"{dataset}: ")
    raise ValueError(f"{dataset}: the array cache {problem[0]} is {problem[1]} and cannot be "
                     f"rebuilt here ({why}); or copy an intact {directory(root, dataset)} from "
                     "another machine") from None
  if problem:
    log.warning("%s: the array cache %s was %s; rebuilt it from %s", dataset, problem[0],
                problem[1], source)
  x, y = np.asarray(x, np.uint8), np.asarray(y, np.int32)
  try:
    write(root, dataset, split, x, y, source)
  except OSError as e:
    log.info("%s: array cache not written to %s (%s)", dataset, directory(root, dataset), e)
  return x, y
