"""One SGD-momentum train step (forward, backward, update): reinit_jax's jitted engine vs PyTorch.

Same model (scnn, ResNet-18 at a width multiplier), batch and input size (32×32×3, 10 classes), SGD
with momentum 0.9, on the same device. JAX contenders use the engine's own step
(``train.step.make_step`` inside ``make_train_call``: vmapped over one seed, scanned, state donated,
data gathered on device):

* ``jax_<impl>_1``: one step per jitted call (the per-call overhead is paid every step);
* ``jax_<impl>_<K>``: K steps scanned in one call (the engine's normal mode), time per step;
  ``<impl>`` is the conv implementation ('xla' | 'im2col', reinit_jax/models/layers.py);
* ``torch``: PyTorch eager, ``zero_grad / forward / backward / optimizer.step``. On the CPU: float32
  NCHW, one host sync per step. On a CUDA device (the GPU mode, ``--torch-device cuda``, the default
  where CUDA is there) what a PyTorch user runs: ``channels_last``, ``torch.autocast(bfloat16)``
  when ``--dtype bfloat16``, K steps per call and one ``cuda.synchronize`` (as the JAX call);
* ``torch_compile`` (``--torch-compile``): the same with the model under ``torch.compile``.

FLOPs: ``model_flops_per_step`` is the analytic count (conv and dense MACs of the forward pass × 2
× 3, ``common.model_train_flops``), from which ``achieved_tflops`` and ``fraction_of_peak`` (for
each ``--peak-tflops`` figure) come; ``flops_per_step`` is XLA's cost analysis, kept for comparison.

Usage:
  python bench/bench_step_vs_torch.py --quick            # scnn b16, resnet18 w0.125 b16
  python bench/bench_step_vs_torch.py                     # scnn b128, resnet18 w0.5 b64
  python bench/bench_step_vs_torch.py --smoke             # scnn b2, resnet18 w0.125 b2, K = 2
  python bench/bench_step_vs_torch.py --model resnet18 --width 1 --dtype bfloat16 --batch 512 \
      --impls xla --steps-per-call 8 --torch-compile --peak-tflops 989.5,790   # GPU mode (H200)
Without PyTorch installed, ``--smoke`` times the JAX contenders alone and says so in one line (the
other modes stop: ``pip install -r bench/requirements.txt``, or ``--no-torch``).
The last line is JSON: per model, images/s of each contender, and the ratio JAX/torch (≥ 1: JAX
is as fast), plus the FLOP counts of one step and the achieved FLOP/s.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from reinit_jax import methods, models  # noqa: E402
from reinit_jax.train import schedules, step as train_step  # noqa: E402
from reinit_jax.train.state import base_keys, init_state  # noqa: E402

LR = 0.01


def jax_contender(name, width, batch, dtype, impl, steps_per_call):
  """(fn, flops_per_step): fn runs one engine call of ``steps_per_call`` steps and blocks."""
  model = models.create(name, 10, width=width, dtype=dtype, conv_impl=impl)
  tx = schedules.make_optimizer("sgd", 0.0, 0.9)
  step = train_step.make_step(model, tx, lambda *a: jnp.float32(LR), lambda k, x, t: x, distill="off",
                     beta=0.0)
  call = train_step.make_train_call(step, cached=False)
  init = jax.jit(jax.vmap(lambda k, s: init_state(model, methods.get("standard"), tx, k, s, False)))
  state = init(base_keys([0]), jnp.zeros((1,), jnp.int32))
  n = batch * steps_per_call
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((n, *model.input_shape), np.float32))
  y = jnp.asarray(rng.integers(0, 10, n, dtype=np.int32))
  idx = jnp.asarray(np.arange(n, dtype=np.int32).reshape(1, steps_per_call, batch))
  flops = common.call_flops(call, state, x, y, None, idx) or None
  box = [state]

  def fn():
    box[0], m = call(box[0], x, y, None, idx)
    jax.block_until_ready(m)

  return fn, flops, model


def torch_device(arg: str) -> str:
  """'cpu' | 'cuda' for the PyTorch contender ('auto': CUDA where it is available)."""
  import torch
  if arg == "auto":
    return "cuda" if torch.cuda.is_available() else "cpu"
  return arg


def torch_contender(name, width, batch, device="cpu", dtype="float32", steps=1, compiled=False):
  """fn running ``steps`` SGD-momentum steps on a fixed batch, then waiting for them.

  CPU: float32 NCHW (bf16 autocast if ``dtype`` is bfloat16), ``loss.item()`` after each step. CUDA:
  channels_last, autocast to ``dtype``, one ``torch.cuda.synchronize()`` per call.
  """
  import torch
  import torch_models
  torch.manual_seed(0)
  net = torch_models.make(name, width).to(device)
  net.train()
  cuda = device == "cuda"
  if cuda:
    torch.backends.cudnn.benchmark = True
    net = net.to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
  x = torch.randn(batch, 3, 32, 32, device=device)
  if cuda:
    x = x.contiguous(memory_format=torch.channels_last)
  y = torch.randint(0, 10, (batch,), device=device)
  lossf = torch.nn.CrossEntropyLoss()
  nparams = sum(p.numel() for p in net.parameters())
  model = torch.compile(net) if compiled else net
  bf16 = dtype == "bfloat16"

  def one():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
      loss = lossf(model(x), y)
    loss.backward()
    opt.step()
    return loss

  def fn():
    for _ in range(steps):
      loss = one()
      if not cuda:
        loss.item()  # one host sync per step, as the JAX contender's block
    if cuda:
      torch.cuda.synchronize()

  return fn, nparams


def bench_model(name, width, batch, dtype, specs, rounds, torch_opts, peaks):
  """Times every contender (``specs``: (conv impl, steps per call) pairs) side by side.

  ``torch_opts``: None (no PyTorch), or (device, steps per call, with torch.compile too).
  """
  fns, out = {}, {"model": name, "width": width, "batch": batch, "dtype": dtype}
  flops = None
  for impl, spc in specs:
    fn, fl, model = jax_contender(name, width, batch, dtype, impl, spc)
    fns[f"jax_{impl}_{spc}"] = (fn, spc)
    flops = flops or fl
  shapes = jax.eval_shape(model.init, jax.random.key(0))["params"]
  jax_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes))
  out["params"] = jax_params
  if torch_opts:
    device, tspc, with_compile = torch_opts
    out["torch_device"] = device
    variants = [("torch", False)] + ([("torch_compile", True)] if with_compile else [])
    for tname, compiled in variants:
      try:  # torch.compile compiles at the first call: a host without a working inductor skips it
        t0 = time.perf_counter()
        tfn, tparams = torch_contender(name, width, batch, device, dtype, tspc, compiled)
        if compiled:
          tfn()
          out["torch_compile_s"] = round(time.perf_counter() - t0, 1)
      except Exception as e:  # noqa: BLE001 (torch.compile failed: report it, time the rest)
        if not compiled:
          raise
        out["torch_compile_error"] = f"{type(e).__name__}: {e}"[:300]
        print(f"{name}: torch.compile failed, skipped: {out['torch_compile_error']}", flush=True)
        continue
      if tparams != jax_params:
        raise SystemExit(f"{name}: torch twin has {tparams} parameters, JAX model {jax_params}")
      fns[tname] = (tfn, tspc)
  med = common.side_by_side({n: f for n, (f, _) in fns.items()}, rounds)
  ips = {n: batch * spc / med[n] for n, (_, spc) in fns.items()}
  out["images_per_s"] = {n: round(v, 1) for n, v in ips.items()}
  out["step_ms"] = {n: round(1e3 * batch / v, 3) for n, v in ips.items()}
  out["flops_per_step"] = flops  # XLA's cost analysis
  model_flops = common.model_train_flops(model, batch)
  out["model_flops_per_step"] = model_flops
  best = max((n for n in ips if n.startswith("jax")), key=ips.get)
  out["best_jax"] = best
  if flops:
    out["achieved_gflops"] = round(flops * ips[best] / batch / 1e9, 2)
  out["achieved_tflops"] = {n: round(model_flops * v / batch / 1e12, 3) for n, v in ips.items()}
  if peaks:
    out["fraction_of_peak"] = {f"{p:g}": {n: round(model_flops * v / batch / 1e12 / p, 4)
                                          for n, v in ips.items()} for p in peaks}
  if torch_opts:
    out["ratio_vs_torch"] = {n: round(v / ips["torch"], 3) for n, v in ips.items() if n != "torch"}
  for n in sorted(fns):
    print(f"{name:9s} {n:16s} {out['step_ms'][n]:9.2f} ms/step {ips[n]:10.1f} img/s "
          f"{out['achieved_tflops'][n]:8.3f} TFLOP/s (model count)", flush=True)
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  common.add_size_flags(p, "scnn b16, resnet18 w0.125 b16")
  p.add_argument("--model", choices=("scnn", "resnet18", "both"), default="both")
  p.add_argument("--width", type=float, default=None, help="ResNet-18 width (scnn: 1)")
  p.add_argument("--batch", type=int, default=None)
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--impls", default=None, help="comma list of conv impls (default on CPU: im2col; "
                 "XLA's backward convs run 7-25× slower inside the scanned step there)")
  p.add_argument("--steps-per-call", type=int, default=None, help="K of the scanned contender")
  p.add_argument("--rounds", type=int, default=None)
  p.add_argument("--no-torch", action="store_true")
  p.add_argument("--torch-device", default="auto", choices=("auto", "cpu", "cuda"),
                 help="the PyTorch contender's device (auto: cuda where available)")
  p.add_argument("--torch-compile", action="store_true", help="also time torch.compile(model)")
  p.add_argument("--peak-tflops", default=None,
                 help="comma list of peak TFLOP/s figures for fraction_of_peak (H200 SXM bf16 "
                      "dense: 989.5 by the datasheet)")
  a = p.parse_args()
  cpu = jax.default_backend() == "cpu"
  default = "im2col" if cpu else "xla"
  impls = (a.impls or default).split(",")
  k = a.steps_per_call or (2 if a.smoke else 4 if a.quick else 8)
  rounds = a.rounds or (1 if a.smoke else 3 if a.quick else 7)
  figs = {"env": common.env_line(), "quick": a.quick, "smoke": a.smoke}
  peaks = [float(v) for v in a.peak_tflops.split(",")] if a.peak_tflops else []
  torch_opts = None
  if not a.no_torch and importlib.util.find_spec("torch") is None:
    if not a.smoke:
      raise SystemExit("torch is not installed: pip install -r bench/requirements.txt "
                       "(or --no-torch: the JAX contenders alone)")
    print("bench_step_vs_torch --smoke: torch is not installed: the PyTorch side is skipped, "
          "the JAX side runs", flush=True)
    figs["torch_skipped"] = "torch is not installed"
  elif not a.no_torch:
    device = torch_device(a.torch_device)
    torch_opts = (device, k if device == "cuda" else 1, a.torch_compile)
    import torch
    figs["env"]["torch"] = torch.__version__
  todo = ("scnn", "resnet18") if a.model == "both" else (a.model,)
  small = a.quick or a.smoke
  for name in todo:
    if name == "scnn":
      width, batch = 1.0, a.batch or (2 if a.smoke else 16 if a.quick else 128)
    else:
      width = a.width or (0.125 if small else 0.5)
      batch = a.batch or (2 if a.smoke else 16 if a.quick else 64)
    # --quick times one step per call only for scnn (each contender is one more compilation).
    spcs = (1, k) if not small or name == "scnn" else (k,)
    specs = [(impl, spc) for impl in impls for spc in spcs]
    figs[name] = bench_model(name, width, batch, a.dtype, specs, rounds, torch_opts, peaks)
  common.emit(figs)


if __name__ == "__main__":
  main()
