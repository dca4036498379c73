"""reinit_jax: periodic re-initialization of neural networks in JAX/Flax (see README.md)."""
