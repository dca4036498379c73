"""Every method compiles and runs on every model (docs/methods.md, "Models"), from the block declaration.

The default run uses each family's tiny variant (the same code at a small width); the full-size
models run in the slow suite (``pytest -m slow``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reinit_jax import events, masks, methods, models

# Compiling all eight events for a deep model takes minutes on 2 loaded cores: the default run
# covers a dense net, a LayerNorm CNN and a BatchNorm ResNet; the other families run under -m slow.
DEFAULT = ["mlp", "scnn_tiny"]
TINY = [n for n in models.names() if n.endswith("_tiny") and n not in DEFAULT + ["resnet18_tiny"]]
FULL = [n for n in models.names() if not n.endswith("_tiny") and n != "mlp"]


def _run_all_methods(name, num_classes=10, batch=4, names=methods.SPEC_METHODS, **options):
  model = models.create(name, num_classes, **options)
  v = model.init(jax.random.key(0))
  ctx = methods.make_context(model, v["params"])
  tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9))
  rs = [methods.get(n) for n in names]
  ctxs = [r.prepare(jax.random.key(1), v["params"], ctx) for r in rs]
  x = jax.random.normal(jax.random.key(2), (batch, *model.input_shape))

  @jax.jit
  def all_events(v, stage):
    fresh = events.fresh_variables(model, jax.random.key(5), 0, stage)
    opt_state = tx.init(v["params"])
    return [events.apply_event(r, model, v, fresh, opt_state, tx, stage, jax.random.key(3), c, x,
                               optimizer_policy="mask")[0] for r, c in zip(rs, ctxs)]

  trained = dict(v, params=jax.tree.map(lambda p: 1.5 * p + 0.01, v["params"]))
  if "batch_stats" in v:  # running statistics that moved away from a fresh module's
    trained["batch_stats"] = jax.tree.map(lambda s: s + 1.0, v["batch_stats"])
  outs = all_events(trained, jnp.int32(1))
  return model, trained, dict(zip(names, outs))


def _changed(a, b):
  return sum(int(np.sum(np.asarray(x) != np.asarray(y)))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("name", DEFAULT + [pytest.param(n, marks=pytest.mark.slow) for n in TINY + ["resnet18_tiny"]])
def test_every_method_runs_on_every_tiny_model(name):
  model, v, outs = _run_all_methods(name)
  p = v["params"]
  n = sum(x.size for x in jax.tree.leaves(p))
  for meth, out in outs.items():
    assert jax.tree.structure(out["params"]) == jax.tree.structure(p), meth
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out["params"])), meth
  assert _changed(outs["standard"]["params"], p) == 0
  assert _changed(outs["full"]["params"], p) == n
  assert _changed(outs["shrink_perturb"]["params"], p) > 0.99 * n
  for m in ("random_subset", "magnitude", "fixed_subset"):
    assert 0.15 * n < _changed(outs[m]["params"], p) < 0.25 * n, m
  head = masks.head(p, model.head)
  hp, hout = (jax.tree.leaves(jax.tree.map(lambda x, h: x if h else jnp.zeros(()), t, head))
              for t in (p, outs["head"]["params"]))
  assert _changed(hout, hp) > 0
  body = jax.tree.map(lambda x, h: jnp.zeros(()) if h else x, p, head)
  body_out = jax.tree.map(lambda x, h: jnp.zeros(()) if h else x, outs["head"]["params"], head)
  assert _changed(body_out, body) == 0
  # layerwise after stage 1: block 1 kept (rescaled) and normalized after, the rest fresh
  lw = outs["layerwise"]
  b1 = model.blocks[0]
  assert float(lw["layerwise_norm"][b1.norm]["sigma"]) != 1.0
  for top in p:
    if top in b1.names:
      assert jax.tree.all(jax.tree.map(lambda a, b: a.shape == b.shape, lw["params"][top], p[top]))
  if "batch_stats" in v:  # running statistics of re-initialized layers reset to a fresh module's
    fresh_stats = model.init(jax.random.key(123))["batch_stats"]
    assert _changed(outs["full"]["batch_stats"], fresh_stats) == 0
    assert _changed(outs["standard"]["batch_stats"], v["batch_stats"]) == 0
    # layerwise after stage 1: statistics in block 1 kept, everything after it reset
    for top, stats in outs["layerwise"]["batch_stats"].items():
      expect = v["batch_stats"][top] if top in b1.names else fresh_stats[top]
      assert _changed(stats, expect) == 0, top


def test_events_on_a_batchnorm_resnet():
  """The blend methods without sorting (cheap to compile) on resnet18_tiny, BatchNorm included."""
  model, v, outs = _run_all_methods("resnet18_tiny", names=("standard", "full", "layerwise"))
  fresh_stats = model.init(jax.random.key(123))["batch_stats"]
  assert _changed(outs["full"]["batch_stats"], fresh_stats) == 0
  assert _changed(outs["standard"]["batch_stats"], v["batch_stats"]) == 0
  b1 = model.blocks[0]
  assert float(outs["layerwise"]["layerwise_norm"][b1.norm]["sigma"]) != 1.0
  for top, stats in outs["layerwise"]["batch_stats"].items():
    expect = v["batch_stats"][top] if top in b1.names else fresh_stats[top]
    assert _changed(stats, expect) == 0, top


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_every_method_runs_on_every_full_size_model(name):
  opts = {"input_shape": (64, 64, 3)} if name in ("vgg16", "resnet50", "mobilenet_v1") else {}
  model, v, outs = _run_all_methods(name, batch=2, **opts)
  assert _changed(outs["full"]["params"], v["params"]) == sum(
      x.size for x in jax.tree.leaves(v["params"]))
  assert float(outs["layerwise"]["layerwise_norm"][model.blocks[0].norm]["sigma"]) != 1.0
