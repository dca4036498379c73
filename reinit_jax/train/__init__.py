"""Staged training with re-initialization events (SPEC §1–3): ``run(config, workdir)``.

Modules: ``defaults`` (every config field), ``validation`` (checks + setting presets), ``schedules``
(optimizer, learning rates), ``loss``, ``state``, ``step`` (jitted pieces), ``feed`` (devices and
batches), ``loop``/``driver`` (the stage loop), ``outputs`` (metrics, summary), ``study`` (several
methods, one table).
"""

from reinit_jax.train.defaults import base_config, parse_overrides
from reinit_jax.train.loop import run
from reinit_jax.train.validation import validate

__all__ = ["base_config", "parse_overrides", "run", "validate"]
