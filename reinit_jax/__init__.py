"""reinit_jax: periodic re-initialization of neural networks in JAX/Flax (see README.md)."""

# Registers the studies' extra methods (rescale_only) so that every entry point can name them.
from reinit_jax import extra_methods  # noqa: F401,E402
