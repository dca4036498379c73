"""Class tests of learning-rate schedules (issue #23): every schedule kind × staged and online stages
× every optimizer policy at events, and resume at any step of every kind.

The per-stage cosine used to be tested with equal stages only, and resume mid-stage with 'cosine'
and 'constant' only. Here the kinds and the policies are read from the config schema
(``train/config.py``), so a kind or a policy added there is swept here (and a kind without a closed
form below fails until one is written). Two stage geometries:

* staged: full batch, T equal stages of E steps;
* online: ``data.chunks = T`` with a batch size, so stage t sees chunks 1..t and has t times the
  steps of stage 1 ([AA] §3): every stage longer than the last.

1. The learning rate the optimizer *applies* at every step equals the closed form, written here in
   numpy from the geometry alone: the train step is built with a spy optimizer that hands back the
   update direction u it produced (optimizers are built at lr = 1, ``schedules.py``) and reports,
   per step, θ before and after; the applied lr is ⟨Δθ, u⟩ / ⟨u, u⟩ (θ' = θ + lr·u).
2. A run stopped at a random call boundary (mid-stage and just at a stage end among them) and
   re-run ends bitwise where the uninterrupted run ends (params digest and every metrics row).
"""

import ast
import contextlib

import jax
import numpy as np
import optax
import pytest

from reinit_jax import train
from reinit_jax.train import config as config_
from reinit_jax.train import step as step_
from train_helpers import forget_jitted, records, tiny_config


def allowed(dotted):
  """The allowed values of a one-of field, from the schema itself (its ``allowed`` text lists
  their reprs); each must pass the field's own check."""
  section, name = dotted.split(".")
  f = config_.SCHEMA[section][name]
  values = ast.literal_eval(f"[{f.allowed}]")
  assert values and all(f.check(v) for v in values), (dotted, f.allowed)
  return values


KINDS = allowed("optim.schedule")
POLICIES = allowed("reinit.optimizer_policy")

BASE_LR, T = 0.1, 3
# staged: full batch over 64 examples, T·E = 12 epochs = 12 steps, 4 per stage.
STAGED = dict(epochs=12, stages=T, synthetic_train=64)
# online: 48 examples in T chunks of 16, batch 8, E = 2 epochs per stage: stage t sees 16·t
# examples, 2·t steps an epoch, 4·t steps in all (4, 8, 12).
ONLINE = dict(epochs=2 * T, stages=T, chunks=T, batch_size=8, synthetic_train=48)
MODES = {"staged": STAGED, "online": ONLINE}


def stage_lengths(mode):
  """Steps of each stage, from the geometry above (not from the library)."""
  if mode == "staged":
    return [STAGED["epochs"] // T] * T
  E = ONLINE["epochs"] // T
  per_chunk = ONLINE["synthetic_train"] // T
  return [(per_chunk * t // ONLINE["batch_size"]) * E for t in range(1, T + 1)]


def half_cosine(k, n):
  """0.5·(1 + cos(π·k/n)): from 1 at k = 0 down to 0 at k = n."""
  return 0.5 * (1.0 + np.cos(np.pi * min(k / n, 1.0)))


def closed_form(kind, lengths):
  """[(global step, stage, step in stage, lr)] of every step of the run, in float64."""
  total = sum(lengths)
  out, step = [], 0
  for t, n in enumerate(lengths, start=1):
    for k in range(n):
      if kind == "constant":
        lr = BASE_LR
      elif kind == "cosine":  # one annealing over the whole budget, read on the global step
        lr = BASE_LR * half_cosine(step, total)
      elif kind == "cosine_per_stage":  # restarts at every event, over the stage's own length
        lr = BASE_LR * half_cosine(k, n)
      else:
        raise AssertionError(f"schedule kind {kind!r} (config schema) has no closed form in "
                             "this test: write it in closed_form()")
      out.append((step, t, k, lr))
      step += 1
  return out


# --------------------------------------------------------------------------- observing the step


@contextlib.contextmanager
def spying_steps():
  """While active, every train step built (``step.make_step``) reports each step of each seed:
  ``seen[(seed, step)] = dict(stage, step_in_stage, applied, reported)``. ``applied`` is the lr
  that moved θ: ⟨Δθ, u⟩/⟨u, u⟩ (θ' = θ + lr·u), u the optimizer's update at lr = 1, the very u
  the step scales (the spy optimizer hands it back from inside the trace); ``reported``: the lr in
  the step's metrics. ``seen`` is cleared by the caller between runs. The jitted functions built
  meanwhile are forgotten on both ends (train/compiled.py caches them per process: other tests must never
  reuse a spying step)."""
  seen = {}
  orig = step_.make_step

  def record(seed, step, step_in_stage, stage, before, after, u, lr):
    d = np.concatenate([(np.asarray(a, np.float64) - np.asarray(b, np.float64)).ravel()
                        for a, b in zip(after, before)])
    u = np.concatenate([np.asarray(x, np.float64).ravel() for x in u])
    key = (int(seed), int(step))
    assert key not in seen, f"step {key} reported twice"
    seen[key] = dict(stage=int(stage), step_in_stage=int(step_in_stage),
                     applied=float(np.dot(d, u) / np.dot(u, u)), reported=float(lr))

  def make_step(model, tx, lr_fn, augment, **kw):
    held = []

    def update(grads, opt_state, params=None):
      u, opt_state = tx.update(grads, opt_state, params)
      held.append(u)
      return u, opt_state

    inner = orig(model, optax.GradientTransformation(tx.init, update), lr_fn, augment, **kw)

    def step(state, x, y, tprobs):
      new, out = inner(state, x, y, tprobs)
      u = held.pop()
      jax.debug.callback(record, state.seed, state.step, state.step_in_stage, state.stage,
                         jax.tree.leaves(state.variables["params"]),
                         jax.tree.leaves(new.variables["params"]), jax.tree.leaves(u), out[2])
      return new, out

    return step

  forget_jitted()
  step_.make_step = make_step
  try:
    yield seen
  finally:
    step_.make_step = orig
    forget_jitted()


# Tolerances (measured worst cases in brackets). The closed form is float64; the library's lr is
# float32: base lr 0.1 itself rounds by 1.5e-8 relative, and optax's cosine adds a few float32 ulps
# (π·k/n, then cos), |lr − closed form| ≲ 4·2⁻²⁴·base lr: 1e-6·base lr for the reported lr
# [6e-8·base]. The applied lr is read back from Δθ = θ' − θ, a float32 sum: each entry rounds by
# up to half an ulp of |θ|, relative to lr·u that is 2⁻²⁴·|θ|/|lr·u|, and the projection on u
# averages those errors: 1e-5·base lr [7e-8·base], still 40× below the smallest gap between the
# lrs of two steps of any schedule here (4e-4·base, the one cosine's tail online).
REPORTED_TOL = 1e-6 * BASE_LR
APPLIED_TOL = 1e-5 * BASE_LR


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", KINDS)
def test_applied_learning_rate_is_the_closed_form(kind, mode, tmp_path):
  """Every step of every seed, under every optimizer policy at events: the stage and step-in-stage
  counters are the geometry's, and the applied lr is the closed form of the schedule."""
  lengths = stage_lengths(mode)
  assert mode == "staged" or all(b > a for a, b in zip(lengths, lengths[1:]))  # growing stages
  want = closed_form(kind, lengths)
  seeds, digests = (0, 1), set()
  with spying_steps() as seen:  # one spying train step for the three policies (one compilation)
    for policy in POLICIES:
      c = tiny_config(schedule=kind, learning_rate=BASE_LR, method="random_subset",
                      optimizer_policy=policy, seeds=seeds, **MODES[mode])
      seen.clear()
      s = train.run(c, str(tmp_path / policy))
      jax.effects_barrier()  # every step's report is in
      digests.add(s["params_digest"])
      assert s["steps"] == s["total_steps"] == sum(lengths), (policy, s["steps"])
      assert sorted(seen) == sorted((seed, st) for seed in seeds for st, *_ in want), policy
      for seed in seeds:
        for step, t, k, lr in want:
          got = seen[(seed, step)]
          where = f"{kind}/{mode}/{policy}: seed {seed} step {step} (stage {t}, step {k} in stage)"
          assert (got["stage"], got["step_in_stage"]) == (t, k), where
          assert abs(got["reported"] - lr) <= REPORTED_TOL, (where, got["reported"], lr)
          assert abs(got["applied"] - lr) <= APPLIED_TOL, (where, got["applied"], lr)
      # and the metrics rows carry the lr of each call's last step
      last = {st: lr for st, _, _, lr in want}
      for row in records(str(tmp_path / policy), "train"):
        assert abs(row["learning_rate"] - last[row["step"] - 1]) <= REPORTED_TOL, (policy, row)
  assert len(digests) == len(POLICIES)  # the policies train differently here: the sweep is real


# --------------------------------------------------------------------------- resume


def boundaries(mode):
  """The call boundaries a run can stop at (max_steps_per_call=1: every step when staged, every
  epoch when online, where a call is one whole epoch) and the stage ends among them."""
  lengths = stage_lengths(mode)
  ends = list(np.cumsum(lengths))
  if mode == "staged":
    calls = list(range(1, ends[-1] + 1))
  else:
    E = ONLINE["epochs"] // T
    calls, step = [], 0
    for n in lengths:
      for _ in range(E):
        step += n // E
        calls.append(step)
  return [int(b) for b in calls[:-1]], [int(e) for e in ends[:-1]]


def stop_points(kind, mode):
  """Two stops drawn at random (seeded by kind and mode: the same draw on every run): one among the
  call boundaries inside a stage, one among the stage ends (just before an event)."""
  calls, ends = boundaries(mode)
  mid = [b for b in calls if b not in ends]
  rng = np.random.default_rng([KINDS.index(kind), list(MODES).index(mode), 23])
  return [int(rng.choice(mid)), int(rng.choice(ends))]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", KINDS)
def test_resume_at_any_step_is_bitwise(kind, mode, tmp_path):
  """A run stopped at a call boundary and re-run ends bitwise where the uninterrupted one ends."""
  i = KINDS.index(kind) + len(KINDS) * list(MODES).index(mode)
  kw = dict(schedule=kind, learning_rate=BASE_LR, method="random_subset",
            optimizer_policy=POLICIES[i % len(POLICIES)], seeds=(0, 1), max_steps_per_call=1,
            **MODES[mode])
  full = train.run(tiny_config(**kw), str(tmp_path / "full"))
  want = records(str(tmp_path / "full"))
  stops = stop_points(kind, mode)
  for stop in stops:
    wd = str(tmp_path / f"stop{stop}")
    part = train.run(tiny_config(stop_after_steps=stop, **kw), wd)
    assert part["interrupted"] and part["steps"] == stop, (stop, part["steps"])
    done = train.run(tiny_config(**kw), wd)
    assert not done["interrupted"] and done["steps"] == full["steps"]
    assert done["params_digest"] == full["params_digest"], f"{kind}/{mode}: stopped at {stop}"
    assert records(wd) == want, f"{kind}/{mode}: stopped at {stop}"
