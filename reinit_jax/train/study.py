"""Several methods of one config, one sub-workdir each, and a table of their test accuracies.

``config.methods`` (a tuple of registry names) is handled here rather than in :func:`run`, so that
every run stays one method with its own checkpoints and summary (and resumes on its own).
"""

from __future__ import annotations

import os

from reinit_jax.train.loop import run
from reinit_jax.train.validation import validate


def run_study(config, workdir: str) -> dict[str, dict]:
  """Runs ``config`` once per entry of ``config.methods`` (or once, for ``config.method``).

  Method hyperparameters come from ``config.method_kwargs`` only for the method named by
  ``config.method``. Returns {method: summary}; every config is validated before the first run.
  """
  names = tuple(config.methods) or (config.method,)
  configs = {}
  for m in names:
    c = config.copy_and_resolve_references()
    with c.unlocked():
      if m != config.method:
        c.method_kwargs = {}
      c.method = m
      c.methods = ()
    validate(c)
    configs[m] = c
  out = {}
  for m, c in configs.items():
    sub = os.path.join(workdir, m) if len(names) > 1 else workdir
    out[m] = run(c, sub)
  return out


def table(summaries: dict[str, dict]) -> str:
  """A plain-text table: method, test accuracy mean ± std (at best validation), seeds, time, dir."""
  rows = [("method", "test acc (mean ± std)", "seeds", "steps", "time (s)", "workdir")]
  for m, s in summaries.items():
    ta = s["test_accuracy"]
    rows.append((m, f"{100 * ta['mean']:.2f} ± {100 * ta['std']:.2f}", str(len(ta["per_seed"])),
                 str(s["steps"]), f"{s['wall_time_s']:.1f}", s["workdir"]))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows)
