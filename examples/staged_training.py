"""Staged training with a re-initialization method, in your own loop (plain JAX, flax, optax).

    python examples/staged_training.py            # 4 stages, Shrink & Perturb, the synthetic task
    python examples/staged_training.py --quick    # 2 stages of 20 steps (the test suite runs this)

The library gives the pieces, the loop is yours: ``data.build`` for the data, ``models.create``
for a network with its block declaration, ``methods.get(name)`` for R(params, fresh, stage, key,
context) and ``events.optimizer_state`` for what an event does to the optimizer state ([Z] §3:
optax's state is re-created at every event, 'reset'; 'mask' zeroes it where R re-initialized).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from reinit_jax import data, events, methods, models  # noqa: E402


def main(quick: bool = False, method: str = "shrink_perturb", policy: str = "reset") -> float:
  stages, steps = (2, 20) if quick else (4, 200)
  ds = data.build({"dataset": "synthetic", "seed": 0, "synthetic_train": 256,
                   "synthetic_test": 1000})
  model = models.create("mlp", ds.meta.num_classes, input_shape=ds.meta.input_shape)
  reinit = methods.get(method)
  tx = optax.sgd(0.05, momentum=0.9)
  key = jax.random.key(0)
  variables = model.init(jax.random.fold_in(key, 0))  # θ_1
  params = variables["params"]
  context = methods.make_context(model, params)  # block declaration, θ_1's norms
  opt_state = tx.init(params)
  x, y = jnp.asarray(ds.train(1).x, jnp.float32), jnp.asarray(ds.train(1).y)

  @jax.jit
  def step(params, opt_state):
    def loss_fn(p):
      logits = model.apply({**variables, "params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  for stage in range(1, stages + 1):
    for _ in range(steps):
      params, opt_state, loss = step(params, opt_state)
    test = model.apply({**variables, "params": params}, jnp.asarray(ds.test.x, jnp.float32))
    accuracy = float((test.argmax(-1) == jnp.asarray(ds.test.y)).mean())
    print(f"stage {stage}: loss {float(loss):.4f} test accuracy {accuracy:.3f}")
    if stage < stages:  # the event after stage t: θ_init drawn fresh, keyed by the stage
      event_key = jax.random.fold_in(key, stage)
      fresh = model.init(event_key)["params"]
      mask = reinit.reinit_mask(params, stage, event_key, context)
      params = reinit(params, fresh, stage, event_key, context)
      opt_state = events.optimizer_state(policy, tx, opt_state, params, mask)
  return accuracy


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="2 stages of 20 steps")
  parser.add_argument("--method", default="shrink_perturb", help="a name of methods.names()")
  parser.add_argument("--policy", default="reset", choices=events.OPTIMIZER_POLICIES)
  args = parser.parse_args()
  main(args.quick, args.method, args.policy)
