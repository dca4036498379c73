"""Shared test setup.

The default test process keeps JAX's single CPU device: tests that need 8 simulated devices run in
a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before jax is imported
(tests/test_train_devices.py). A persistent compilation cache makes the many tiny trainings that
share a train step compile it once across tests and processes.
"""

import os

import hypothesis
import jax

_CACHE = os.environ.get("REINIT_TEST_JAX_CACHE", "/tmp/reinit_jax_test_cache")
jax.config.update("jax_compilation_cache_dir", _CACHE)
# launch.py processes the tests start use the same cache (run.compilation_cache='auto'), not ~/.cache.
os.environ.setdefault("REINIT_JAX_CACHE", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

# Hypothesis draws the same examples on every run of the default suite (a CI run cannot fail on an
# example no earlier run saw); HYPOTHESIS_PROFILE=explore draws new ones, to hunt for failures.
hypothesis.settings.register_profile("default_suite", derandomize=True, deadline=None)
hypothesis.settings.register_profile("explore", deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default_suite"))
