"""One SGD-momentum train step (forward, backward, update): reinit_jax's jitted engine vs PyTorch.

Same model (scnn, ResNet-18 at a width multiplier), batch and input size (32×32×3, 10 classes), SGD
with momentum 0.9, on the same CPU. JAX contenders use the engine's own step (``train.step.make_step``
inside ``make_train_call``: vmapped over one seed, scanned, state donated, data gathered on device):

* ``jax_<impl>_1``: one step per jitted call (the per-call overhead is paid every step);
* ``jax_<impl>_<K>``: K steps scanned in one call (the engine's normal mode), time per step;
  ``<impl>`` is the conv implementation ('xla' | 'im2col', reinit_jax/models/layers.py);
* ``torch``: PyTorch eager, ``zero_grad / forward / backward / optimizer.step``.

Usage:
  python bench/bench_step_vs_torch.py --quick            # scnn b16, resnet18 w0.125 b16
  python bench/bench_step_vs_torch.py                     # scnn b128, resnet18 w0.5 b64
  python bench/bench_step_vs_torch.py --model resnet18 --width 1 --dtype bfloat16 --batch 512 \
      --impls xla --no-torch                              # a GPU: images/s and FLOP/s
The last line is JSON: per model, images/s of each contender, and the ratio JAX/torch (≥ 1: JAX
is as fast), plus XLA's FLOP count of one step and the achieved FLOP/s.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from reinit_jax import methods, models  # noqa: E402
from reinit_jax.train import schedules, step as S  # noqa: E402
from reinit_jax.train.state import base_keys, init_state  # noqa: E402

LR = 0.01


def jax_contender(name, width, batch, dtype, impl, steps_per_call):
  """(fn, flops_per_step): fn runs one engine call of ``steps_per_call`` steps and blocks."""
  model = models.create(name, 10, width=width, dtype=dtype, conv_impl=impl)
  tx = schedules.make_optimizer("sgd", 0.0, 0.9)
  step = S.make_step(model, tx, lambda *a: jnp.float32(LR), lambda k, x, t: x, distill="off",
                     beta=0.0)
  call = S.make_train_call(step, cached=False)
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


def torch_contender(name, width, batch):
  """fn running one eager SGD-momentum step on a fixed batch (float32, NCHW)."""
  import torch
  import torch_models
  torch.manual_seed(0)
  net = torch_models.make(name, width)
  net.train()
  opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
  x = torch.randn(batch, 3, 32, 32)
  y = torch.randint(0, 10, (batch,))
  lossf = torch.nn.CrossEntropyLoss()

  def fn():
    opt.zero_grad(set_to_none=True)
    loss = lossf(net(x), y)
    loss.backward()
    opt.step()
    loss.item()  # one host sync per step, as the JAX contender's block

  return fn, sum(p.numel() for p in net.parameters())


def bench_model(name, width, batch, dtype, specs, rounds, with_torch):
  """Times every contender (``specs``: (conv impl, steps per call) pairs) side by side."""
  fns, out = {}, {"model": name, "width": width, "batch": batch, "dtype": dtype}
  flops = None
  for impl, spc in specs:
    fn, fl, model = jax_contender(name, width, batch, dtype, impl, spc)
    fns[f"jax_{impl}_{spc}"] = (fn, spc)
    flops = flops or fl
  shapes = jax.eval_shape(model.init, jax.random.key(0))["params"]
  jax_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes))
  out["params"] = jax_params
  if with_torch:
    tfn, tparams = torch_contender(name, width, batch)
    if tparams != jax_params:
      raise SystemExit(f"{name}: torch twin has {tparams} parameters, JAX model {jax_params}")
    fns["torch"] = (tfn, 1)
  med = common.side_by_side({n: f for n, (f, _) in fns.items()}, rounds)
  ips = {n: batch * spc / med[n] for n, (_, spc) in fns.items()}
  out["images_per_s"] = {n: round(v, 1) for n, v in ips.items()}
  out["step_ms"] = {n: round(1e3 * batch / v, 2) for n, v in ips.items()}
  out["flops_per_step"] = flops
  best = max((n for n in ips if n.startswith("jax")), key=ips.get)
  out["best_jax"] = best
  if flops:
    out["achieved_gflops"] = round(flops * ips[best] / batch / 1e9, 2)
  if with_torch:
    out["ratio_vs_torch"] = {n: round(v / ips["torch"], 3) for n, v in ips.items() if n != "torch"}
  for n in sorted(fns):
    print(f"{name:9s} {n:16s} {out['step_ms'][n]:9.2f} ms/step {ips[n]:10.1f} img/s", flush=True)
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true")
  p.add_argument("--model", choices=("scnn", "resnet18", "both"), default="both")
  p.add_argument("--width", type=float, default=None, help="ResNet-18 width (scnn: 1)")
  p.add_argument("--batch", type=int, default=None)
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--impls", default=None, help="comma list of conv impls (default on CPU: im2col; "
                 "XLA's backward convs run 7-25× slower inside the scanned step there)")
  p.add_argument("--steps-per-call", type=int, default=None, help="K of the scanned contender")
  p.add_argument("--rounds", type=int, default=None)
  p.add_argument("--no-torch", action="store_true")
  a = p.parse_args()
  cpu = jax.default_backend() == "cpu"
  default = "im2col" if cpu else "xla"
  impls = (a.impls or default).split(",")
  k = a.steps_per_call or (4 if a.quick else 8)
  rounds = a.rounds or (3 if a.quick else 7)
  figs = {"env": common.env_line(), "quick": a.quick}
  todo = ("scnn", "resnet18") if a.model == "both" else (a.model,)
  for name in todo:
    if name == "scnn":
      width, batch = 1.0, a.batch or (16 if a.quick else 128)
    else:
      width, batch = a.width or (0.125 if a.quick else 0.5), a.batch or (16 if a.quick else 64)
    # --quick times one step per call only for scnn (each contender is one more compilation).
    spcs = (1, k) if not a.quick or name == "scnn" else (k,)
    specs = [(impl, spc) for impl in impls for spc in spcs]
    figs[name] = bench_model(name, width, batch, a.dtype, specs, rounds, not a.no_torch)
  common.emit(figs)


if __name__ == "__main__":
  main()
