"""Re-initialization event time ÷ one train step's time, for every method, on scnn and ResNet-18,
and for the unit-level methods (redo, continual_backprop) on the plasticity streams' MLP.

The event is the engine's own (``train.step.make_event``: draw θ_init from the model's init keyed by
(seed, stage), apply R, reset optimizer/batch statistics, and for ``layerwise`` measure the new
normalization on ``norm_batch_size`` training inputs), jitted and vmapped over one seed as in a run.
The step is the engine's scanned train call (K steps per call, time per step), timed side by side.
A step-level event (``train.step.make_step_event``, ``reinit.every_steps``) is timed as the same
call with an event after every step, less the plain call, per event (``--step-methods``). The
unit-level methods need a chain of dense layers: they are timed on the MLP 784-100-100-10 with Adam
at batch 16, initialized He uniform (the streams of results/README.md (g)) as step-level events with
``optimizer_policy='mask'``, as the papers run them (ReDo in two defined states: every unit reset
at every event, the worst case, and none; :data:`STEP_VARIANTS`); ``--model mlp --methods ...``
also times stage events there.
Goal: every ratio < 1 (an event costs less than one gradient step); on a GPU (ResNet-18 width 1,
batch 512, bf16) every ratio <= 0.3 (issue 14).

``--select-impls bracket,sort`` times the methods whose event ranks entries (``magnitude``,
``random_subset``) once per k-smallest selection implementation (``reinit_jax/selection.py``), side
by side, named ``<method>@<impl>``; every other method is timed once. Each event is traced under its
implementation (``make_event(select_impl=)``) and compiled on a thread per core.

Usage: ``python bench/bench_events.py --quick`` (< 2 min; ``--smoke``: scnn_tiny b4, magnitude and
full, 1 round); the last line is JSON.
  python bench/bench_events.py --quick --model mlp --mlp-init he_normal  # the MLP drawn normal
  python bench/bench_events.py --quick --model scnn --methods magnitude,random_subset,full \
      --select-impls bracket,sort                      # the CPU: both implementations at batch 16
  python bench/bench_events.py --model resnet18 --width 1 --batch 512 --dtype bfloat16 \
      --select-impls sort,sort_batched,bracket         # a GPU (bench/gpu_all.sh)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from reinit_jax import masks, methods, models  # noqa: E402
from reinit_jax.train import schedules, step as train_step  # noqa: E402
from reinit_jax.train.state import base_keys, init_state  # noqa: E402

# The methods whose event runs the k-smallest selection (fixed_subset draws its mask once, before
# training, so its event does not depend on the implementation).
SELECTING = ("magnitude", "random_subset")


def identity(k, x, train):
  return x


# The unit-level methods (redo, continual_backprop) need a chain of dense layers: the plasticity
# streams' MLP 784-100-100-10 with Adam, their events zeroing the reset weights' moments ('mask').
STREAM_MLP = "mlp_stream"
# ReDo's step-level events on the MLP, each in a defined state: a τ above every score resets every
# unit at every event (the worst case: a fresh draw and every edit), τ = 0 only dead units (none on
# these inputs: the event measures, decides and skips the draw).
STEP_VARIANTS = {"redo_every_unit": ("redo", {"tau": 1e9}), "redo_none": ("redo", {"tau": 0.0})}


def _setup(name, width, dtype, mlp_init="he_uniform"):
  """(model, optimizer, optimizer_policy) of a benchmarked configuration."""
  if name == STREAM_MLP:
    # He uniform, as the streams draw their hidden layers (continual.HIDDEN_INIT); float32 only.
    model = models.create("mlp", 10, input_shape=(784,), widths=(100, 100),
                          initializer=mlp_init)
    return model, schedules.make_optimizer("adam", 0.0, 0.9), "mask"
  return models.create(name, 10, width=width, dtype=dtype), schedules.make_optimizer(
      "sgd", 0.0, 0.9), "reset"


def bench_model(name, width, batch, k, norm_batch, rounds, method_names, dtype="float32",
                impls=("auto",), step_methods=(), mlp_init="he_uniform"):
  model, tx, policy = _setup(name, width, dtype, mlp_init)
  rng = np.random.default_rng(0)
  n = batch * k
  x = jnp.asarray(rng.standard_normal((n, *model.input_shape), np.float32))
  y = jnp.asarray(rng.integers(0, 10, n, dtype=np.int32))
  idx = jnp.asarray(np.arange(n, dtype=np.int32).reshape(1, k, batch))
  n_now = jnp.asarray(n, jnp.int32)
  fns = {}

  def state_for(method):
    # Eager (op by op): the primitives compile once and are shared by every method, where a
    # jitted init would be one more whole-graph compilation per method.
    init = jax.vmap(lambda kk, s: init_state(model, method, tx, kk, s, False))
    return init(base_keys([0]), jnp.zeros((1,), jnp.int32))

  step = train_step.make_step(model, tx, lambda *a: jnp.float32(0.01), identity, distill="off", beta=0.0)
  call = train_step.make_train_call(step, cached=False)
  sbox = [state_for(methods.get("standard"))]

  def train_k():
    sbox[0], m = call(sbox[0], x, y, None, idx)
    jax.block_until_ready(m)

  fns["step"] = train_k
  warm = [train_k]  # first calls: compilations, run on a thread per core below
  for label in step_methods:  # the same call with a step-level event after every step
    mname, hparams = STEP_VARIANTS.get(label, (label, {}))
    method = methods.get(mname, **hparams)
    after = train_step.make_step_event(model, method, tx, every=1,
                                       trigger="every", threshold=1.0, optimizer_policy=policy,
                                       batch_stats_policy="reset")
    every_step = train_step.make_train_call(train_step.make_step(
        model, tx, lambda *a: jnp.float32(0.01), identity, distill="off", beta=0.0,
        after_step=after), cached=False)
    init = jax.vmap(lambda kk, s, m=method: init_state(model, m, tx, kk, s, False,
                                                       step_events=True))
    ebox = [init(base_keys([0]), jnp.zeros((1,), jnp.int32))]

    def train_k_with_events(call=every_step, ebox=ebox):
      ebox[0], m = call(ebox[0], x, y, None, idx)
      jax.block_until_ready(m)

    fns[f"step_event:{label}"] = train_k_with_events
    warm.append(train_k_with_events)
  programs = {}
  for mname in method_names:
    method = methods.get(mname)
    for impl in (impls if mname in SELECTING else impls[:1]):
      label = mname if len(impls) == 1 or mname not in SELECTING else f"{mname}@{impl}"
      # A new jitted event per implementation: jit reuses a trace for the same argument shapes,
      # and the implementation is read at trace time.
      ev = train_step.make_event(model, method, tx, identity, norm_batch_size=norm_batch,
                                 distill=False, optimizer_policy=policy,
                                 batch_stats_policy="reset", select_impl=impl)
      box = [state_for(method), None]
      lowered = ev.lower(box[0], x, n_now)
      if mname in SELECTING:  # each implementation must be its own program
        text = lowered.as_text()
        if text in programs.values():
          raise SystemExit(f"{label}: the same program as another implementation's")
        programs[label] = text

      def run_event(box=box):
        # Stage back to 1 after each event, so every timed event is the first one (layerwise:
        # block 1); a new array each time, since the event donates the state it receives.
        box[0] = box[1](box[0], x, n_now).replace(stage=jnp.ones((1,), jnp.int32))
        jax.block_until_ready(box[0].variables["params"])

      def compile_event(box=box, lowered=lowered):
        box[1] = lowered.compile()

      fns[label] = run_event
      warm.append(compile_event)
  # Every method is its own compilation (≈ 10 s each on this CPU); XLA compiles without the GIL,
  # so compiling on a thread per core halves the quick mode's wall time.
  t0 = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    list(pool.map(lambda f: f(), warm))
  t1 = time.perf_counter()
  # The MLP's calls take a millisecond: many rounds of several calls each, for a stable median.
  med = (common.side_by_side(fns, 30 * rounds, inner=5) if name == STREAM_MLP
         else common.side_by_side(fns, rounds))
  print(f"{name}: warm-up (compilations) {t1 - t0:.0f} s, timing {time.perf_counter() - t1:.0f} s",
        flush=True)
  step_s = med.pop("step") / k
  # A step-level event's cost: the K-step call with an event after every step, less the plain call,
  # per event, in steps.
  step_events = {m.split(":", 1)[1]: med.pop(m) for m in list(med) if m.startswith("step_event:")}
  step_ratio = {m: round((v / k - step_s) / step_s, 3) for m, v in step_events.items()}
  for m, r in step_ratio.items():
    print(f"{name:9s} step-level {m:13s} event {1e3 * (step_events[m] / k - step_s):8.2f} ms  "
          f"step {1e3 * step_s:8.2f} ms  ratio {r:6.3f}", flush=True)
  out = {"model": name, "width": width, "batch": batch, "norm_batch": norm_batch, "dtype": dtype,
         "initializer": model.options.get("initializer"),
         "select_impls": {i: masks.resolve_select_impl(i) for i in impls},
         "step_ms": round(1e3 * step_s, 3),
         "event_ms": {m: round(1e3 * v, 3) for m, v in med.items()},
         "ratio": {m: round(v / step_s, 3) for m, v in med.items()}}
  for m in med:
    print(f"{name:9s} {m:22s} event {1e3 * med[m]:8.2f} ms  step {1e3 * step_s:8.2f} ms  "
          f"ratio {med[m] / step_s:6.3f}", flush=True)
  out["step_event_ratio"] = step_ratio
  out["max_ratio"] = max([*out["ratio"].values(), *step_ratio.values()])
  # Per implementation: the methods timed once count for every implementation.
  per_impl = {i: max([v for m, v in out["ratio"].items() if "@" not in m or m.endswith("@" + i)]
                     + list(step_ratio.values())) for i in impls}
  out["max_ratio_per_impl"] = per_impl
  cpu = jax.default_backend() == "cpu"
  out["goal"] = "every ratio < 1" if cpu else "every ratio <= 0.3"
  out["goal_met"] = {i: (r < 1.0 if cpu else r <= 0.3) for i, r in per_impl.items()}
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  common.add_size_flags(p, "b16: scnn, every method but standard; ResNet-18 w0.125, layerwise")
  p.add_argument("--rounds", type=int, default=None)
  p.add_argument("--model", choices=("scnn", "resnet18", "mlp", "both"), default="both",
                 help="both: scnn, ResNet-18 and the streams' MLP (the unit-level methods)")
  p.add_argument("--batch", type=int, default=None, help="train batch (default 16 quick, else "
                 "scnn 128 / resnet18 64)")
  p.add_argument("--methods", default=None, help="comma list (default: every method but standard; "
                 "--quick on ResNet-18: layerwise)")
  p.add_argument("--width", type=float, default=None, help="ResNet-18 width (default 0.125 quick, "
                 "else 0.5; scnn: 1)")
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--norm-batch", type=int, default=None, help="layerwise measuring batch (default: "
                 "the train batch in --quick, else 256)")
  p.add_argument("--step-methods", default="full,shrink_perturb", help="comma list: methods "
                 "timed as step-level events after every step ('': none)")
  p.add_argument("--select-impls", default="auto", help="comma list of k-smallest selection "
                 f"implementations {masks.SELECT_IMPLS} for {', '.join(SELECTING)}")
  p.add_argument("--mlp-init", default="he_uniform", choices=models.INITIALIZERS,
                 help="the streams' MLP's initializer (he_normal: the cost of a normal draw)")
  a = p.parse_args()
  impls = tuple(a.select_impls.split(","))
  for impl in impls:
    masks.resolve_select_impl(impl)  # a one-line error for a bad name
  rounds = a.rounds or (1 if a.smoke else 3 if a.quick else 7)
  # Every method but standard on the CNNs; the unit-level ones (redo, continual_backprop) need a
  # chain of dense layers: they run on the streams' MLP, as stage and as step-level events.
  unit_level = [m for m in methods.names() if methods.get(m).uses_activations]
  names = [m for m in methods.names() if m != "standard" and m not in unit_level]
  figs = {"env": common.env_line(), "quick": a.quick, "smoke": a.smoke}
  if a.smoke:  # scnn_tiny at batch 4: a selecting method and one that is not (cheap to compile)
    cfgs = (("scnn_tiny", 1.0, 4), (STREAM_MLP, 1.0, 4))
    names = ["magnitude", "full"]
  elif a.quick:
    cfgs = (("scnn", 1.0, 16), ("resnet18", a.width or 0.125, 16), (STREAM_MLP, 1.0, 16))
  else:
    cfgs = (("scnn", 1.0, 128), ("resnet18", a.width or 0.5, 64), (STREAM_MLP, 1.0, 16))
  cfgs = tuple((n, w, a.batch or b) for n, w, b in cfgs
               if a.smoke or a.model in ("both", n) or (n == STREAM_MLP and a.model == "mlp"))
  for name, width, batch in cfgs:
    # --quick: every method on scnn; on ResNet-18 the one with the most work (a full fresh draw plus
    # the layer-wise measuring pass): each method is one more compilation (≈ 25 s there).
    todo = names if name != "resnet18" or not a.quick else ["layerwise"]
    # On the MLP the unit-level methods are timed as they run, step-level events; its stage
    # events only on request (--model mlp --methods ...: a fresh draw alone costs about a step).
    todo = [] if name == STREAM_MLP else todo
    todo = a.methods.split(",") if a.methods and (name != STREAM_MLP or a.model == "mlp") else todo
    norm_batch = a.norm_batch or (batch if a.quick or a.smoke else 256)
    step_methods = [m for m in a.step_methods.split(",") if m] if name != "resnet18" else []
    step_methods = ([m for m in unit_level if m != "redo"] + list(STEP_VARIANTS)
                    if name == STREAM_MLP else step_methods)
    figs[name] = bench_model(name, width, batch, 4, norm_batch, rounds, todo, a.dtype, impls,
                             step_methods[:1] if a.smoke else step_methods, a.mlp_init)
  figs["goal_met"] = {i: all(figs[n]["goal_met"][i] for n, _, _ in cfgs) for i in impls}
  common.emit(figs)


if __name__ == "__main__":
  main()
