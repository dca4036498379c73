"""Class tests (issue 23): every registered method as an event on every model family, BatchNorm on.

Each (family, method setting) compiles one function of the traced stage (stages 1, 2, 3, K, K + 1
share it) that runs ``events.apply_event`` under both BatchNorm policies, R alone, R with θ_init + 1
(the probe below) and the declared mask. Two sweeps read it:

* test_event_resets_batch_stats_exactly_where_params_were_touched: on every BatchNorm model, after
  the event, the running statistics of a norm layer equal the fresh module's bitwise when the
  event touched ANY entry of that layer's parameters and equal the old ones bitwise otherwise;
  with ``batch_stats_policy='keep'`` nothing is reset. The masks are partial: a fraction of 0.1
  selects round(0.1·n) entries of every tensor, on scnn_tiny none of a 4-channel norm, 1 of 8,
  6 of 64, while the conv kernels beside them are hit; layerwise, head and a user-style method
  with no declared mask (half of every norm scale, no bias) hit other patterns.
* test_method_invariants_on_every_family: tree structure, shapes, dtypes and finiteness of R's
  output and of the event's, and what README.md ("Composing a re-initialization method") says of
  each method: ``standard`` the identity, ``full`` the fresh draw, ``shrink_perturb`` λθ + γθ_init,
  ``head`` only the head, ``layerwise`` blocks 1..k kept and rescaled to their first norms, the
  rest fresh, ``rescale_only`` nothing re-initialized, the subset methods exactly round(p·n)
  entries of every tensor (per tensor, as masks.random_fraction and smallest_magnitude say).

Which layers did the event touch? Two candidate references, and why neither is used as is:

* "some parameter of the layer differs from before the event" is wrong both ways: ``rescale_only``
  and ``layerwise``'s kept blocks change parameters without re-initializing them (their statistics
  must stay), and a re-initialized entry may coincide with its old value.
* "the method's reinit_mask has a True under it" is what ``apply_event`` itself uses, so a wrong
  mask would be checked against itself.

The reference here is the definition in README.md: a parameter entry is re-initialized when θ_init
has weight in it. It is measured from R's outputs alone: R(θ, θ_init) and R(θ, θ_init + 1) differ
exactly there (every method is a blend of θ and θ_init; γ = 0.2 > 0 for Shrink & Perturb). The
declared mask is then checked against this measurement, entry by entry, for every method.

Cost (2 cores): the k-smallest selection (random_subset, magnitude, fixed_subset) compiles for
5-45 s per model, the layer-wise normalization compiles a forward pass, and every other event
5-20 s on the deep families. The default suite runs the whole product on mlp and scnn_tiny
(BatchNorm) and spreads the other methods round-robin over the other six families (layerwise's
event there on variables without a ``layerwise_norm`` collection: R, the mask and the resets
checked, the measurement not), so every method and every family runs; ``pytest -m slow`` runs the
rest of the product. Variables are drawn with numpy from ``jax.eval_shape(model.init)``: the
methods only see shapes, and compiling every family's init would cost more than its events.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinit_jax import events, masks, methods, models
from reinit_jax.models.base import LAYERWISE_NORM

# ----------------------------------------------------------------------------- the sweep


def _every_other_scale_entry(params):
  def pick(kp, p):
    if masks.path_of(kp).endswith("/scale"):
      return (jnp.arange(p.size) % 2 == 0).reshape(p.shape)
    return jnp.asarray(False)
  return jax.tree_util.tree_map_with_path(pick, params)


@methods.register("test_class_half_norm_scales")
def _half_norm_scales(params, fresh, stage, key, context):
  """θ_init on every other entry of each norm layer's scale, biases kept. No declared mask: the
  event finds it by probing R (method_registry.Method.reinit_mask), as for a user's method."""
  del stage, key, context
  return methods.blend(params, fresh, _every_other_scale_entry(params))


# The registry's own methods and this file's: methods registered by other test files depend on
# which files pytest collected first, so they are left out.
METHODS = tuple(n for n in methods.names()
                if methods.get(n).declaration.fn.__module__ in ("reinit_jax.methods", __name__))

FRACTION = 0.1  # round(0.1·n): 0 of 4 channels, 1 of 8, 6 of 64 — partial and untouched layers
HPARAMS = {  # several settings per method where the setting changes which entries are hit
    "shrink_perturb": [dict(shrink=0.3, perturb=0.2)],  # neither default, λ ≠ γ
    "random_subset": [dict(fraction=FRACTION)],
    "magnitude": [dict(fraction=FRACTION)],
    "fixed_subset": [dict(fraction=FRACTION)],
    "layerwise": [dict(events_per_block=1), dict(events_per_block=2)],
    "redo": [dict(tau=0.6)],  # some units of each hidden layer below, some above
    # every unit mature at once: ⌊0.25·n⌋ of each hidden layer's n units replaced at the event
    "continual_backprop": [dict(replacement_rate=0.25, maturity=0)],
}
# Unit resets: models whose blocks are single layers in a chain (mlp).
UNIT_METHODS = ("redo", "continual_backprop")
SELECTION = ("random_subset", "magnitude", "fixed_subset")  # compile the k-smallest selection

# Every family of the model registry, at its tiny variant; every CNN with BatchNorm.
FAMILIES = tuple(n + "_tiny" if n + "_tiny" in models.names() else n
                 for n in models.names() if not n.endswith("_tiny"))
FULL_PRODUCT = ("mlp", "scnn_tiny")  # the default suite runs every setting on these
STAGES_EXTRA = (1, 2, 3)  # plus K and K + 1 (k clipped to K) of each model


@dataclasses.dataclass(frozen=True)
class Setting:
  method: str
  hparams: tuple = ()
  measure: bool = True  # the event measures the layer-wise normalization (a forward pass)

  @property
  def id(self) -> str:
    hp = ",".join(f"{k}={v}" for k, v in self.hparams)
    return self.method + (f"({hp})" if hp else "") + ("" if self.measure else "-unmeasured")

  def get(self) -> methods.Method:
    return methods.get(self.method, **dict(self.hparams))


def _product() -> tuple[Setting, ...]:
  """Every registered method at every setting of HPARAMS (its defaults when it has none)."""
  return tuple(Setting(name, tuple(sorted(hp.items()))) for name in METHODS
               for hp in HPARAMS.get(name, [{}]))


def _default_suite() -> dict[str, tuple[Setting, ...]]:
  """family -> the settings the default suite runs on it.

  mlp and scnn_tiny: the whole product. The other families share the settings that compile fast
  (no k-smallest selection; layerwise's event without the normalization's forward pass),
  round-robin, so that every family runs at least one method and each of those methods runs on
  one more family at least.
  """
  out = {f: list(_product()) for f in FULL_PRODUCT}
  others = [f for f in FAMILIES if f not in FULL_PRODUCT]
  cheap = [dataclasses.replace(s, measure=False) if s.get().uses_normalization else s
           for s in _product() if s.method not in SELECTION + UNIT_METHODS]
  for i in range(max(len(cheap), len(others))):
    out.setdefault(others[i % len(others)], []).append(cheap[i % len(cheap)])
  return {f: tuple(v) for f, v in out.items()}


DEFAULT_SUITE = _default_suite()


def _cases(bn_only: bool = False):
  """(family, setting) pairs: the default suite's, then the rest of the product marked slow."""
  cases = []
  for family in FAMILIES:
    if bn_only and family == "mlp":
      continue
    default = DEFAULT_SUITE[family]
    for group, settings in (("default", default),
                            ("slow", [s for s in _product() if s not in default])):
      for s in settings:
        if s.method in UNIT_METHODS and family != "mlp":
          continue  # refused by validation (tests/test_step_events.py)
        marks = [pytest.mark.slow] if group == "slow" else []
        cases.append(pytest.param(family, s, marks=marks, id=f"{family}-{s.id}"))
  return cases


# ----------------------------------------------------------------------------- variables


def _create(family):
  return models.create(family, 10, **({} if family == "mlp" else {"normalization": "batch"}))


def _flat(tree) -> dict:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {masks.path_of(kp): np.asarray(x) for kp, x in leaves}


@dataclasses.dataclass
class Family:
  model: models.Model
  theta1: dict      # "first initialization": He-normal kernels, unit scales, zero biases
  variables: dict   # "trained" θ = 1.5·θ_1 + noise, statistics and normalizations moved
  fresh: dict       # θ_init and a fresh module's statistics (all different from the old ones)
  x: np.ndarray     # the normalization batch
  stages: tuple


def _init_like(rng, shapes):
  def draw(kp, s):
    leaf = masks.path_of(kp).split("/")[-1]
    if leaf == "kernel":
      return rng.standard_normal(s.shape) * math.sqrt(2.0 / math.prod(s.shape[:-1]))
    return np.ones(s.shape) if leaf == "scale" else np.zeros(s.shape)
  return jax.tree_util.tree_map_with_path(lambda kp, s: draw(kp, s).astype(s.dtype), shapes)


@functools.lru_cache(maxsize=None)
def _family(family: str) -> Family:
  model = _create(family)
  shapes = jax.eval_shape(model.init, jax.random.key(0))
  rng = np.random.default_rng(zlib.crc32(family.encode()))
  noise = lambda t, a: jax.tree.map(lambda x: (x + a * rng.standard_normal(x.shape)).astype(
      np.float32), t)
  theta1 = jax.tree.map(np.asarray, _init_like(rng, shapes["params"]))
  trained = noise(jax.tree.map(lambda p: 1.5 * p, theta1), 0.05)
  fresh_params = noise(_init_like(rng, shapes["params"]), 0.02)
  variables = {"params": trained,
               LAYERWISE_NORM: jax.tree_util.tree_map_with_path(
                   lambda kp, s: rng.uniform(-0.1, 0.1, s.shape).astype(np.float32)
                   if masks.path_of(kp).endswith("mu")
                   else rng.uniform(0.8, 1.2, s.shape).astype(np.float32), shapes[LAYERWISE_NORM])}
  fresh = {"params": fresh_params, LAYERWISE_NORM: jax.tree.map(
      lambda s: np.ones(s.shape, np.float32), shapes[LAYERWISE_NORM])}
  if "batch_stats" in shapes:
    # Disjoint ranges: old and fresh statistics differ in every entry, and a reset to anything but
    # the fresh module's values (a constant, the old ones) is seen.
    pick = lambda lo_mean, hi_mean, lo_var, hi_var: jax.tree_util.tree_map_with_path(
        lambda kp, s: rng.uniform(*((lo_mean, hi_mean) if masks.path_of(kp).endswith("mean")
                                    else (lo_var, hi_var)), s.shape).astype(np.float32),
        shapes["batch_stats"])
    variables["batch_stats"] = pick(0.2, 1.0, 1.5, 2.5)
    fresh["batch_stats"] = pick(-1.0, -0.2, 0.4, 0.9)
  x = rng.standard_normal((4, *model.input_shape)).astype(np.float32)
  K = model.num_blocks
  return Family(model, theta1, variables, fresh, x, tuple(sorted(set(STAGES_EXTRA) | {K, K + 1})))


def _without_norms(variables):
  return {k: v for k, v in variables.items() if k != LAYERWISE_NORM}


def _stages(fam: Family, s: Setting) -> tuple:
  return fam.stages if s.method == "layerwise" else (1, 2)


@functools.lru_cache(maxsize=None)
def _compiled(family: str, s: Setting):
  """A jitted function of the stage: the event (both BatchNorm policies), R, probe and mask."""
  model, R = _family(family).model, s.get()

  def run(variables, fresh, theta1, x, stage):
    key = jax.random.key(3)
    p, f = variables["params"], fresh["params"]
    ctx = R.prepare(jax.random.key(1), p, methods.make_context(model, theta1))
    # The activations (and a carry advanced on them), as the engine gives them to R and the event.
    ctx = events.advance_context(R, model, variables, ctx, x)
    v, fv = variables, fresh
    if R.uses_normalization and not s.measure:
      v, fv = _without_norms(variables), _without_norms(fresh)
    ev, _ = events.apply_event(R, model, v, fv, None, None, stage, key, ctx, x,
                               optimizer_policy="keep")
    kept, _ = events.apply_event(R, model, v, fv, None, None, stage, key, ctx, x,
                                 optimizer_policy="keep", batch_stats_policy="keep")
    r = R(p, f, stage, key, ctx)
    f_plus_1 = jax.tree.map(lambda a: a + 1.0, f)
    return dict(event=ev, kept_stats=kept.get("batch_stats"), r=r,
                # where θ_init has weight, measured from R's outputs alone
                fresh_dependent=jax.tree.map(jnp.not_equal, r, R(p, f_plus_1, stage, key, ctx)),
                mask=R.reinit_mask(p, stage, key, ctx), fixed_mask=ctx.fixed_mask)

  return jax.jit(run)


def _outcome(family: str, s: Setting) -> dict:
  """{stage: outputs as flat numpy dicts} of setting ``s`` on ``family``."""
  fam = _family(family)
  fn, params = _compiled(family, s), _flat(fam.variables["params"])
  res = {}
  for t in _stages(fam, s):
    o = jax.device_get(fn(fam.variables, fam.fresh, fam.theta1, fam.x, jnp.int32(t)))
    res[t] = dict(
        event={c: _flat(tree) for c, tree in o["event"].items()},
        kept_stats=None if o["kept_stats"] is None else _flat(o["kept_stats"]),
        r=_flat(o["r"]), fresh_dependent=_flat(o["fresh_dependent"]),
        mask={k: np.broadcast_to(m, params[k].shape) for k, m in _flat(o["mask"]).items()},
        fixed_mask=None if o["fixed_mask"] is None else _flat(o["fixed_mask"]))
  return res


# ----------------------------------------------------------------------------- 1. BatchNorm resets


@pytest.mark.parametrize("family,s", _cases(bn_only=True))
def test_event_resets_batch_stats_exactly_where_params_were_touched(family, s):
  fam = _family(family)
  old, new = _flat(fam.variables["batch_stats"]), _flat(fam.fresh["batch_stats"])
  params = _flat(fam.variables["params"])
  assert old and all(np.all(old[k] != new[k]) for k in old)
  for t, o in _outcome(family, s).items():
    n_reset = 0
    for path in old:
      layer = path.rsplit("/", 1)[0]
      under = [k for k in params if k.startswith(layer + "/")]
      assert under, f"{path}: a BatchNorm layer without parameters (scale, bias)"
      touched = any(o["fresh_dependent"][k].any() for k in under)
      got = o["event"]["batch_stats"][path]
      # Copies, not arithmetic: bitwise.
      np.testing.assert_array_equal(got, new[path] if touched else old[path],
                                    err_msg=f"stage {t}: {path} (layer touched: {touched})")
      np.testing.assert_array_equal(o["kept_stats"][path], old[path],
                                    err_msg=f"stage {t}: {path} reset under policy 'keep'")
      n_reset += touched
    if s.method in ("standard", "rescale_only"):
      assert n_reset == 0, (t, n_reset)
    if s.method in ("full", "shrink_perturb"):
      assert n_reset == len(old), (t, n_reset)


def test_partial_masks_leave_some_layers_untouched_and_touch_others_in_part():
  """The sweep above discriminates: on scnn_tiny a subset mask touches some norm layers in part
  (any ≠ all) and leaves others untouched whose conv kernel (same top-level module) is hit."""
  family = "scnn_tiny"
  params = _flat(_family(family).variables["params"])
  layers = {p.rsplit("/", 1)[0] for p in _flat(_family(family).variables["batch_stats"])}
  for method in SELECTION:
    (s,) = [s for s in DEFAULT_SUITE[family] if s.method == method]
    o = _outcome(family, s)[1]
    dep = o["fresh_dependent"]
    partial = [lay for lay in layers if any(dep[k].any() for k in params if k.startswith(lay + "/"))
               and not all(dep[k].all() for k in params if k.startswith(lay + "/"))]
    untouched_beside_hit = [
        lay for lay in layers
        if not any(dep[k].any() for k in params if k.startswith(lay + "/"))
        and any(dep[k].any() for k in params if k.split("/")[0] == lay.split("/")[0])]
    assert partial and untouched_beside_hit, (method, partial, untouched_beside_hit)
  (s,) = [s for s in DEFAULT_SUITE[family] if s.method == "test_class_half_norm_scales"]
  dep = _outcome(family, s)[1]["fresh_dependent"]
  assert all(dep[lay + "/scale"].any() and not dep[lay + "/bias"].any() for lay in layers)


# ----------------------------------------------------------------------------- 2. invariants

# shrink_perturb: the library rounds λ and γ to float32 (≤ 2^-25 relative), each product and the
# sum once (≤ 2^-24 each): at most 2.5·2^-24·(|λθ| + |γθ_init|) from the float64 value, under
# 2^-22 with or without a fused multiply-add. λ and γ swapped, or a term dropped, is off by > 10%.
SP_RTOL = 2.0 ** -22
# A rescaled tensor is fl(θ·s) for one float32 scalar s: within 2^-24 of s·θ entry by entry, so
# θ's direction is kept within 2^-22. s = n_1/‖θ‖ comes from float32 sums of up to 2^18 squares,
# whose rounding depends on XLA's summation order (vector width of the CPU): 1e-4 relative covers
# any order (observed < 1e-6); a missing or inverted rescale is off by ≥ 1.5× here.
DIRECTION_RTOL, NORM_RTOL = 2.0 ** -22, 1e-4


def _block_of(model):
  owner = {n: i for i, b in enumerate(model.blocks, start=1) for n in b.names}
  return lambda path: owner.get(path.split("/")[0], model.num_blocks + 1)


def _check_rescaled(out, theta, n1, what):
  n1 = float(np.linalg.norm(n1.astype(np.float64)))
  cur = float(np.linalg.norm(theta.astype(np.float64)))
  if n1 == 0 or cur == 0:  # documented: zero-norm tensors are left as they are
    np.testing.assert_array_equal(out, theta, err_msg=what)
    return
  o, t = out.astype(np.float64), theta.astype(np.float64)
  c = float(np.sum(o * t) / np.sum(t * t))
  assert np.all(np.abs(o - c * t) <= DIRECTION_RTOL * np.abs(c * t)), what
  assert abs(c - n1 / cur) <= NORM_RTOL * (n1 / cur), (what, c, n1 / cur)


def _inv_standard(ctx, o, t):
  for c, leaves in o["event"].items():
    for k, x in leaves.items():
      np.testing.assert_array_equal(x, ctx.old[c][k], err_msg=f"standard changed {c}/{k}")


def _inv_redo(ctx, o, t):
  """Recomputed in numpy from the family's batch: a unit of hidden layer i whose mean |h| over the
  batch is ≤ τ times the layer's mean gets fresh incoming weights and bias, zero outgoing weights
  (layer by layer, so an entry between two reset units ends fresh); every other entry is kept."""
  fam = _family("mlp")
  hidden = [np.abs(np.asarray(h)).mean(0) for h in ctx.model.block_outputs(fam.variables, fam.x)]
  want = {k: v.astype(np.float64).copy() for k, v in ctx.theta.items()}
  touched = 0
  for i, a in enumerate(hidden[:-1], start=1):
    dormant = a <= ctx.hp["tau"] * a.mean()
    touched += dormant.sum()
    want[f"dense{i}/kernel"][:, dormant] = ctx.fresh[f"dense{i}/kernel"][:, dormant]
    want[f"dense{i}/bias"][dormant] = ctx.fresh[f"dense{i}/bias"][dormant]
    want[f"dense{i + 1}/kernel"][dormant, :] = 0.0
  assert 0 < touched < sum(len(a) for a in hidden[:-1])  # partial: the case tests something
  for k, x in o["r"].items():
    np.testing.assert_array_equal(x, want[k].astype(x.dtype), err_msg=k)


def _inv_continual_backprop(ctx, o, t):
  """Recomputed in numpy: after one event from the initial carry (η = 0.99, every unit mature) a
  unit's utility is (1 − η)·mean|h_i|·Σ_k|w_ik|; the ⌊ρ·n⌋ lowest of each hidden layer (ties by
  position) get fresh incoming weights and bias and zero outgoing weights."""
  fam = _family("mlp")
  hidden = [np.abs(np.asarray(h, np.float64)).mean(0)
            for h in ctx.model.block_outputs(fam.variables, fam.x)][:-1]
  want = {k: v.astype(np.float64).copy() for k, v in ctx.theta.items()}
  for i, a in enumerate(hidden, start=1):
    utility = 0.01 * a * np.abs(ctx.theta[f"dense{i + 1}/kernel"]).sum(1)
    replaced = np.zeros(len(a), bool)
    replaced[np.argsort(utility, kind="stable")[:int(np.floor(0.25 * len(a)))]] = True
    assert 0 < replaced.sum() < len(a)  # partial: the case tests something
    want[f"dense{i}/kernel"][:, replaced] = ctx.fresh[f"dense{i}/kernel"][:, replaced]
    want[f"dense{i}/bias"][replaced] = ctx.fresh[f"dense{i}/bias"][replaced]
    want[f"dense{i + 1}/kernel"][replaced, :] = 0.0
  for k, x in o["r"].items():
    np.testing.assert_array_equal(x, want[k].astype(x.dtype), err_msg=k)


def _inv_full(ctx, o, t):
  for k, x in o["r"].items():
    np.testing.assert_array_equal(x, ctx.fresh[k], err_msg=k)


def _inv_shrink_perturb(ctx, o, t):
  lam, gam = ctx.hp["shrink"], ctx.hp["perturb"]
  for k, x in o["r"].items():
    a, b = lam * ctx.theta[k].astype(np.float64), gam * ctx.fresh[k].astype(np.float64)
    assert np.all(np.abs(x - (a + b)) <= SP_RTOL * (np.abs(a) + np.abs(b))), k


def _inv_head(ctx, o, t):
  for k, x in o["r"].items():
    src = ctx.fresh if k.split("/")[0] in ctx.model.head else ctx.theta
    np.testing.assert_array_equal(x, src[k], err_msg=k)


def _inv_layerwise(ctx, o, t):
  K, M = ctx.model.num_blocks, ctx.hp["events_per_block"]
  k = min(-(-t // M), K)
  block_of = _block_of(ctx.model)
  for path, x in o["r"].items():
    if block_of(path) <= k:
      _check_rescaled(x, ctx.theta[path], ctx.theta1[path], f"stage {t}, k={k}: {path}")
    else:
      np.testing.assert_array_equal(x, ctx.fresh[path], err_msg=f"stage {t}, k={k}: {path}")
  if LAYERWISE_NORM in o["event"]:  # measured: block k's normalization set, the others kept
    norms, old = o["event"][LAYERWISE_NORM], ctx.old[LAYERWISE_NORM]
    for i, blk in enumerate(ctx.model.blocks, start=1):
      mu, sigma = (f"{blk.norm}/mu", f"{blk.norm}/sigma")
      if i == k:
        assert norms[sigma] >= 1e-6 and (norms[mu], norms[sigma]) != (old[mu], old[sigma]), i
      else:
        assert (norms[mu], norms[sigma]) == (old[mu], old[sigma]), (t, i)


def _inv_rescale_only(ctx, o, t):
  assert not any(m.any() for m in o["mask"].values())
  for path, x in o["r"].items():
    _check_rescaled(x, ctx.theta[path], ctx.theta1[path], path)
  # The parameters moved everywhere a first-init norm is non-zero, yet nothing was
  # re-initialized: why "params differ" is not the reference for BatchNorm resets.
  assert any(not np.array_equal(x, ctx.theta[k]) for k, x in o["r"].items())


def _inv_subset(ctx, o, t):
  p = ctx.hp["fraction"]
  for k, m in o["mask"].items():
    assert int(m.sum()) == round(p * m.size), (k, int(m.sum()), m.size)
    np.testing.assert_array_equal(o["r"][k], np.where(m, ctx.fresh[k], ctx.theta[k]), err_msg=k)


def _inv_magnitude(ctx, o, t):
  _inv_subset(ctx, o, t)
  for k, m in o["mask"].items():
    a = np.abs(ctx.theta[k])
    if m.any() and not m.all():
      assert a[m].max() <= a[~m].min(), k


def _inv_random_subset(ctx, o, t):
  _inv_subset(ctx, o, t)
  if t == 2:  # a new draw at every event
    first = ctx.outcome[1]["mask"]
    assert any(not np.array_equal(first[k], m) for k, m in o["mask"].items())


def _inv_fixed_subset(ctx, o, t):
  _inv_subset(ctx, o, t)
  for k, m in o["mask"].items():  # the mask drawn once by prepare, at every event
    np.testing.assert_array_equal(m, np.broadcast_to(o["fixed_mask"][k], m.shape), err_msg=k)
    np.testing.assert_array_equal(m, ctx.outcome[1]["mask"][k], err_msg=k)


def _inv_half_norm_scales(ctx, o, t):
  for k, x in o["r"].items():
    sel = np.zeros(x.shape, bool)
    if k.endswith("/scale"):
      sel = (np.arange(x.size) % 2 == 0).reshape(x.shape)
    np.testing.assert_array_equal(x, np.where(sel, ctx.fresh[k], ctx.theta[k]), err_msg=k)


INVARIANTS = {
    "standard": _inv_standard, "full": _inv_full, "shrink_perturb": _inv_shrink_perturb,
    "head": _inv_head, "layerwise": _inv_layerwise, "rescale_only": _inv_rescale_only,
    "random_subset": _inv_random_subset, "magnitude": _inv_magnitude,
    "fixed_subset": _inv_fixed_subset, "test_class_half_norm_scales": _inv_half_norm_scales,
    "redo": _inv_redo, "continual_backprop": _inv_continual_backprop,
}


@dataclasses.dataclass
class Ctx:
  model: models.Model
  hp: dict
  theta: dict
  theta1: dict
  fresh: dict
  old: dict
  outcome: dict


def test_every_registered_method_has_an_invariant_and_every_family_runs_with_batch_norm():
  assert set(methods.SPEC_METHODS) | {"rescale_only"} <= set(METHODS)
  assert [n for n in METHODS if n not in INVARIANTS] == [], "add the new method's invariant"
  assert len(FAMILIES) == len({n.removesuffix("_tiny") for n in models.names()})
  for family in FAMILIES:
    shapes = jax.eval_shape(_create(family).init, jax.random.key(0))
    assert ("batch_stats" in shapes) == (family != "mlp"), family


@pytest.mark.parametrize("family,s", _cases())
def test_method_invariants_on_every_family(family, s):
  fam, outcome = _family(family), _outcome(family, s)
  old = {c: _flat(tree) for c, tree in fam.variables.items()}
  if s.get().uses_normalization and not s.measure:
    old = _without_norms(old)
  ctx = Ctx(fam.model, dict(s.hparams), old["params"], _flat(fam.theta1),
            _flat(fam.fresh["params"]), old, outcome)
  for t in _stages(fam, s):
    o = outcome[t]
    # structure, shapes, dtypes of R's output and of every collection the event returns
    assert set(o["event"]) == set(old), (t, sorted(o["event"]))
    for c in old:
      assert o["event"][c].keys() == old[c].keys(), (t, c)
      for k, x in o["event"][c].items():
        assert x.shape == old[c][k].shape and x.dtype == old[c][k].dtype, (t, c, k)
        assert np.all(np.isfinite(x)), (t, c, k)
    assert o["r"].keys() == ctx.theta.keys()
    for k, x in o["r"].items():
      assert x.shape == ctx.theta[k].shape and x.dtype == ctx.theta[k].dtype, (t, k)
      # The event applies R: the same float32 arithmetic, compiled in another fusion, where a
      # multiply-add may round once less and a norm's sum of squares may be ordered otherwise
      # (NORM_RTOL); a wrong R, stage or key in the event moves entries by O(|θ| + |θ_init|).
      scale = np.abs(ctx.theta[k]) + np.abs(ctx.fresh[k])
      assert np.all(np.abs(o["event"]["params"][k] - x) <= NORM_RTOL * scale), (t, k)
    # The declared mask (or the probe of a method without one) is where θ_init has weight.
    for k, m in o["mask"].items():
      if s.method in UNIT_METHODS:  # the mask also holds the outgoing weights it zeroes
        fd = o["fresh_dependent"][k]
        assert not np.any(fd & ~m) and np.all(o["r"][k][m & ~fd] == 0), f"stage {t}: mask {k}"
        continue
      np.testing.assert_array_equal(m, o["fresh_dependent"][k], err_msg=f"stage {t}: mask {k}")
    INVARIANTS[s.method](ctx, o, t)
