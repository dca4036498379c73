"""Class test (issue 23): distillation's teacher, cached and live ([Z] §3.1).

In stage t >= 2 the teacher is the network at the end of stage t − 1, before the event re-initializes
it: not the re-initialized network, not an earlier stage's. Two paths distill from it
(reinit.distill_live): 'cached' computes the teacher's class probabilities on the un-augmented
training inputs once at the start of the stage (loop._teacher_probs → step.make_teacher_cache), the
training step gathers its batch's rows; 'live' runs the teacher forward inside the step on the same
(augmented) batch from the state's ``teacher``. With augmentation 'none' both see the same inputs, so
on the same batches they must train alike.

One tiny synthetic-task run per path (tests/train_helpers.py's config: an MLP, 64 examples, batches
of 16, so the cached rows are gathered by a shuffled index), 4 stages (3 events, every stage after
the first distills), 3 seeds on the run axis, `full` events (the re-initialized network is far from
the teacher). The runs are recorded (each event's input and output state, each train call's input
and output state and indices, each cached table) and checked against each other and by hand.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinit_jax import train
from reinit_jax.train import loop, build
from train_helpers import records, tiny_config

SEEDS = (0, 1, 2)
T = 4
BETA = 2.0


def _config(live):
  return tiny_config(method="full", distill=True, distill_live=live, distill_beta=BETA,
                     seeds=SEEDS, stages=T, epochs=2 * T, batch_size=16, learning_rate=0.2,
                     augmentation="none")


def _run_recording(c, workdir):
  """``train.run(c, workdir)``, recording host copies of every event's (before, after) states,
  every train call's (state in, indices, state out) and every cached teacher table."""
  rec = {"events": [], "calls": [], "tables": [], "run": []}

  class Recording(build.Built):
    def __init__(self, c_, pack=None):
      super().__init__(c_, pack)
      fns = self.compiled
      event_fn, teacher_cache, train_call = fns.event_fn, fns.teacher_cache, fns.train_call

      def event(state, *args):
        before = jax.device_get(state)  # before the call: the state is donated to it
        after = event_fn(state, *args)
        rec["events"].append((before, jax.device_get(after)))
        return after

      def cache(*args):
        out = teacher_cache(*args)
        rec["tables"].append(np.asarray(jax.device_get(out)))
        return out

      def call(state, x, y, tprobs, idx):
        before = jax.device_get(state)
        out, m = train_call(state, x, y, tprobs, idx)
        rec["calls"].append((before, np.asarray(jax.device_get(idx)), jax.device_get(out)))
        return out, m

      self.compiled = dataclasses.replace(fns, event_fn=event, teacher_cache=cache,
                                          train_call=call)
      self.unrecorded_train_call = train_call
      rec["run"].append(self)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(loop, "Built", Recording)
    summary = train.run(c, str(workdir))
  rec["run"], rec["summary"] = rec["run"][0], summary
  rec["train_rows"] = records(str(workdir), "train")
  return rec


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  out = {}
  for path in ("cached", "live"):
    out[path] = _run_recording(_config(path == "live"), tmp_path_factory.mktemp(path))
    r = out[path]["run"]
    assert r.compiled.distill_mode == path and out[path]["summary"]["events"] == T - 1
    # 8 steps per stage, one train call each
    assert r.geometry.epochs_per_stage == 2 and r.geometry.steps_per_epoch == [4] * T
  return out


def seed_slice(tree, s):
  return jax.tree.map(lambda a: np.asarray(a)[s], tree)


def leaves_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return (jax.tree.structure(a) == jax.tree.structure(b)
          and all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(la, lb)))


def probs(model, variables, x):
  return np.asarray(jax.nn.softmax(model.apply(variables, jnp.asarray(x))), np.float64)


def stage_calls(rec, t):
  return [c for c in rec["calls"] if int(c[0].stage[0]) == t]


@pytest.mark.parametrize("path", ["cached", "live"])
def test_state_teacher_is_the_network_before_each_event(runs, path):
  """After the event ending stage t the state's teacher is exactly (same run: bitwise) the
  variables that went into the event, for every seed; it differs from the re-initialized network
  and from the previous stage's teacher, and no training step changes it during the stage."""
  rec = runs[path]
  events = rec["events"]
  assert [int(b.stage[0]) for b, _ in events] == list(range(1, T))
  for i, (before, after) in enumerate(events):
    t = i + 1
    assert leaves_equal(after.teacher, before.variables), f"stage {t + 1}'s teacher"
    for s in range(len(SEEDS)):
      assert not leaves_equal(seed_slice(after.teacher, s), seed_slice(after.variables, s))
      if i:  # not stale: the end of stage t, not of stage t − 1
        assert not leaves_equal(seed_slice(after.teacher, s), seed_slice(events[i - 1][1].teacher, s))
    # the teacher rides unchanged through stage t + 1's training ...
    (into, _, out), = stage_calls(rec, t + 1)
    assert leaves_equal(into.teacher, after.teacher) and leaves_equal(out.teacher, after.teacher)
    # ... and the stage starts from the event's output
    assert leaves_equal(into.variables, after.variables)


def test_cached_targets_are_the_pre_event_network_on_unaugmented_inputs(runs):
  """Stage t's cached table (t >= 2) is softmax of the network at the end of stage t − 1 on the
  training inputs as stored (no augmentation), row i = example i, for every seed; not the
  re-initialized network's, not the previous stage's teacher's."""
  rec = runs["cached"]
  r = rec["run"]
  assert len(rec["tables"]) == T - 1  # stages 2..T; stage 1 uses zeros (β off)
  n = r.geometry.stage_examples[0]
  x = np.asarray(r.inputs.data.train(1).x)
  for t in range(2, T + 1):
    table = rec["tables"][t - 2]
    before, after = rec["events"][t - 2]
    for s in range(len(SEEDS)):
      want = probs(r.parts.model, seed_slice(before.variables, s), x)
      # Same float32 forward (eager here, jitted and batched there): logits agree to a few ulps
      # (~1e-6 relative), softmax probabilities in [0, 1] to ~1e-6 absolute.
      np.testing.assert_allclose(table[s, :n], want, rtol=1e-5, atol=1e-6,
                                 err_msg=f"stage {t}, seed {SEEDS[s]}")
      other = probs(r.parts.model, seed_slice(after.variables, s), x)
      assert np.max(np.abs(want - other)) > 0.05  # the re-initialized network is far from it
      if t >= 3:
        stale = probs(r.parts.model, seed_slice(rec["events"][t - 3][0].variables, s), x)
        assert np.max(np.abs(want - stale)) > 0.01  # a stage of training moved the teacher


def _kl_loss_by_hand(model, student, teacher, x, y):
  """CE + β·KL(teacher ‖ student), batch means, in float64 from float32 logits."""
  logits = np.asarray(model.apply(student, jnp.asarray(x)), np.float64)
  logits -= logits.max(-1, keepdims=True)
  log_q = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  p = probs(model, teacher, x)
  kl = np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - log_q), 0.0), -1)
  return -log_q[np.arange(len(y)), y].mean() + BETA * kl.mean()


@pytest.mark.parametrize("path", ["cached", "live"])
def test_first_step_of_every_stage_distills_from_the_pre_event_network(runs, path):
  """The built train call, run for one step from the state that starts stage t (the event's
  output), reports CE + β·KL(pre-event network ‖ student) on its batch, by hand; the live call with
  no table, the cached one gathering the stage's recorded table by the batch's indices."""
  rec = runs[path]
  r = rec["run"]
  x, y = r.inputs.arrays(lambda d: d.train(1))
  xh, yh = np.asarray(x), np.asarray(y)
  for t in range(2, T + 1):
    (into, idx, _), = stage_calls(rec, t)
    pre = rec["events"][t - 2][0].variables
    table = jnp.asarray(rec["tables"][t - 2]) if path == "cached" else None
    state = jax.device_put(into)  # the call donates its state: a fresh copy
    _, m = r.unrecorded_train_call(state, x, y, table, jnp.asarray(idx[:, :1]))
    loss = np.asarray(jax.device_get(m["loss"]))
    for s in range(len(SEEDS)):
      b = idx[s, 0]
      want = _kl_loss_by_hand(r.parts.model, seed_slice(into.variables, s), seed_slice(pre, s),
                              xh[b], yh[b])
      # float32 step (log-softmax, batch means) against float64 from the same float32 logits:
      # a few 1e-7 relative per term on a loss of order 1, 1e-4 leaves a wide margin and is far
      # below the β·KL (> 0.1 here) a wrong teacher changes.
      assert float(loss[s]) == pytest.approx(want, rel=1e-4), (path, t, SEEDS[s])
      wrong = _kl_loss_by_hand(r.parts.model, seed_slice(into.variables, s),
                               seed_slice(into.variables, s), xh[b], yh[b])
      assert abs(want - wrong) > 0.05  # the student as its own teacher would be seen


def test_live_and_cached_paths_train_alike(runs):
  """Augmentation 'none', the same batches: the live and the cached paths give the same losses
  and, after every stage, the same parameters, for every seed (and stage 1, before any teacher,
  bitwise the same: β is 0 there)."""
  c, l = runs["cached"], runs["live"]
  assert len(c["calls"]) == len(l["calls"]) == T
  for (ci, cidx, cout), (li, lidx, lout) in zip(c["calls"], l["calls"]):
    t = int(ci.stage[0])
    np.testing.assert_array_equal(cidx, lidx)  # the same batches
    if t == 1:
      assert leaves_equal(cout.variables, lout.variables)
      continue
    # The two teachers' probabilities are the same float32 forward of the same network and
    # inputs, compiled in different programs (all 64 rows in the cache, batches of 16 in the
    # step): they may differ by a few ulps (~1e-7 relative). Each step's gradient then moves by
    # β·Δp ~ 1e-6, 8 steps at learning rate 0.2 with momentum 0.9 and the next stage (which starts
    # from this one) amplify it: measured ≤ 6e-6 on weights of order 0.1-1 (losses ≤ 3e-6 on ~5).
    # 1e-4 absolute + 1e-4 relative leaves >10× for other CPUs' matmul blocking; a wrong teacher
    # moves the weights by far more (every stage moves them by > 0.05, checked below).
    for pc, pl in zip(jax.tree.leaves(cout.variables["params"]),
                      jax.tree.leaves(lout.variables["params"])):
      np.testing.assert_allclose(np.asarray(pc), np.asarray(pl), rtol=1e-4, atol=1e-4,
                                 err_msg=f"stage {t}")
  rows = lambda rec: [(r_["stage"], r_["seed"], r_["loss"]) for r_ in rec["train_rows"]]
  assert [r_[:2] for r_ in rows(c)] == [r_[:2] for r_ in rows(l)]
  for (t, seed, a), (_, _, b) in zip(rows(c), rows(l)):
    assert a == pytest.approx(b, rel=1e-5, abs=1e-6), (t, seed)
  # not a vacuous tolerance: every stage's training moves the weights far more than it
  for into, _, out in c["calls"]:
    assert max(np.max(np.abs(np.asarray(u) - np.asarray(v))) for u, v in zip(
        jax.tree.leaves(into.variables["params"]), jax.tree.leaves(out.variables["params"]))) > 0.05
