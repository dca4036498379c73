"""XLA:CPU's device count, set before JAX starts (docs/launching.md, "Devices and seeds")."""

from __future__ import annotations

import os

_FLAG = "xla_force_host_platform_device_count"


def one_cpu_device_per_core() -> None:
  """Gives XLA:CPU one device per core this process may use, unless ``XLA_FLAGS`` already sets a
  count, so the CPU backend can split a run's seeds over the cores (``run.mesh='auto'``,
  reinit_jax/train/feed.py). Has no effect once a JAX backend has started; other backends ignore
  the flag."""
  flags = os.environ.get("XLA_FLAGS", "")
  if _FLAG not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --{_FLAG}={len(os.sched_getaffinity(0))}".strip()
