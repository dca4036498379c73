"""Every built-in method gives the results it gave before the registration refactor.

For each method, R's output, its re-initialization mask and the whole event (``events.apply_event``:
parameters, layer-wise normalizations, optimizer state under the 'mask' policy) on a fixed MLP, at
stages 1 and 3 (stage traced, as in training), are compared with values recorded from the code
before ``methods.register`` took declared hyperparameters, masks, prepare and normalize hooks.

The recorded values are portable, not float bits: XLA:CPU picks kernels by the CPU's features
(AVX-512, AVX2, FMA or not), so the same program gives float32 results that differ in the last bits
from one x86 machine to the next. Each float leaf is recorded as four projections onto fixed
pseudo-random Gaussian vectors (numpy's PCG64, identical everywhere) and checked with a tolerance;
boolean and integer leaves (masks, step counts) are decisions, recorded exactly.

Tolerance: every entry here is a few float32 operations from the inputs (a norm over at most 4,096
entries, a scale, a blend λθ + γθ_init), each within a few ulps (eps = 1.2e-7) of the exact value
on any machine: a projection may move by a few ulps of Σ|w||x|. Measured with XLA's
``--xla_cpu_max_isa`` at AVX-512, AVX2, AVX and SSE4.2 on one machine: entries differ by at most
4e-7 relative, 2e-5 where λθ + γθ_init nearly cancels, i.e. projections move by < 1e-6 of Σ|w||x|.
RTOL = 1e-5 of Σ|w||x| leaves a 10× margin and still fails when a single entry of a 4,096-entry
kernel changes by 10% of its size (that entry alone moves a projection by ~2.4e-5 of Σ|w||x|).
"""

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reinit_jax import events, methods, models

BUILTINS = ("standard", "shrink_perturb", "layerwise", "random_subset", "magnitude",
            "fixed_subset", "head", "full", "rescale_only")
HPARAMS = {"shrink_perturb": {"shrink": 0.6, "perturb": 0.3}, "layerwise": {"events_per_block": 2},
           "random_subset": {"fraction": 0.3}, "magnitude": {"fraction": 0.25},
           "fixed_subset": {"fraction": 0.35}}
PROJECTIONS = 4
RTOL = 1e-5  # of Σ|w||x| per projection: see the module docstring for the arithmetic.
# The file holds the float bits of the code before the refactor: on this machine, with AVX2 kernels
# (as on the machine of the earlier sha256 digests, which that run reproduced bit for bit).
RECORDED_ON = ("Intel Xeon (Sapphire Rapids) with XLA_FLAGS=--xla_cpu_max_isa=AVX2, jax/jaxlib "
               "0.10.2, 2026-12-05")


def _weights(size: int) -> np.ndarray:
  """(PROJECTIONS, size) Gaussian weights, the same on every machine (PCG64 is specified)."""
  return np.random.default_rng([size, 23]).standard_normal((PROJECTIONS, size))


def _fingerprint(tree) -> list:
  """Per leaf: ['f', projections w·x, scales Σ|w||x|] for floats, ['x', sha256] for the rest."""
  out = []
  for leaf in jax.tree.leaves(tree):
    a = np.asarray(leaf)
    if np.issubdtype(a.dtype, np.floating):
      w, x = _weights(a.size), a.astype(np.float64).ravel()
      out.append(["f", [float(v) for v in w @ x], [float(v) for v in np.abs(w) @ np.abs(x)]])
    else:
      h = hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
      out.append(["x", h.hexdigest()[:16]])
  return out


def fingerprints(names=BUILTINS) -> dict[str, list]:
  """``{'<method>/<what>/<stage>': fingerprint}`` for R, its mask and the whole event."""
  model = models.create("mlp", 8)
  v = model.init(jax.random.key(0))
  trained = dict(v, params=jax.tree.map(lambda p: 1.5 * p + 0.01, v["params"]))
  fresh = model.init(jax.random.key(1))
  ctx = methods.make_context(model, v["params"])
  tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9))
  opt_state = tx.init(trained["params"])
  _, opt_state = tx.update(jax.tree.map(jnp.ones_like, trained["params"]), opt_state,
                         trained["params"])
  x = jax.random.normal(jax.random.key(2), (16, *model.input_shape))
  key = jax.random.key(3)
  out = {}
  for name in names:
    R = methods.get(name, **HPARAMS.get(name, {}))
    c = R.prepare(jax.random.key(4), v["params"], ctx)

    @jax.jit
    def run(stage, R=R, c=c):
      new = R(trained["params"], fresh["params"], stage, key, c)
      mask = R.reinit_mask(trained["params"], stage, key, c)
      event = events.apply_event(R, model, trained, fresh, opt_state, tx, stage, key, c, x,
                                 optimizer_policy="mask")
      return new, mask, event

    for t in (1, 3):
      new, mask, event = run(jnp.int32(t))
      out[f"{name}/R/{t}"] = _fingerprint(new)
      out[f"{name}/mask/{t}"] = _fingerprint(mask)
      out[f"{name}/event/{t}"] = _fingerprint(event)
  return out


RECORDED_FILE = os.path.join(os.path.dirname(__file__), "data", "methods_recorded.json")


def _differences(got: list, recorded: list) -> list[str]:
  """Leaves whose fingerprints differ beyond RTOL (exactly, for booleans and integers)."""
  if len(got) != len(recorded):
    return [f"{len(got)} leaves, recorded {len(recorded)}"]
  bad = []
  for i, (g, r) in enumerate(zip(got, recorded)):
    if g[0] != r[0] or (g[0] == "x" and g[1] != r[1]):
      bad.append(f"leaf {i}: {g[:2]} != {r[:2]}")
    elif g[0] == "f":
      worst = max(abs(gv - rv) / max(sv, 1e-300) for gv, rv, sv in zip(g[1], r[1], r[2]))
      if worst > RTOL:
        bad.append(f"leaf {i}: a projection moved by {worst:.1e} of Σ|w||x| (RTOL {RTOL:g})")
  return bad


def test_every_builtin_method_is_unchanged():
  """R, mask and event of every built-in method equal the recorded values within RTOL."""
  with open(RECORDED_FILE) as f:
    recorded = json.load(f)["fingerprints"]
  got = fingerprints()
  assert set(got) == set(recorded)
  changed = {k: d for k in sorted(recorded) if (d := _differences(got[k], recorded[k]))}
  assert not changed, f"differ from the values recorded on {RECORDED_ON}: {changed}"


def test_the_tolerance_sees_a_single_changed_entry():
  """A 10% change of one kernel entry moves a fingerprint beyond RTOL; a 1-ulp change does not."""
  kernel = np.asarray(models.create("mlp", 8).init(jax.random.key(0))["params"]["dense1"]["kernel"])
  base = _fingerprint(kernel)
  big = kernel.copy()
  i = int(np.argmax(np.abs(big)))  # the largest entry; a typical one is checked below
  j = big.size // 3
  for idx, factor in ((i, 1.1), (j, 1.1)):
    moved = big.copy().ravel()
    moved[idx] *= factor
    assert _differences(_fingerprint(moved.reshape(big.shape)), base), (idx, factor)
  ulp = np.nextafter(kernel, np.float32(np.inf), dtype=np.float32)  # every entry one ulp up
  assert not _differences(_fingerprint(ulp), base)


if __name__ == "__main__":  # PYTHONPATH=. python tests/test_methods_digests.py rewrites the record
  os.makedirs(os.path.dirname(RECORDED_FILE), exist_ok=True)
  with open(RECORDED_FILE, "w") as f:
    json.dump({"recorded_on": RECORDED_ON, "fingerprints": fingerprints()}, f)
  print(f"wrote {RECORDED_FILE}")
