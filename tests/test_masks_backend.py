"""The selection implementation per backend (reinit_jax/selection.py; [LW] DSD, WELSR, WELS).

'bracket' (the CPU default), 'sort' (the accelerators' default) and 'sort_batched' must give
identical masks for the same parameters and keys, so a run's masks do not depend on the backend;
'approx' selects exactly
round(p·n) entries; the choice is made at trace time from the argument (a method's
``Context.select_impl``), $REINIT_SELECT_IMPL, or the backend.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinit_jax import masks, selection


def _tree(seed=0):
  # Equal sizes (a group sorted in one call), many small sizes (the padded group, a different k per
  # row), heavy ties, a scalar and an empty leaf.
  rng = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
  return {"c1": {"kernel": f(3, 3, 8, 16), "bias": f(16)},
          "c2": {"kernel": jnp.asarray(np.round(rng.standard_normal((3, 3, 8, 16)) * 2) / 2)},
          "big": {"kernel": f(150, 130)}, "norm": {"scale": f(7), "offset": jnp.zeros((7,))},
          "head": {"kernel": f(16, 10), "bias": f(10)}, "s": jnp.float32(0.5),
          "empty": jnp.zeros((0, 4))}


def _stable_ref(values, fraction):
  v = np.asarray(values, np.float32).reshape(-1)
  scores = np.where(np.isnan(v), np.inf, np.abs(v))
  ref = np.zeros(v.size, bool)
  ref[np.argsort(scores, kind="stable")[:int(round(fraction * v.size))]] = True
  return ref.reshape(np.shape(values))


@pytest.mark.parametrize("fraction", [0.0, 0.3])
def test_bracket_and_sort_give_identical_masks(fraction):
  params = _tree()
  key = jax.random.key(11)
  run = jax.jit(lambda k, impl: (masks.smallest_magnitude(params, fraction, impl),
                                 masks.random_fraction(k, params, fraction, impl)),
                static_argnums=1)
  mag_b, rnd_b = run(key, "bracket")
  for path, m in jax.tree_util.tree_flatten_with_path(mag_b)[0]:
    name = masks.path_of(path)
    leaf = params
    for k in name.split("/"):
      leaf = leaf[k]
    np.testing.assert_array_equal(np.asarray(m), _stable_ref(leaf, fraction), err_msg=name)
  same = lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for impl in ("sort", "sort_batched"):
    mag_s, rnd_s = run(key, impl)
    jax.tree.map(same, mag_b, mag_s)
    jax.tree.map(same, rnd_b, rnd_s)
  counts = [int(np.asarray(m).sum()) for m in jax.tree.leaves(rnd_s)]
  assert counts == [int(round(fraction * np.size(x))) for x in jax.tree.leaves(params)]


@pytest.mark.parametrize("impl,sorts", [("sort", 4), ("sort_batched", 3)])
def test_sorting_paths_sort_once_per_tensor_or_size_and_loop_nowhere(impl, sorts):
  # Two 1,152-entry kernels ('sort': a sort each, 'sort_batched': one for both), the 150×130 kernel,
  # and the six tensors of <= 1,024 entries (bias 16, scale 7, offset 7, head 160, bias 10, scalar)
  # in one padded sort.
  params = _tree()
  jaxpr = str(jax.make_jaxpr(lambda p: masks.smallest_magnitude(p, 0.2, impl))(params))
  assert jaxpr.count(" sort[") == sorts and "while[" not in jaxpr
  jaxpr = str(jax.make_jaxpr(lambda p: masks.random_fraction(jax.random.key(0), p, 0.2, impl))(
      params))
  assert jaxpr.count(" sort[") == sorts and "while[" not in jaxpr
  # the CPU default keeps the counting search (a loop per large tensor, no full sort of them)
  jaxpr = str(jax.make_jaxpr(lambda p: masks.smallest_magnitude(p, 0.2))(params))
  assert "while[" in jaxpr


def test_approx_selects_exactly_k_and_on_cpu_the_smallest():
  # The 'approx' path is approximate only on TPU; jax falls back to an exact sort elsewhere, so on
  # the CPU the selected values are the k smallest (ties in any order).
  params = {k: v for k, v in _tree(1).items() if k in ("c1", "c2", "norm")}
  mask = masks.smallest_magnitude(params, 0.3, "approx")
  for m, x in zip(jax.tree.leaves(mask), jax.tree.leaves(params)):
    m, a = np.asarray(m), np.abs(np.asarray(x))
    assert int(m.sum()) == int(round(0.3 * a.size))
    if m.any() and (~m).any():
      assert a[m].max() <= a[~m].min()
  rnd = masks.random_fraction(jax.random.key(0), params, 0.3, "approx")
  exact = masks.random_fraction(jax.random.key(0), params, 0.3, "sort")
  for a, b in zip(jax.tree.leaves(rnd), jax.tree.leaves(exact)):
    a, b = np.asarray(a), np.asarray(b)
    assert a.sum() == b.sum() and (a & b).sum() >= selection.APPROX_RECALL * b.sum()


def test_choice_order_argument_then_environment_then_backend(monkeypatch):
  monkeypatch.delenv(selection.ENV_SELECT_IMPL, raising=False)
  assert jax.default_backend() == "cpu"
  assert masks.resolve_select_impl() == "bracket"  # 'auto' on the CPU
  monkeypatch.setenv(selection.ENV_SELECT_IMPL, "sort")
  assert masks.resolve_select_impl() == "sort"
  assert masks.resolve_select_impl("approx") == "approx"
  assert not hasattr(selection, "set_select_impl")  # no process-wide setting
  monkeypatch.setenv(selection.ENV_SELECT_IMPL, "auto")
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert masks.resolve_select_impl() == "sort"  # 'auto' off the CPU


@pytest.mark.parametrize("impl,present,absent", [("sort", " sort[", "while["),
                                                ("bracket", "while[", None)])
def test_context_choice_reaches_the_traced_method(impl, present, absent, monkeypatch):
  """``methods.Context.select_impl`` (set by the engine from reinit.select_impl) is what the
  magnitude / random_subset / fixed_subset masks trace; the default context leaves it to 'auto'."""
  from reinit_jax import methods
  monkeypatch.delenv(selection.ENV_SELECT_IMPL, raising=False)
  params = {"w": jnp.ones((20000,))}
  ctx = methods.Context(select_impl=impl)
  for name in ("magnitude", "random_subset"):
    R = methods.get(name)
    jaxpr = str(jax.make_jaxpr(lambda p: R.reinit_mask(p, 1, jax.random.key(0), ctx))(params))
    assert present in jaxpr and (absent is None or absent not in jaxpr), name
  prepared = methods.get("fixed_subset").prepare(jax.random.key(0), params, ctx)
  assert int(prepared.fixed_mask["w"].sum()) == 4000


@pytest.mark.parametrize("bad", ["fast", "", None, 1])
def test_bad_impl_is_one_clear_line(bad, monkeypatch):
  monkeypatch.delenv(selection.ENV_SELECT_IMPL, raising=False)
  if bad is not None:
    with pytest.raises(ValueError, match="select_impl must be one of") as e:
      masks.smallest_magnitude({"a": jnp.ones(3)}, 0.5, select_impl=bad)
    assert "\n" not in str(e.value)
  monkeypatch.setenv(selection.ENV_SELECT_IMPL, "quick")
  with pytest.raises(ValueError, match="REINIT_SELECT_IMPL must be one of"):
    masks.random_fraction(jax.random.key(0), {"a": jnp.ones(3)}, 0.5)
