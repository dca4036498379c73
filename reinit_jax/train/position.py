"""Where a run is: the position a checkpoint records and a resumed run continues from.

Checkpoints are taken only at call boundaries, so (stage, epoch, step within the epoch, global step)
pins down exactly which calls remain; the record of evaluations, stages and the best validation
point travels with it so that a resumed run writes the same summary as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Best:
  """Per seed: the best validation accuracy so far, the test accuracy there, and its step."""

  validation: list
  test: list
  step: list


@dataclasses.dataclass
class Position:
  """A run's position and record (JSON in every checkpoint's ``meta`` item).

  Attributes:
    stage: current stage t (1-based). epoch: epochs done in stage t. epoch_step: steps done in the
      current epoch (streamed calls may end inside one). step: global gradient steps done.
    events: re-initialization events applied. records: every metrics row written so far.
    stages: per finished stage, its final metrics. best: model selection record. last_test: the
      latest test accuracy per seed. wall_time_s: training wall time so far (all sessions).
    times: seconds by phase (startup, compile, train, evaluate, checkpoint, event), all sessions.
    done: True once the last stage finished.
  """

  stage: int = 1
  epoch: int = 0
  epoch_step: int = 0
  step: int = 0
  events: int = 0
  records: list = dataclasses.field(default_factory=list)
  stages: list = dataclasses.field(default_factory=list)
  best: Best | None = None
  last_test: list = dataclasses.field(default_factory=list)
  wall_time_s: float = 0.0
  times: dict = dataclasses.field(default_factory=dict)
  done: bool = False

  @classmethod
  def fresh(cls, num_seeds: int) -> "Position":
    """The position before the first step of a run with ``num_seeds`` seeds."""
    S = num_seeds
    return cls(best=Best([-1.0] * S, [None] * S, [None] * S), last_test=[None] * S)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict) -> "Position":
    """Inverse of :meth:`to_json`; fields a checkpoint lacks take their defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in d.items() if k in names}
    kw["best"] = Best(**d["best"])
    return cls(**kw)
