"""Host-side tuning for the CPU backend: keep freed memory in the process (issue 6).

On XLA:CPU every jitted call allocates its temporaries afresh. glibc serves large blocks with mmap
and returns them on free, so each call pays a page fault per 4 KiB of every large temporary: on scnn
at batch 16 that was 20-25% of a train step, and a one-step call cost 1.5× a step inside a scanned
call (bench/README.md, "Train step vs PyTorch"). Serving every block from the heap and never
trimming it makes the pages stay mapped between calls. Accelerators keep their tensors in device
memory, so the tuning is applied on the CPU backend only (and is a no-op off glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import jax

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_done = []


def tune_cpu_allocator(enable: bool = True) -> bool:
  """Sets glibc's malloc to keep memory (no mmap, no trim) when the backend is CPU.

  Process-wide and idempotent; peak resident memory stays at its high-water mark instead of
  shrinking between calls. Returns True when the tuning is (now or already) in effect.
  """
  if not enable or jax.default_backend() != "cpu" or not sys.platform.startswith("linux"):
    return False
  if _done:
    return True
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):  # musl or another libc: nothing to tune
    return False
  ok = (mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
        and mallopt(_M_TOP_PAD, 64 << 20) == 1)
  if ok:
    _done.append(True)
  return ok
