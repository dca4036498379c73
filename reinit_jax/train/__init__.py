"""Staged training with re-initialization events ([AA] §4, [LW] §3, [Z] §3): ``run(config, workdir)``.

Read top-down: ``config`` (every field, defined once) → ``validation`` (checks, [Z] §4 presets;
the model, method and optimizer, built once) → ``build`` (data and jitted functions) → ``loop``
(the stage loop: train, evaluate, checkpoint, event) → ``step`` (the jitted step, evaluation,
event) with ``state``, ``loss``, ``schedules``, ``feed``/``stream`` (data on the devices) →
``outputs`` (metrics, progress, summary) and ``workdir`` (config.json, resumability, atomic
writes). ``faults`` holds what a run survives or reports in one line.

Words, one meaning each: a *run* is one seed of one config, a slot of the run axis; a *point* is
one config of a grid (its seeds are its runs); a *pack* is several points' runs on one run axis
(``pack``; a point trained alone is a pack of one, so the engine reads every run axis the same
way); a *process* is one ``launch.py``; :func:`run` trains a pack's runs, and ``build.Built`` is
what it builds for them.
"""

from reinit_jax.train.config import base_config

__all__ = ["base_config", "run", "validate"]


def __getattr__(name):
  # Lazy: importing the config schema (configs/, launch.py --help) must not import JAX.
  if name == "run":
    from reinit_jax.train.loop import run
    return run
  if name == "validate":
    from reinit_jax.train.validation import validate
    return validate
  raise AttributeError(name)
