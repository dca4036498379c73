"""Process-wide settings for the CPU backend: XLA:CPU's device count and glibc's malloc (issue 6).

Device count: XLA:CPU makes one device of the whole host unless told otherwise before JAX starts;
:func:`one_cpu_device_per_core` asks for one per core, so ``run.mesh='auto'`` can split a run's
seeds over the cores (docs/launching.md, "Devices and seeds"). ``launch.py`` calls it before anything
imports JAX, which is why this module imports JAX only inside :func:`tune_cpu_allocator`.

Allocator: on XLA:CPU every jitted call allocates its temporaries afresh. glibc serves large blocks
with mmap and returns them on free, so each call pays a page fault per 4 KiB of every large
temporary: on scnn at batch 16 that was 20-25% of a train step, and a one-step call cost 1.5× a step
inside a scanned call (bench/README.md, "Train step vs PyTorch"). Serving every block from the heap
and never trimming it makes the pages stay mapped between calls. Accelerators keep their tensors in
device memory, so the tuning applies where ``backends.choices().tune_allocator`` says (the CPU
backend), and is a no-op off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from reinit_jax import backends

_FLAG = "xla_force_host_platform_device_count"
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_done = []


def one_cpu_device_per_core() -> None:
  """Gives XLA:CPU one device per core this process may use, unless ``XLA_FLAGS`` already sets a
  count, so the CPU backend can split a run's seeds over the cores (``run.mesh='auto'``,
  reinit_jax/train/feed.py). Has no effect once a JAX backend has started; other backends ignore
  the flag, which is why it is set whatever the backend will be (unknown before JAX starts)."""
  flags = os.environ.get("XLA_FLAGS", "")
  if _FLAG not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --{_FLAG}={len(os.sched_getaffinity(0))}".strip()


def tune_cpu_allocator(enable: bool = True) -> bool:
  """Sets glibc's malloc to keep memory (no mmap, no trim) when the backend is CPU.

  Process-wide and idempotent; peak resident memory stays at its high-water mark instead of
  shrinking between calls. Returns True when the tuning is (now or already) in effect.
  """
  if not enable or not backends.choices().tune_allocator or not sys.platform.startswith("linux"):
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
