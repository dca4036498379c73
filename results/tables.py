"""A pivot table of test accuracy (%, mean ± std over seeds) from the summary.json files of a sweep.

    python results/tables.py runs/synthetic_l2 --row synthetic_alpha --col weight_decay
    python results/tables.py runs/online --row augmentation --col method --stages
    python results/tables.py runs/online --metrics   # also unfinished runs
    python results/tables.py runs/synthetic_l2_100 --row synthetic_alpha,method --col weight_decay

Rows and columns are config.json fields, or several joined by commas (``method`` gets ``+distill`` when distillation is on).
A cell of one seed shows its value alone (n=1): a std of 0 would read as a measured spread.
``--stages`` adds a table per column of the test accuracy at the end of every stage (online
learning: accuracy as the chunks arrive), mean over seeds.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np

from reinit_jax.train import config as config_schema


def load(root):
  """[(config, summary)] for every workdir under ``root`` holding both files."""
  out = []
  for d, dirs, files in os.walk(root):
    dirs[:] = sorted(x for x in dirs if x not in ("checkpoints", "tensorboard"))
    if "summary.json" in files and "config.json" in files:
      with open(os.path.join(d, "config.json")) as f:
        c = config_schema.flat(json.load(f))
      with open(os.path.join(d, "summary.json")) as f:
        s = json.load(f)
      out.append((c, s))
  return out


def field(c, name):
  if "," in name:  # a composite row or column, e.g. synthetic_alpha,method
    return ", ".join(str(field(c, n)) for n in name.split(","))
  if name == "method":
    return c["method"] + ("+distill" if c.get("distill") else "")
  v = c.get(name)
  return json.dumps(v) if isinstance(v, (list, dict)) else v


def pivot(runs, row, col) -> str:
  cells = {}
  for c, s in runs:
    cells[(field(c, row), field(c, col))] = s["test_accuracy"]
  rows = sorted({k[0] for k in cells}, key=str)
  cols = sorted({k[1] for k in cells}, key=str)
  lines = [f"| {row} \\ {col} | " + " | ".join(str(x) for x in cols) + " |",
           "| --- |" + " ---: |" * len(cols)]
  for r in rows:
    vals = [cells.get((r, k)) for k in cols]
    best = max((v["mean"] for v in vals if v), default=None)
    txt = []
    for v in vals:
      if not v:
        txt.append("—")
        continue
      n = len(v["per_seed"])  # one seed: the value alone, a std of 0 would read as a spread
      t = (f"{100 * v['mean']:.2f} ± {100 * v['std']:.2f}" if n > 1 else f"{100 * v['mean']:.2f}")
      t += f" (n={n})"
      txt.append(f"**{t}**" if v["mean"] == best else t)
    lines.append(f"| {r} | " + " | ".join(txt) + " |")
  return "\n".join(lines)


def per_stage(runs, row, col) -> str:
  """Test accuracy after every stage (mean over seeds), one line per (row, col)."""
  acc = collections.OrderedDict()
  for c, s in sorted(runs, key=lambda cs: (str(field(cs[0], row)), str(field(cs[0], col)))):
    vals = []
    for st in s.get("stages", []):
      t = [m["accuracy"] for m in st["metrics"] if m.get("split") == "test"]
      vals.append(100 * float(np.mean(t)) if t else float("nan"))
    acc[(field(c, row), field(c, col))] = vals
  n = max((len(v) for v in acc.values()), default=0)
  lines = [f"| {row} | {col} | " + " | ".join(f"stage {i + 1}" for i in range(n)) + " |",
           "| --- | --- |" + " ---: |" * n]
  for (r, k), v in acc.items():
    lines.append(f"| {r} | {k} | " + " | ".join(f"{x:.2f}" for x in v) + " |")
  return "\n".join(lines)


def metrics_per_stage(root) -> str:
  """Test accuracy at the end of every stage read from metrics.jsonl (finished or not), mean over seeds.

  For runs that did not finish (no summary.json yet): what each reached so far.
  """
  lines = ["| workdir | " + " | ".join(f"stage {i}" for i in range(1, 6)) + " |",
           "| --- |" + " ---: |" * 5]
  for d in sorted(os.listdir(root)):
    path = os.path.join(root, d, "metrics.jsonl")
    if not os.path.exists(path):
      continue
    last = collections.defaultdict(dict)  # stage -> seed -> accuracy of its last test row
    with open(path) as f:
      for line in f:
        try:
          r = json.loads(line)
        except json.JSONDecodeError:
          continue
        if r.get("split") == "test":
          last[r["stage"]][r["seed"]] = r["accuracy"]
    vals = [f"{100 * np.mean(list(last[t].values())):.2f}" if t in last else "—" for t in range(1, 6)]
    done = " (finished)" if os.path.exists(os.path.join(root, d, "summary.json")) else ""
    lines.append(f"| {d}{done} | " + " | ".join(vals) + " |")
  return "\n".join(lines)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("roots", nargs="+")
  ap.add_argument("--row", default="synthetic_alpha")
  ap.add_argument("--col", default="method")
  ap.add_argument("--stages", action="store_true")
  ap.add_argument("--metrics", action="store_true", help="per-stage test accuracy from metrics.jsonl")
  a = ap.parse_args()
  if a.metrics:
    for root in a.roots:
      print(metrics_per_stage(root))
    return
  runs = [r for root in a.roots for r in load(root)]
  if not runs:
    sys.exit(f"error: no workdir with config.json and summary.json under {', '.join(a.roots)}")
  print(pivot(runs, a.row, a.col))
  if a.stages:
    print()
    print(per_stage(runs, a.row, a.col))


if __name__ == "__main__":
  main()
