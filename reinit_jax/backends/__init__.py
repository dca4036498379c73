"""The speed choices that depend on the backend, made at one point: :func:`choices`.

XLA:CPU and the accelerators are fast at different things: XLA:CPU leaves backward convolutions in a
slow generic form inside a while loop, sorts slowly, runs matmuls batched over seeds far slower than
separate ones, spends long on LLVM's passes and pays a page fault per 4 KiB of every temporary. The
engine works around each of these on the CPU backend only, and every such decision reads one
:class:`Choices` from :func:`choices`, the only place that looks at the backend's name; the
accelerator path then reads without CPU code in it. None of the choices changes a result: each CPU
path is tested bitwise (or to float32 rounding, the convolutions) against the accelerator one.

The CPU-only code itself lives beside this module: ``cpu_conv.py`` (narrow-conv taps and
forward-form conv gradients, ``conv_impl='im2col'``), ``cpu_random.py`` (threefry unrolled) and
``cpu_host.py`` (the malloc tuning and XLA:CPU's device count, set before JAX starts). The
k-smallest 'bracket' selection stays in ``reinit_jax/selection.py``, an algorithm beside the others
it must agree with.

No module here imports JAX at module level (``cpu_conv.py`` and ``cpu_random.py`` aside), so
``launch.py`` can set XLA's flags through ``cpu_host`` before JAX starts; nothing here imports the
engine (train/, launch/), so models/ and selection.py can import it.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Choices:
  """What 'auto' means on one backend.

  conv_impl: the CNNs' convolution (``models/layers.py``: 'im2col' | 'xla').
  select_impl: the exact k-smallest selection (``selection.py``: 'bracket' | 'sort').
  seed_axis: how per-run functions go over the run axis (``train/step.py``: 'map' | 'vmap').
  mesh: ``run.mesh='auto'`` with one process (``train/feed.py``: 'runs' | 'data').
  rare_compile_options: XLA options, as (name, value) pairs, of the functions a run calls a few
    times (init, prepare, events; ``train/build.py``); empty: the defaults.
  tune_allocator: whether ``run.tune_cpu_allocator`` applies (``cpu_host.tune_cpu_allocator``).
  unrolled_threefry: whether :func:`draw_key` hands out keys whose threefry hash is emitted
    unrolled (``cpu_random.py``; the same bits).
  """

  conv_impl: str
  select_impl: str
  seed_axis: str
  mesh: str
  rare_compile_options: tuple = ()
  tune_allocator: bool = False
  unrolled_threefry: bool = False

  def compile_options(self) -> dict | None:
    """``rare_compile_options`` as ``jax.jit``'s ``compiler_options`` (None: XLA's defaults)."""
    return dict(self.rare_compile_options) or None


# Why each CPU choice (measurements in bench/README.md):
CPU = Choices(
  # XLA:CPU runs backward convs inside a while loop 7-25x slower than the forward form, and convs
  # with a few input channels at 1-3 GFLOP/s ("Train step vs PyTorch", "Narrow convolutions").
  conv_impl="im2col",
  # XLA:CPU sorts slowly; a few counting passes over memory are fast ("Events per backend").
  select_impl="bracket",
  # Matmuls batched over seeds run 3.6x slower than separate ones ("Seeds in parallel"), and a
  # run's bits then do not depend on how many runs share the call (a packed grid).
  seed_axis="map",
  # A grid point's small per-seed matmuls use about one core: one host device per core gives each
  # its own seeds, bitwise the one-device result ("Run axis").
  mesh="runs",
  # What runs a few times per run compiles without LLVM's expensive passes: 40% less compile time
  # for the same bits (checked by the digest tests); the train step and evaluation keep them.
  rare_compile_options=(("xla_llvm_disable_expensive_passes", True),),
  # Every jitted call allocates its temporaries afresh: keeping freed pages saves 20-25% of a step.
  tune_allocator=True,
  # XLA:CPU runs jax's threefry hash as a loop, 2-3x slower than its rounds written out: a fresh
  # θ_init of scnn in 6 instead of 14 ms, the same bits ("Event time ÷ step time").
  unrolled_threefry=True)

# GPUs and TPUs: XLA's own conv, one sort, vmapped seeds, batches split over the devices.
ACCELERATOR = Choices(conv_impl="xla", select_impl="sort", seed_axis="vmap", mesh="data")


def choices(backend: str | None = None) -> Choices:
  """The :class:`Choices` of ``backend`` ('cpu', 'gpu', 'tpu', ...; None: the default backend's).

  Read at trace or build time, never cached: a test may stand in another backend's name, and a
  process sees one backend anyway. Any backend other than 'cpu' gets the accelerator choices.
  """
  if backend is None:
    import jax  # here, not at the top: launch.py imports this package before anything imports JAX
    backend = jax.default_backend()
  return CPU if backend == "cpu" else ACCELERATOR


def draw_key(key):
  """``key`` (a threefry key, raw or typed) as the key to draw large random arrays from: on the
  CPU backend one whose hash runs unrolled (``cpu_random.fast_key``, the same bits), elsewhere
  ``key`` itself. Read at trace time."""
  if not choices().unrolled_threefry:
    return key
  from reinit_jax.backends import cpu_random  # imports JAX: not at the top (see the docstring)
  return cpu_random.fast_key(key)
