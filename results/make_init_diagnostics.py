"""[HR] initialization diagnostics for every model of the repository (results/init_diagnostics/).

    PYTHONPATH=. python results/make_init_diagnostics.py --out results/init_diagnostics [--full]

For each model: the per-layer mean and variance of the normalized squared activation length under
the model's own init (He normal), failure modes 1 and 2 flagged ([HR]); then the check of a
re-initialization's fresh draws against the model's own init, with PyTorch's default
kaiming-uniform(a=√5) redraw of every kernel (the known bug of public re-init code, 6× less
variance: must be flagged; ``--own-check`` also checks the model's own init against itself, which
must pass — off by default on CPU, it doubles the compilations). Plus the deep narrow MLP (20 layers
of width 16) with variance 1/fan-in (FM1) and with He (FM2 only).

CPU sizes: without ``--full`` the conv nets are their ``_tiny`` variants (same depth and block
structure, fewer channels; [HR]'s statistics are per-depth, so depth is what matters) at 32×32
inputs, 16 inputs × 4 draws.
"""

from __future__ import annotations

import argparse
import os
import time

import jax

from reinit_jax import models
from reinit_jax.analysis import init_diagnostics
from reinit_jax.analysis import plots

MODELS = ("mlp", "scnn", "resnet18", "preact_resnet18", "vgg16", "mobilenet_v1", "mobilenet_v2",
          "resnet50")


def _create(name, full):
  """The model at CPU size (tiny variants of the conv nets unless ``full``)."""
  if name == "mlp":
    return name, models.create("mlp", 8)
  if name == "scnn":
    real = "scnn" if full else "scnn_tiny"
    return real, models.create(real, 10, input_shape=(28, 28, 1))
  real = name if full else name + "_tiny"
  return real, models.create(real, 10, input_shape=(32, 32, 3))


def _write(out, summary, details):
  with open(os.path.join(out, "summary.md"), "w") as f:
    f.write("\n".join(summary) + "\n")
  with open(os.path.join(out, "details.md"), "w") as f:
    f.write("\n".join(details) + "\n")


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out", default="results/init_diagnostics")
  ap.add_argument("--full", action="store_true", help="full-width conv nets (slow on CPU)")
  ap.add_argument("--inputs", type=int, default=16)
  ap.add_argument("--draws", type=int, default=4)
  ap.add_argument("--own-check", action="store_true")
  ap.add_argument("--models", default=",".join(MODELS))
  a = ap.parse_args()
  os.makedirs(a.out, exist_ok=True)
  key = jax.random.key(0)
  summary = ["| model (as run) | layers | FM1 | log change of E[M] | FM2 | own-init re-draw flagged | "
             "kaiming-uniform(a=√5) re-draw flagged | min layer ratio (√5 / own) |",
             "| --- | ---: | --- | ---: | --- | --- | --- | ---: |"]
  details, diags = [], {}
  deep_rows, deep_details = [], []
  # The deep narrow MLP first ([HR] FM1 under 1/fan-in, FM2 under He): cheap, and always recorded.
  deep = models.create("mlp", 8, widths=(16,) * 20)
  lecun = lambda k: init_diagnostics.redraw_kernels(k, deep.init(k)["params"], "normal", scale=1.0)
  deep_cases = {"mlp 20×16, He (2/fan-in)": init_diagnostics.diagnose(deep, key, num_inputs=32, num_draws=8),
                "mlp 20×16, 1/fan-in": init_diagnostics.diagnose(deep, key, variables_fn=lecun, num_inputs=32,
                                                   num_draws=8)}
  for label, d in deep_cases.items():
    deep_rows.append(f"| {label} | {len(d.names)} | {d.fm1} | {d.fm1_log_change:.2f} | {d.fm2} | — | "
                     f"— | — |")
    deep_details += [f"## {label}", "", d.table(), ""]
  plots.plot_init_diagnostics(deep_cases, os.path.join(a.out, "init_deep_mlp.png"))
  for name in a.models.split(","):
    t0 = time.time()
    real, model = _create(name, a.full)
    d = init_diagnostics.diagnose(model, key, num_inputs=a.inputs, num_draws=a.draws)
    own = (init_diagnostics.compare_init(model, model.init, key, num_draws=a.draws, num_inputs=a.inputs).flagged
           if a.own_check else "not run")
    torch = lambda k, m=model: init_diagnostics.redraw_kernels(k, m.init(k)["params"], "kaiming_uniform_sqrt5")
    bad = init_diagnostics.compare_init(model, torch, key, num_draws=a.draws, num_inputs=a.inputs)
    fm2 = "n/a" if d.fm2 is None else str(d.fm2)
    summary.append(f"| {real} | {len(d.names)} | {d.fm1} | {d.fm1_log_change:.2f} | {fm2} | "
                   f"{own} | {bad.flagged} | {min(bad.layer_ratio.values()):.3g} |")
    details += [f"## {real}", "", d.table(), "", "Fresh draws from kaiming-uniform(a=√5) vs own init:",
                "", bad.table(), ""]
    diags[real] = d
    # After every model, so that a partial run (CPU time) keeps what it measured.
    _write(a.out, summary + deep_rows, details + deep_details)
    plots.plot_init_diagnostics(diags, os.path.join(a.out, "init_models.png"))
    print(f"{real}: FM1={d.fm1} FM2={d.fm2} sqrt5 flagged={bad.flagged} own flagged={own} "
          f"({time.time() - t0:.0f}s)", flush=True)
  print("\n".join(summary + deep_rows))


if __name__ == "__main__":
  main()
