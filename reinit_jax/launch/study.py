"""Several methods of one config, one sub-workdir each, and a table of their test accuracies.

``config.reinit.methods`` (a tuple of registry names) is handled here rather than in the engine, so
that every run stays one method with its own checkpoints and summary (and resumes on its own).
"""

from __future__ import annotations

import os



def run_study(config, workdir: str) -> dict[str, dict]:
  """Runs ``config`` once per entry of ``config.reinit.methods`` (or once, for its ``method``).

  Hyperparameters (``reinit.hparams``) go only to the method named by ``reinit.method``. Returns
  {method: summary}; every config is validated before the first run.
  """
  from reinit_jax.train import run, validate  # the engine (JAX) only when something runs
  names = tuple(config.reinit.methods) or (config.reinit.method,)
  configs = {}
  for m in names:
    c = config.copy_and_resolve_references()
    with c.unlocked():
      if m != config.reinit.method:
        c.reinit.hparams = {}
      c.reinit.method = m
      c.reinit.methods = ()
    validate(c)
    configs[m] = c
  out = {}
  for m, c in configs.items():
    sub = os.path.join(workdir, m) if len(names) > 1 else workdir
    out[m] = run(c, sub)
  return out


def table(summaries: dict[str, dict]) -> str:
  """A plain-text table: method, test accuracy mean ± std (at best validation; no ± for one
  seed), seeds, steps, time, workdir."""
  rows = [("method", "test acc (mean ± std)", "seeds", "steps", "time (s)", "workdir")]
  for m, s in summaries.items():
    ta = s["test_accuracy"]
    n = len(ta["per_seed"])  # one seed has no spread: no "± 0.00" that reads as a measured one
    acc = f"{100 * ta['mean']:.2f}" + (f" ± {100 * ta['std']:.2f}" if n > 1 else "")
    rows.append((m, acc, str(n),
                 str(s["steps"]), f"{s['wall_time_s']:.1f}", s["workdir"]))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows)
