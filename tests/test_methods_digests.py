"""Every built-in method gives bitwise the results it gave before the registration refactor.

The digests below were computed once from the code before ``methods.register`` took declared
hyperparameters, masks, prepare and normalize hooks (jax 0.10.2, XLA CPU): for each method, the
SHA-256 of R's output, of its re-initialization mask and of the whole event (``events.apply_event``:
parameters, layer-wise normalizations, optimizer state under the 'mask' policy) on a fixed MLP, at
stages 1 and 3 (stage traced, as in training). A change of any bit in any method fails here.
"""

import hashlib

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


def _digest(tree) -> str:
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    a = np.asarray(leaf)
    h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
  return h.hexdigest()[:16]


def digests(names=BUILTINS) -> dict[str, str]:
  """``{'<method>/<what>/<stage>': digest}`` for R, its mask and the whole event."""
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
      out[f"{name}/R/{t}"] = _digest(new)
      out[f"{name}/mask/{t}"] = _digest(mask)
      out[f"{name}/event/{t}"] = _digest(event)
  return out


RECORDED = {
    "standard/R/1": "3c2686539b5516b3",
    "standard/mask/1": "ee6d8b52338f65f1",
    "standard/event/1": "da05974e5232bb76",
    "standard/R/3": "3c2686539b5516b3",
    "standard/mask/3": "ee6d8b52338f65f1",
    "standard/event/3": "da05974e5232bb76",
    "shrink_perturb/R/1": "271fead8d283d180",
    "shrink_perturb/mask/1": "088dfdbe73f1636b",
    "shrink_perturb/event/1": "014206a91868d458",
    "shrink_perturb/R/3": "271fead8d283d180",
    "shrink_perturb/mask/3": "088dfdbe73f1636b",
    "shrink_perturb/event/3": "014206a91868d458",
    "layerwise/R/1": "36d79b49ebcf3a64",
    "layerwise/mask/1": "2b1c61e991203d17",
    "layerwise/event/1": "35e78103d36ae0df",
    "layerwise/R/3": "12e98a7e8146a13d",
    "layerwise/mask/3": "235b064a77bce8ce",
    "layerwise/event/3": "bbb197c9ff0cbd7d",
    "random_subset/R/1": "19e81f868c65fe62",
    "random_subset/mask/1": "fed544e16f47adbd",
    "random_subset/event/1": "7c0ca2fde4a7e6e6",
    "random_subset/R/3": "612688becf09fb9e",
    "random_subset/mask/3": "b0d17f7e625e623f",
    "random_subset/event/3": "013355b9eda60609",
    "magnitude/R/1": "681e66ba42e52cce",
    "magnitude/mask/1": "43c001f07d48da0b",
    "magnitude/event/1": "411a878728bc99f7",
    "magnitude/R/3": "681e66ba42e52cce",
    "magnitude/mask/3": "43c001f07d48da0b",
    "magnitude/event/3": "411a878728bc99f7",
    "fixed_subset/R/1": "dcb364d2bdad0783",
    "fixed_subset/mask/1": "f087c66811d152a8",
    "fixed_subset/event/1": "3a0e01ccb8513a56",
    "fixed_subset/R/3": "dcb364d2bdad0783",
    "fixed_subset/mask/3": "f087c66811d152a8",
    "fixed_subset/event/3": "3a0e01ccb8513a56",
    "head/R/1": "d113df1523ee1ff1",
    "head/mask/1": "235b064a77bce8ce",
    "head/event/1": "94b083a3b262f6dc",
    "head/R/3": "d113df1523ee1ff1",
    "head/mask/3": "235b064a77bce8ce",
    "head/event/3": "94b083a3b262f6dc",
    "full/R/1": "1474f5204e29e341",
    "full/mask/1": "088dfdbe73f1636b",
    "full/event/1": "5ea3af8383085d56",
    "full/R/3": "1474f5204e29e341",
    "full/mask/3": "088dfdbe73f1636b",
    "full/event/3": "5ea3af8383085d56",
    "rescale_only/R/1": "c9dd48b1e9e0400d",
    "rescale_only/mask/1": "ee6d8b52338f65f1",
    "rescale_only/event/1": "afdd10a7736bdc6c",
    "rescale_only/R/3": "c9dd48b1e9e0400d",
    "rescale_only/mask/3": "ee6d8b52338f65f1",
    "rescale_only/event/3": "afdd10a7736bdc6c",
}


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="digests recorded on XLA CPU")
def test_every_builtin_method_is_bitwise_unchanged():
  got = digests()
  assert set(got) == set(RECORDED)
  changed = sorted(k for k in RECORDED if got[k] != RECORDED[k])
  assert not changed, changed


if __name__ == "__main__":  # prints the table above from the current code
  for k, d in digests().items():
    print(f'    "{k}": "{d}",')
