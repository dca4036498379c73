"""What launch.py and the study configs use: overrides, sweeps (grids of runs) and studies.

Config files import this package (and ``reinit_jax.train.config`` through it), never the engine's
compute modules, so listing a grid or printing ``--help`` does not import JAX.
"""

from reinit_jax.launch.overrides import apply, seeds_from, set_field
from reinit_jax.launch.sweep import product
from reinit_jax.train.config import base_config

__all__ = ["apply", "base_config", "product", "seeds_from", "set_field"]
