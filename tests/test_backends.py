"""The backend's speed choices are made at one point (reinit_jax/backends/__init__.py, issue 25):
the choices per backend, every 'auto' reading them, an unknown value failing in one line, no other
module of the package looking at the backend's name, and the launcher's import staying free of
JAX (XLA's device-count flag must be set before JAX starts)."""

import ast
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinit_jax import backends, models, plasticity, selection, train
from reinit_jax.backends import cpu_host, cpu_random
from reinit_jax.models import layers
from reinit_jax.train import feed, step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "reinit_jax")
BACKENDS = os.path.join(PACKAGE, "backends")

# Modules outside reinit_jax/backends/ allowed to look at the backend's name, each with why it is
# not a speed choice. Empty: run.mesh='auto' (train/feed.py) is a speed choice too (a run split
# over the host's devices is bitwise the one-device run, tests/test_train_devices.py), so it reads
# backends.choices() like the others.
NON_SPEED_USES: dict[str, str] = {}


@pytest.mark.parametrize("name", ["gpu", "tpu", "cuda", "rocm"])
def test_accelerators_get_the_accelerator_choices(name):
  c = backends.choices(name)
  assert (c.conv_impl, c.select_impl, c.seed_axis, c.mesh) == ("xla", "sort", "vmap", "data")
  assert c.compile_options() is None and not c.tune_allocator


def test_cpu_gets_the_cpu_choices():
  c = backends.choices("cpu")
  assert (c.conv_impl, c.select_impl, c.seed_axis, c.mesh) == ("im2col", "bracket", "map", "runs")
  assert c.compile_options() == {"xla_llvm_disable_expensive_passes": True} and c.tune_allocator
  assert backends.choices() == backends.choices(jax.default_backend())


def _scanned(seed_axis) -> bool:
  """Whether ``over_runs`` with ``seed_axis`` runs the runs one after another (lax.map)."""
  over = step.over_runs(lambda x: x @ x.T, (0,), seed_axis)
  return "scan" in str(jax.make_jaxpr(over)(jnp.ones((2, 3, 3))))


def test_every_auto_reads_the_one_choice(monkeypatch):
  """Each 'auto' asks backends.choices(); with the backend's name stood in for 'gpu', it takes the
  accelerator's choice (run.mesh and the allocator differ only with several devices, on glibc)."""
  monkeypatch.delenv(selection.ENV_SELECT_IMPL, raising=False)
  assert (layers.resolve_conv_impl("auto"), selection.resolve_select_impl()) == ("im2col", "bracket")
  assert _scanned("auto")
  asked, choices = [], backends.choices
  monkeypatch.setattr(backends, "choices", lambda *a: asked.append(1) or choices(*a))
  feed.placement("auto", 1)
  cpu_host.tune_cpu_allocator()
  assert len(asked) == 2
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert (layers.resolve_conv_impl("auto"), selection.resolve_select_impl()) == ("xla", "sort")
  assert not _scanned("auto")  # vmap
  assert feed.placement("auto", 1).runs_mesh is None and cpu_host.tune_cpu_allocator() is False


@pytest.mark.parametrize("field,fails", [
  ("conv_impl", lambda: models.create("scnn_tiny", 10, conv_impl="cudnn")),
  ("select_impl", lambda: selection.resolve_select_impl("radix")),
  ("seed_axis", lambda: step.over_runs(lambda x: x, (0,), "pmap")),
  ("config.reinit.select_impl", lambda: train.validate(_config("reinit.select_impl", "radix"))),
  ("config.run.mesh", lambda: train.validate(_config("run.mesh", "model"))),
])
def test_an_unknown_value_of_an_auto_field_fails_in_one_line(field, fails):
  with pytest.raises(ValueError) as e:
    fails()
  assert field in str(e.value) and "\n" not in str(e.value)


def _config(field, value):
  from reinit_jax import launch
  c = train.base_config()
  launch.set_field(c, field, value)
  return c


def _backend_looks(path):
  """Lines of ``path`` that call ``default_backend`` or compare something with 'cpu'."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  lines = []
  for node in ast.walk(tree):
    called = isinstance(node, ast.Call) and getattr(node.func, "attr",
                                                    getattr(node.func, "id", None)) == "default_backend"
    compared = isinstance(node, ast.Compare) and any(
        isinstance(n, ast.Constant) and n.value == "cpu" for n in [node.left, *node.comparators])
    if called or compared:
      lines.append(node.lineno)
  return lines


def test_no_module_outside_backends_looks_at_the_backend():
  found = {}
  for dirpath, _, files in os.walk(PACKAGE):
    if dirpath.startswith(BACKENDS):
      continue
    for f in files:
      rel = os.path.relpath(os.path.join(dirpath, f), ROOT)
      if f.endswith(".py") and rel not in NON_SPEED_USES and _backend_looks(os.path.join(ROOT, rel)):
        found[rel] = _backend_looks(os.path.join(ROOT, rel))
  assert not found, f"backend looked at outside reinit_jax/backends (use backends.choices()): {found}"
  assert _backend_looks(os.path.join(BACKENDS, "__init__.py"))  # the scan sees the one place


def test_the_launchers_cpu_settings_import_no_jax():
  code = ("import sys; from reinit_jax.backends import cpu_host; "
          "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)")
  subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_the_unrolled_threefry_draws_the_bits_of_jax_random():
  """cpu_random.fast_key: every draw jax.random makes from a threefry key, bit for bit."""
  key = jax.random.key(7)
  fast = cpu_random.fast_key(key)
  assert jax.random.key_impl(fast) != jax.random.key_impl(key)
  for shape in [(3,), (5, 7), (784, 100)]:
    for draw in (jax.random.normal, jax.random.uniform, functools.partial(jax.random.bits,
                                                                          dtype=jnp.uint32)):
      np.testing.assert_array_equal(jax.jit(draw, static_argnums=1)(fast, shape),
                                    jax.jit(draw, static_argnums=1)(key, shape))
  for n in (2, 3, 6):
    np.testing.assert_array_equal(jax.random.key_data(jax.random.split(fast, n)),
                                  jax.random.key_data(jax.random.split(key, n)))
  np.testing.assert_array_equal(jax.random.permutation(jax.random.fold_in(fast, 3), 100),
                                jax.random.permutation(jax.random.fold_in(key, 3), 100))
  keys = jax.random.split(jax.random.key(1), 4)
  params = {"a": jnp.ones((4, 6, 5)), "b": jnp.ones((4, 5))}
  snp = jax.vmap(lambda p, k: plasticity.shrink_perturb_step(p, k, 0.9, 0.1))
  for a, b in zip(jax.tree.leaves(jax.jit(snp)(params, jax.vmap(cpu_random.fast_key)(keys))),
                  jax.tree.leaves(jax.jit(snp)(params, keys))):
    np.testing.assert_array_equal(a, b)



@pytest.mark.parametrize("family", ["mlp", "scnn_tiny", "resnet18_tiny", "mobilenet_v2_tiny"])
def test_a_fresh_init_from_the_unrolled_key_is_the_same_draw(family):
  """The engine's θ_init (model.init from a raw uint32 key, backends.draw_key on CPU): equal."""
  model = models.create(family, 10)
  raw = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0x1417), 3), 2)
  fast = jax.jit(lambda k: model.init(cpu_random.fast_key(k)))(raw)
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(jax.jit(model.init)(raw))):
    np.testing.assert_array_equal(a, b)


def test_draw_key_is_the_unrolled_key_on_cpu_only(monkeypatch):
  raw = jax.random.PRNGKey(3)
  assert jax.random.key_impl(backends.draw_key(raw)) != jax.random.key_impl(jax.random.key(3))
  monkeypatch.setattr(backends, "choices", lambda backend=None: backends.ACCELERATOR)
  assert backends.draw_key(raw) is raw
