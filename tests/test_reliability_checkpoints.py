"""Checkpoint integrity (reinit_jax/checkpoint.py; README, Reliability): checksums recorded at save
and checked before orbax reads, one log line for a damaged step and no asyncio noise on stderr."""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from reinit_jax import checkpoint
from reinit_jax.checkpoint import CHECKSUMS, Checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _state(k):
  """A pytree like a small train state: 24 leaves of several shapes and dtypes, random values of
  seed k (incompressible, so orbax's data files are several KB)."""
  rng = np.random.default_rng(int(k))
  return {f"layer{i}": {"w": jnp.asarray(rng.normal(size=(64, 32 + i)), jnp.float32),
                        "b": jnp.asarray(rng.normal(size=32 + i), jnp.float32),
                        "n": jnp.asarray(i * int(k), jnp.int32)} for i in range(8)}


def _save_two(directory):
  ck = Checkpoints(directory)
  ck.save(1, _state(1.0), {"step": 1})
  ck.save(2, _state(2.0), {"step": 2})
  ck.close()


def test_save_records_checksums_and_restore_checks_them(tmp_path):
  d = str(tmp_path / "ck")
  _save_two(d)
  record = json.load(open(os.path.join(d, "2", CHECKSUMS)))
  files = checkpoint._files(os.path.join(d, "2"))
  assert sorted(record) == files and any(f.startswith("state/") for f in files)
  assert all(record[f][0] == os.path.getsize(os.path.join(d, "2", f)) for f in files)
  ck = Checkpoints(d)
  step, state, meta = ck.restore_latest(_state(0.0))
  assert step == 2 and meta["step"] == 2
  np.testing.assert_array_equal(state["layer3"]["w"], _state(2)["layer3"]["w"])
  ck.close()
  big = max(files, key=lambda f: os.path.getsize(os.path.join(d, "2", f)))
  path = os.path.join(d, "2", big)
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 1
  open(path, "wb").write(bytes(data))
  with pytest.raises(ValueError, match=f"{big} is damaged"):
    checkpoint.verify_checksums(os.path.join(d, "2"))


def _flip(step_dir, which):
  """Flips every 997th byte (from byte 996) of the files ``which`` selects."""
  for d, _, names in os.walk(step_dir):
    for n in names:
      p = os.path.join(d, n)
      rel = os.path.relpath(p, step_dir)
      if which == "all" or (which == "data" and "/d/" in rel) or (
          which == "metadata" and rel.startswith("state/array_metadatas")):
        b = bytearray(open(p, "rb").read())
        for i in range(996 if which != "metadata" else 0, len(b), 997):
          b[i] ^= 0xFF
        open(p, "wb").write(bytes(b))


_RESTORE = textwrap.dedent("""
  import logging, sys
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
  sys.path.insert(0, {tests!r})
  from test_reliability_checkpoints import _state
  from reinit_jax.checkpoint import Checkpoints
  ck = Checkpoints({d!r})
  step, state, meta = ck.restore_latest(_state(0.0))
  print(step, float(state["layer3"]["w"].sum()))
  ck.close()
""")


@pytest.mark.parametrize("damage", ["all", "data", "metadata_no_record"])
def test_damaged_step_one_line_then_previous_no_asyncio_noise(damage, tmp_path):
  """'all': every file (the checksum record too); 'data': only orbax's data files, which orbax
  itself would restore without noticing; 'metadata_no_record': a step saved without a checksum
  record (an earlier version) whose array metadata is damaged, so orbax's own read fails."""
  d = str(tmp_path / "ck")
  _save_two(d)
  if damage == "metadata_no_record":
    os.remove(os.path.join(d, "2", CHECKSUMS))
  _flip(os.path.join(d, "2"), damage.split("_")[0])
  r = subprocess.run([sys.executable, "-c", _RESTORE.format(tests=os.path.join(ROOT, "tests"), d=d)],
                     cwd=ROOT, capture_output=True, text=True, timeout=300,
                     env={**os.environ, "PYTHONPATH": ROOT})
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.split() == ["1", str(float(_state(1)["layer3"]["w"].sum()))]  # step 1's
  lines = [line for line in r.stderr.splitlines() if line.strip()]
  assert len(lines) == 1, r.stderr[-3000:]
  assert lines[0].startswith(f"WARNING checkpoint at step 2 in {d} is unreadable (")
  assert lines[0].endswith("resuming from step 1")
  if damage == "data":
    assert "(state/" in lines[0] and "/d/" in lines[0] and "is damaged (sha256" in lines[0]
  assert os.listdir(d + ".corrupt")[0].startswith("2-")
  assert "Exception ignored" not in r.stderr and "Event loop is closed" not in r.stderr


def test_noise_filter_passes_other_unraisables(monkeypatch):
  seen = []
  monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u))
  checkpoint._silence_orbax_noise()
  checkpoint._silence_orbax_noise()  # installed once
  hook = sys.unraisablehook
  assert getattr(hook, "_reinit_jax_filter", False)

  class U:
    def __init__(self, exc, obj=None):
      self.exc_value, self.object = exc, obj

  hook(U(RuntimeError("Event loop is closed")))
  other = U(RuntimeError("something else"))
  hook(other)
  assert seen == [other]


def test_noise_filter_passes_other_uncaught_exceptions(monkeypatch):
  """The closed-loop error that tensorstore's threads print through sys.excepthook is dropped;
  any other exception reaches the previous hook."""
  seen = []
  monkeypatch.setattr(sys, "excepthook", lambda *args: seen.append(args[1]))
  monkeypatch.setattr(sys, "unraisablehook", lambda u: None)  # no filter yet: it installs both
  checkpoint._silence_orbax_noise()
  sys.excepthook(RuntimeError, RuntimeError("Event loop is closed"), None)
  other = ValueError("a real error")
  sys.excepthook(ValueError, other, None)
  assert seen == [other]
