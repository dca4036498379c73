"""A continual task stream with plasticity resets, in your own loop (plain JAX, flax, optax).

    python examples/plasticity_stream.py --reset=redo          # 50 permuted tasks, ReDo
    python examples/plasticity_stream.py --reset=cbp --tasks=200
    python examples/plasticity_stream.py --quick               # 6 short tasks (the test suite)

Each task permutes the input features of the synthetic task with its own permutation (Kumar et al.
2023's permuted stream, on the synthetic task so that it runs anywhere); an MLP 128-100-100-8 is
trained with Adam, batch 16, one pass a task; the online accuracy of a task is measured on each
batch before its update. ``--reset``: none | redo (Sokar et al. 2023: τ = 0.1 every 100 steps) |
cbp (continual backprop, Dohare et al. 2024: ρ = 1e-3, maturity 100, η = 0.99) | l2init (Kumar
et al. 2023: λ = 1e-3) | snp (S&P every step: p = 1 − 1e-4, σ = 1e-4). The unit resets edit
Adam's moments of the reset weights (events.optimizer_state 'mask'). The scan over a task's steps
carries the reset decision, so every task runs in one compiled call.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from reinit_jax import data, events, plasticity  # noqa: E402

LAYERS = (("dense1",), ("dense2",), ("head",))


class MLP(nn.Module):
  classes: int

  @nn.compact
  def __call__(self, x):
    h1 = nn.relu(nn.Dense(100, name="dense1")(x))
    h2 = nn.relu(nn.Dense(100, name="dense2")(h1))
    return nn.Dense(self.classes, name="head")(h2), (h1, h2)


def make_task_call(model, tx, reset: str, params_0):
  """One task: a scan over its batches; returns (params, opt_state, cbp, online accuracy)."""

  def loss_fn(params, x, y):
    logits, hidden = model.apply({"params": params}, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    if reset == "l2init":
      loss += plasticity.l2_init_penalty(params, params_0, 1e-3)
    return loss, (logits, hidden)

  def unit_reset(params, opt_state, masks, key):
    fresh = model.init(key, jnp.zeros((1, params["dense1"]["kernel"].shape[0])))["params"]
    new = plasticity.reset_units(params, fresh, LAYERS, masks)
    touched = plasticity.unit_param_masks(params, LAYERS, masks)
    return new, events.optimizer_state("mask", tx, opt_state, new, touched)

  def step(carry, batch):
    params, opt_state, cbp, key, t = carry
    x, y = batch
    (_, (logits, hidden)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
    correct = (logits.argmax(-1) == y).mean()  # before the update: online accuracy
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    key, sub = jax.random.split(key)
    if reset == "redo":  # every 100 steps, decided inside the compiled scan
      masks = [plasticity.unit_scores(h) <= 0.1 for h in hidden]
      do = (t % 100) == 99
      masks = [m & do for m in masks]
      params, opt_state = unit_reset(params, opt_state, masks, sub)
    elif reset == "cbp":
      cbp = cbp.update(params, hidden, LAYERS, decay=0.99)
      cbp, masks = cbp.select(rate=1e-3, maturity=100)
      params, opt_state = unit_reset(params, opt_state, masks, sub)
    elif reset == "snp":
      params = plasticity.shrink_perturb_step(params, sub, 1 - 1e-4, 1e-4)
    return (params, opt_state, cbp, key, t + 1), correct

  @jax.jit
  def task(params, opt_state, cbp, key, t, xs, ys):
    carry, correct = jax.lax.scan(step, (params, opt_state, cbp, key, t), (xs, ys))
    return carry, correct.mean()

  return task


def main(reset: str = "redo", tasks: int = 50, quick: bool = False) -> list[float]:
  if quick:
    tasks = 6
  ds = data.build({"dataset": "synthetic", "seed": 0, "synthetic_train": 256 if quick else 2048,
                   "synthetic_test": 16})
  x_all, y_all = jnp.asarray(ds.train(1).x, jnp.float32), jnp.asarray(ds.train(1).y)
  batch = 16
  n = (len(y_all) // batch) * batch
  model, tx = MLP(ds.meta.num_classes), optax.adam(1e-3)
  key = jax.random.key(0)
  params = model.init(key, x_all[:1])["params"]
  opt_state = tx.init(params)
  cbp = plasticity.ContinualBackprop.init(params, LAYERS)
  task_call = make_task_call(model, tx, reset, params)
  t = jnp.zeros((), jnp.int32)
  online = []
  for task in range(tasks):
    perm = jax.random.permutation(jax.random.fold_in(key, 1000 + task), x_all.shape[1])
    order = jax.random.permutation(jax.random.fold_in(key, 2000 + task), n)
    xs = x_all[order][:, perm].reshape(-1, batch, x_all.shape[1])
    ys = y_all[order].reshape(-1, batch)
    (params, opt_state, cbp, _, t), accuracy = task_call(
      params, opt_state, cbp, jax.random.fold_in(key, task), t, xs, ys)
    online.append(float(accuracy))
  _, (h1, h2) = model.apply({"params": params}, x_all[:256])
  dormant = [float(plasticity.dormant_fraction(h, 0.1)) for h in (h1, h2)]
  rank = float(plasticity.srank(h2, 0.01))
  print(f"{reset}: online accuracy first task {online[0]:.3f}, last task {online[-1]:.3f}, "
        f"mean {sum(online) / len(online):.3f}; dormant (τ 0.1) {dormant[0]:.2f} / "
        f"{dormant[1]:.2f}; srank of the last hidden layer {rank:.0f}")
  return online


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--reset", default="redo", choices=("none", "redo", "cbp", "l2init", "snp"))
  parser.add_argument("--tasks", type=int, default=50)
  parser.add_argument("--quick", action="store_true", help="6 short tasks")
  args = parser.parse_args()
  main(args.reset, args.tasks, args.quick)
