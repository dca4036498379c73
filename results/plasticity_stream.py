"""Plasticity on Fashion-MNIST task streams (reinit_jax/continual.py): the study and its report.

    python results/plasticity_stream.py --out results/plasticity          # 2 streams × 6 methods
    python results/plasticity_stream.py --tasks 20 --seeds 2 --out /tmp/p  # a quick look

Every (stream, method) trains its seeds together and is saved as runs/plasticity/<stream>_<method>.npz
(re-running skips the saved ones). The process gives XLA:CPU one device per core, and each (stream,
method) splits its seeds over them (reinit_jax/continual.py). The report (<out>/report.md): average
online accuracy over the stream, over the first and the last 20 tasks (mean ± std over seeds), the
last task's dormant fraction (τ = 0.1, second hidden layer), srank and parameter norm, units reset
per task, the seconds a (stream, method) took, and sign tests of every method against the Adam
baseline on the last 20 tasks' online accuracy (paired by seed); figures: online accuracy and
dormant fraction over tasks, per stream.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One XLA:CPU device per core, before JAX starts: continual.run splits the seeds over them.
from reinit_jax.backends import cpu_host  # noqa: E402  (imports no JAX)
cpu_host.one_cpu_device_per_core()

import numpy as np  # noqa: E402

from reinit_jax import continual  # noqa: E402
from reinit_jax.analysis import stats  # noqa: E402

NAMES = {"none": "Adam (baseline)", "l2init": "L2 Init", "snp": "S&P every step",
         "cbp": "continual backprop", "redo": "ReDo", "fresh": "fresh network per task"}


def run_all(args, x, y):
  """Trains the missing (stream, method) of ``args.streams``, a method's streams side by side (one
  XLA:CPU device each; ``continual.run_together``); returns every saved one of a stream whose
  methods are all saved (a stream trained by an earlier call stays in the report)."""
  os.makedirs(args.runs, exist_ok=True)
  path = lambda stream, method: os.path.join(args.runs, f"{stream}_{method}.npz")
  show = lambda spec, k, acc: print(f"  {spec.stream} {spec.method}: task {k}, online accuracy "
                                    f"{acc:.3f}", flush=True)
  total = 0.0  # seconds of training in this call
  for method in continual.METHODS:
    specs = [continual.Stream(stream=stream, method=method, seeds=tuple(range(args.seeds)),
                              tasks=args.tasks)
             for stream in args.streams if not os.path.exists(path(stream, method))]
    results = continual.run_together(specs, x, y, progress=show)
    total += _method_seconds(results)
    for spec, got in zip(specs, results):
      name = path(spec.stream, method)
      np.savez(name + ".tmp.npz", seconds=got["seconds"], side_by_side=got["side_by_side"],
               **got["records"])
      os.replace(name + ".tmp.npz", name)
      print(f"{spec.stream} {method}: {got['seconds']:.0f} s"
            + (f" (side by side with {got['side_by_side'] - 1} more)" * (got["side_by_side"] > 1)),
            flush=True)
  if total:
    print(f"trained in {total:.0f} s", flush=True)
  out = {}
  for stream in continual.STREAMS:
    paths = {m: path(stream, m) for m in continual.METHODS}
    if all(os.path.exists(p) for p in paths.values()):
      for method, name in paths.items():
        with np.load(name) as f:
          out[stream, method] = {k: f[k] for k in f.files}
  return out


def _ms(values):
  values = 100 * np.asarray(values)
  return f"{values.mean():.2f} ± {values.std():.2f}"


def _method_seconds(runs) -> float:
  """The training seconds of one method's runs (results or saved records): runs trained side by
  side share one wall time, runs trained one after the other add theirs."""
  together = [float(r["seconds"]) for r in runs if int(r.get("side_by_side", 1)) > 1]
  return max(together, default=0.0) + sum(float(r["seconds"]) for r in runs
                                          if int(r.get("side_by_side", 1)) == 1)


def _training_time(results) -> str:
  """One line: the training seconds of the saved runs (:func:`_method_seconds` per method)."""
  total = sum(_method_seconds([r for (_, m), r in results.items() if m == method])
              for method in continual.METHODS)
  return (f"Training time of these runs: {total:.0f} s (the seconds column: a (stream, method)'s "
          "wall time; a method's streams trained side by side, one device each, share theirs).")


def report(results, out_dir, window=20):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  os.makedirs(out_dir, exist_ok=True)
  lines = ["# Plasticity on Fashion-MNIST task streams", "", _training_time(results), ""]
  for stream in sorted({s for s, _ in results}, key=continual.STREAMS.index):
    tasks = results[stream, "none"]["online_accuracy"].shape[0]
    lines += [f"## {stream} ({tasks} tasks, {results[stream, 'none']['online_accuracy'].shape[1]} "
              "seeds)", "", f"| method | online acc. % (all tasks) | first {window} | last "
              f"{window} | dormant τ=0.1 (layer 2, last task) % | srank (last task) | ‖θ‖ (last "
              "task) | units reset per task | seconds |", "| --- |" + " ---: |" * 8]
    base_last = results[stream, "none"]["online_accuracy"][-window:].mean(0)
    tests = []
    for method in continual.METHODS:
      r = results[stream, method]
      acc = r["online_accuracy"]
      lines.append(
        f"| {NAMES[method]} | {_ms(acc.mean(0))} | {_ms(acc[:window].mean(0))} | "
        f"{_ms(acc[-window:].mean(0))} | {_ms(r['dormant_0.1_layer2'][-1])} | "
        f"{r['srank'][-1].mean():.1f} | {r['param_norm'][-1].mean():.1f} | "
        f"{r['units_reset'].mean():.1f} | {float(r['seconds']):.0f} |")
      if method != "none":
        tests.append((method, stats.sign_test(list(acc[-window:].mean(0)), list(base_last))))
    adjusted, reject = stats.holm([t.p_value for _, t in tests])
    lines += ["", f"Sign tests against the baseline, online accuracy of the last {window} tasks "
              "paired by seed (Holm over the 5 tests):", "",
              "| method | wins | losses | p | p (Holm) |", "| --- | ---: | ---: | ---: | ---: |"]
    for (method, t), p, rej in zip(tests, adjusted, reject):
      lines.append(f"| {NAMES[method]} | {t.wins} | {t.losses} | {t.p_value:.2g} | "
                   f"{p:.2g}{' *' if rej else ''} |")
    lines.append("")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for method in continual.METHODS:
      r = results[stream, method]
      for ax, key in zip(axes, ("online_accuracy", "dormant_0.1_layer2")):
        mean = r[key].mean(1)
        ax.plot(np.arange(1, len(mean) + 1), 100 * mean, label=NAMES[method])
    axes[0].set(xlabel="task", ylabel="online accuracy (%)", title=f"{stream}: online accuracy")
    axes[1].set(xlabel="task", ylabel="dormant units (%)",
                title=f"{stream}: dormant fraction (τ = 0.1, layer 2)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    png = os.path.join(out_dir, f"{stream}.png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    lines += [f"![{stream}]({os.path.basename(png)})", ""]
  path = os.path.join(out_dir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  return path


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tasks", type=int, default=200)
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--runs", default="runs/plasticity")
  parser.add_argument("--out", default="results/plasticity")
  parser.add_argument("--streams", default=",".join(continual.STREAMS),
                      help="the streams to train, comma-separated: " + ", ".join(continual.STREAMS)
                      + " (the report has every stream whose methods are all saved in --runs)")
  args = parser.parse_args()
  args.streams = [s for s in args.streams.split(",") if s]
  for s in args.streams:
    if s not in continual.STREAMS:
      parser.error(f"--streams: {s!r} is not one of {', '.join(continual.STREAMS)}")
  x, y = continual.load_fashion_mnist(10000)
  print(report(run_all(args, x, y), args.out))


if __name__ == "__main__":
  main()
