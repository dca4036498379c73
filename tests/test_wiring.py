"""The trainer's wiring: the values that flow between the engine's pieces, not just step counts.

Each test guards a bug that silently changes a study's numbers and that the library tests cannot see
(tools/mutants.py applies each bug and checks that a test here fails): θ_init per (seed, stage) [Z]
§3, a `full` event giving exactly the model's fresh initialization [AA] §4, the layer-wise
normalization (z − μ)/σ [LW] §3, fixed_subset's mask drawn per seed [LW], the optimizer policy at
events, KL(teacher ‖ student) and the teacher of stage t + 1 [Z] §3.1.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reinit_jax import train
from reinit_jax.train import feed, loop, build, validation
from reinit_jax.train.loss import distill_kl, objective
from reinit_jax.train.state import stage_draw
from train_helpers import count_builds, tiny_config


def tiny(**overrides):
  """tests/train_helpers.py's tiny synthetic config at 3 stages of 1 step, SGD momentum 0.9 (so
  the optimizer policies have a trace to keep or reset)."""
  return tiny_config(**{"epochs": 3, "momentum": 0.9, **overrides})


def built(c):
  """The built run (data, model, jitted pieces) of config ``c``, no training."""
  return build.Built(validation.check(c))


def run_recording(c, workdir, monkeypatch):
  """``train.run(c, workdir)`` recording, as host copies, every event's input and output state and
  every cached teacher table; returns (built run, summary, events [(before, after)], teachers)."""
  events, teachers, runs = [], [], []

  class Recording(build.Built):
    def __init__(self, c_, pack=None):
      super().__init__(c_, pack)
      event_fn, teacher_cache = self.compiled.event_fn, self.compiled.teacher_cache

      def event(state, *args):
        before = jax.device_get(state)  # before the call: the state is donated to it
        after = event_fn(state, *args)
        events.append((before, jax.device_get(after)))
        return after

      def cache(*args):
        out = teacher_cache(*args)
        teachers.append(np.asarray(jax.device_get(out)))
        return out

      self.compiled = dataclasses.replace(self.compiled, event_fn=event, teacher_cache=cache)
      runs.append(self)

  monkeypatch.setattr(loop, "Built", Recording)
  summary = train.run(c, str(workdir))
  return runs[0], summary, events, teachers


def seed_slice(tree, s):
  """Seed ``s``'s part of a tree whose leaves carry the seed axis first (S, ...)."""
  return jax.tree.map(lambda a: np.asarray(a)[s], tree)


def train_x(r):
  """Stage 1's training inputs (N, 128) and labels (N,) on the device, and N."""
  x, y = r.inputs.arrays(lambda d: d.train(1))
  return x, y, r.geometry.stage_examples[0]


def assert_trees_equal(a, b):
  """Same structure and bitwise equal leaves."""
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for u, v in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def trees_differ(a, b):
  """Some leaf of ``a`` differs from ``b``'s somewhere."""
  return any(not np.array_equal(np.asarray(u), np.asarray(v))
             for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_full_events_set_exactly_the_models_own_draw_for_seed_and_stage(tmp_path, monkeypatch):
  """θ_init at the event after stage t is model.init keyed by (seed, t): a new draw at every event
  and for every seed, unscaled (a ×0.4 on θ_init was a public re-init bug), equal after `full`."""
  seeds = (0, 1)
  r, s, events, _ = run_recording(tiny(method="full", seeds=seeds), tmp_path, monkeypatch)
  assert s["events"] == 2 and len(events) == 2
  draw = {(seed, t): stage_draw(r.parts.model, seed, t)["params"] for seed in seeds
          for t in (0, 1, 2)}
  first = jax.device_get(r.init().variables["params"])
  for i, seed in enumerate(seeds):
    assert_trees_equal(seed_slice(first, i), draw[(seed, 0)])  # θ_1 is the (seed, 0) draw
    for t, (before, after) in enumerate(events, start=1):
      assert int(before.stage[i]) == t and int(after.stage[i]) == t + 1
      assert_trees_equal(seed_slice(after.variables["params"], i), draw[(seed, t)])
  # every (seed, stage) draws anew ...
  keys = sorted(draw)
  for a in range(len(keys)):
    for b in range(a + 1, len(keys)):
      assert trees_differ(draw[keys[a]], draw[keys[b]]), (keys[a], keys[b])
  # ... from the model's own initializer: He normal, variance 2/fan_in ([HR])
  for seed, t in keys:
    for name in ("dense1", "dense2", "dense3"):
      w = np.asarray(draw[(seed, t)][name]["kernel"])
      assert np.std(w) == pytest.approx(np.sqrt(2.0 / w.shape[0]), rel=0.15), (seed, t, name)
      assert np.all(np.asarray(draw[(seed, t)][name]["bias"]) == 0)


def test_layerwise_normalization_is_z_minus_mu_over_sigma_in_the_forward_pass():
  """After the layer-wise event of stage 1 the norm after block 1 holds μ, σ of block 1's output on
  training data, and the model's forward pass divides by σ: its output there is (z − μ)/σ, mean 0
  and standard deviation 1 on the training inputs ([LW] §3)."""
  r = built(tiny(method="layerwise", norm_batch_size=4096))
  x, _, n = train_x(r)
  state = r.compiled.event_fn(r.init(), x, jnp.int32(n))
  v = seed_slice(jax.device_get(state.variables), 0)
  norms = v["layerwise_norm"]
  for name in ("lwnorm2", "lwnorm3"):  # only the norm after block k = 1 is set
    assert float(norms[name]["mu"]) == 0.0 and float(norms[name]["sigma"]) == 1.0
  mu, sigma = float(norms["lwnorm1"]["mu"]), float(norms["lwnorm1"]["sigma"])
  _, inter = r.parts.model.module.apply(v, x, train=False, capture_intermediates=True,
                                  mutable=["intermediates"])
  z = np.asarray(inter["intermediates"]["lwnorm1"]["raw"][0], np.float64)
  out = np.asarray(inter["intermediates"]["lwnorm1"]["__call__"][0], np.float64)
  # measured on training rows (4096 draws of the 64): the training set's statistics
  assert mu == pytest.approx(z.mean(), rel=0.05) and sigma == pytest.approx(z.std(), rel=0.05)
  assert abs(sigma - 1.0) > 0.1  # so that (z − μ)·σ and (z − μ)/σ differ
  np.testing.assert_allclose(out, (z - mu) / sigma, rtol=1e-5, atol=1e-6)
  assert out.mean() == pytest.approx(0.0, abs=0.05) and out.std() == pytest.approx(1.0, abs=0.05)


def test_fixed_subset_mask_is_drawn_from_each_seeds_own_key():
  """fixed_subset draws its mask once per seed from that seed's key ([LW] WELS): the seeds of one
  run get different masks, seed 1 gets the mask it gets alone, and the event re-initializes exactly
  the entries of the seed's own mask."""
  kw = dict(method="fixed_subset", reinit__hparams={"fraction": 0.5})
  both = built(tiny(seeds=(0, 1), **kw))
  alone = built(tiny(seeds=(1,), seed=0, **kw))
  state = both.init()
  mask = jax.device_get(state.context.fixed_mask)
  assert trees_differ(seed_slice(mask, 0), seed_slice(mask, 1))
  assert_trees_equal(seed_slice(mask, 1),
                     seed_slice(jax.device_get(alone.init().context.fixed_mask), 0))
  before = jax.device_get(state.variables["params"])
  x, _, n = train_x(both)
  after = jax.device_get(both.compiled.event_fn(state, x, jnp.int32(n)).variables["params"])
  for p, q, m in zip(jax.tree.leaves(before), jax.tree.leaves(after), jax.tree.leaves(mask)):
    if np.ndim(p) == 3:  # kernels (S, in, out); biases start at 0 in θ_1 and θ_init alike
      np.testing.assert_array_equal(np.asarray(p) != np.asarray(q), np.asarray(m))


@pytest.mark.parametrize("policy", ["reset", "keep", "mask"])
def test_optimizer_policy_reaches_the_event(policy):
  """reinit.optimizer_policy decides the momentum after an event: zero ('reset'), as it was
  ('keep'), zero exactly where θ_init entered θ ('mask')."""
  r = built(tiny(method="fixed_subset", reinit__hparams={"fraction": 0.5},
                 optimizer_policy=policy, learning_rate=0.1))
  x, y, n = train_x(r)
  idx = jnp.asarray(feed.train_indices(r.inputs.seeds, 0, 2, n, n))
  state, _ = r.compiled.train_call(r.init(), x, y, None, idx)
  trace = lambda st: jax.device_get(optax.tree_utils.tree_get(st.opt_state, "trace"))
  before, mask = trace(state), jax.device_get(state.context.fixed_mask)
  assert jax.tree.structure(before) == jax.tree.structure(mask)  # SGD keeps a momentum trace
  assert all(np.mean(np.asarray(m) != 0) > 0.9 for m in jax.tree.leaves(before)
             if np.size(m) > 8 * 8)  # two steps of momentum 0.9: a trace on every weight
  after = trace(r.compiled.event_fn(state, x, jnp.int32(n)))
  for b, a, m in zip(jax.tree.leaves(before), jax.tree.leaves(after), jax.tree.leaves(mask)):
    b, a = np.asarray(b), np.asarray(a)
    want = {"reset": np.zeros_like(b), "keep": b, "mask": np.where(m, 0.0, b)}[policy]
    np.testing.assert_array_equal(a, want)


def _kl_by_hand(p, logits):
  q = np.exp(logits - logits.max(-1, keepdims=True))
  q /= q.sum(-1, keepdims=True)
  terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q)), 0.0)
  return terms.sum(-1), q


def test_distill_kl_is_kl_teacher_to_student_by_hand():
  """distill_kl(p, logits) = Σ p·(log p − log q), q = softmax(logits): KL(teacher ‖ student) [Z]
  §3.1, with 0·log 0 = 0; lopsided distributions make the reversed KL far from it."""
  p = np.array([[0.97, 0.02, 0.01, 0.0], [0.01, 0.01, 0.08, 0.9], [0.5, 0.5, 0.0, 0.0]])
  logits = np.array([[0.0, 2.0, 1.0, -1.0], [3.0, 0.0, 0.0, 0.0], [-2.0, 4.0, 0.5, 1.0]])
  want, q = _kl_by_hand(p, logits)
  reverse = np.sum(q * (np.log(q) - np.log(np.maximum(p, 1e-30))), -1)
  assert np.all(np.abs(reverse - want) > 0.5)
  got = np.asarray(distill_kl(jnp.asarray(p, jnp.float32), jnp.asarray(logits, jnp.float32)))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  labels = jnp.asarray([1, 3, 0])
  loss, (ce, _) = objective(jnp.asarray(logits, jnp.float32), labels, jnp.asarray(p, jnp.float32),
                            2.0)
  assert float(loss) == pytest.approx(float(ce) + 2.0 * want.mean(), rel=1e-5)


def test_next_stages_teacher_is_the_network_before_the_event(tmp_path, monkeypatch):
  """Stage t + 1's cached teacher probabilities are softmax of the network at the end of stage t
  (before the event re-initializes it), and stage t + 1's first loss is CE + β·KL(teacher ‖
  student) of the post-event network ([Z] §3.1)."""
  beta = 2.0
  r, _, events, teachers = run_recording(
    tiny(method="full", distill=True, distill_beta=beta, seeds=(0, 1), learning_rate=0.5),
    tmp_path, monkeypatch)
  assert len(events) == 2 and len(teachers) == 2  # stages 2 and 3
  x, y, n = train_x(r)
  x, y = np.asarray(x), np.asarray(y)
  rows = [row for row in train_rows(tmp_path) if row["stage"] == 2]
  for t, ((before, after), probs) in enumerate(zip(events, teachers), start=1):
    for s in range(2):
      pre = seed_slice(before.variables, s)
      post = seed_slice(after.variables, s)
      want = np.asarray(jax.nn.softmax(r.parts.model.apply(pre, x)))
      other = np.asarray(jax.nn.softmax(r.parts.model.apply(post, x)))
      np.testing.assert_allclose(probs[s, :n], want, rtol=1e-5, atol=1e-6)
      assert np.max(np.abs(want - other)) > 0.05
      if t == 1:  # the loss of stage 2's one step, by hand from the two networks
        logits = np.asarray(r.parts.model.apply(post, x), np.float64)
        kl, q = _kl_by_hand(np.asarray(want, np.float64), logits)
        ce = -np.log(q[np.arange(n), y]).mean()
        row = [w for w in rows if w["seed"] == r.inputs.seeds[s]][0]
        assert row["loss"] == pytest.approx(ce + beta * kl.mean(), rel=1e-4)


def train_rows(workdir):
  """The training rows of ``workdir``'s metrics.jsonl."""
  with open(workdir / "metrics.jsonl") as f:
    return [row for row in map(json.loads, f) if row["split"] == "train"]


@pytest.mark.parametrize("entry,overrides,methods_built", [
  ("run", {}, 1),  # the default method as stage events (an MLP on the synthetic task)
  ("run", {"method": "redo", "every_steps": 2, "optimizer": "adam"}, 1),
  ("study", {"method": ("standard", "shrink_perturb")}, 2),  # launch.py's path: a study
], ids=["stage_events", "step_level_redo", "study_of_two"])
def test_model_method_and_optimizer_are_built_once(tmp_path, monkeypatch, entry, overrides,
                                                   methods_built):
  """Validation builds them from the config (the input shape from the data registry, before any
  data is read) and the runs use those: one model and one optimizer per run or study, one build
  of each method."""
  from reinit_jax.launch import study
  from reinit_jax.train import schedules
  calls = count_builds(monkeypatch, schedules, "make_optimizer")
  if entry == "run":
    summaries = [train.run(tiny(**overrides), str(tmp_path))]
  else:
    summaries = list(study.run_study(tiny(**overrides), str(tmp_path)).values())
  assert len(summaries) == methods_built and all(s["steps"] > 0 for s in summaries)
  assert calls == {"model": 1, "method": methods_built, "optimizer": 1}


def test_model_input_shape_must_agree_with_the_data():
  """The model is built before the data is read, with the shape the data registry gives: an
  input_shape option that disagrees fails in one line naming the field."""
  with pytest.raises(ValueError, match=r"config\.model\.options=.*input_shape left out or \(128,\)"):
    validation.check(tiny(model__options={"input_shape": (64,)}))
  checked = validation.check(tiny(model__options={"input_shape": (128,)}))
  assert tuple(checked.model.input_shape) == (128,)


def test_a_point_alone_trains_its_resolved_config(tmp_path, monkeypatch):
  """``train.run`` on a config as written: its pack of one holds the resolved config (the [Z]
  setting preset applied), the one validation checked, from which build reads the runs' seeds and
  data; never the config as written."""
  c = tiny_config(optim__weight_decay=0.01, optim__setting="none")
  seen = []

  class Spy(build.Built):
    def __init__(self, checked, pack=None):
      seen.append((checked, pack))
      raise RuntimeError("built")

  monkeypatch.setattr(loop, "Built", Spy)
  with pytest.raises(RuntimeError, match="built"):
    train.run(c, str(tmp_path / "run"))
  checked, pack = seen[0]
  assert c.optim.weight_decay == 0.01 and pack.configs[0].optim.weight_decay == 0.0  # Ø: no L2
  assert pack.configs[0].to_dict() == checked.config.to_dict()
  assert pack.points == ["run"] and pack.hyper == {}
