"""Mutation check: does the test suite catch the bugs re-initialization code is known for?

Each mutant below is one realistic bug, written as an exact text replacement in one source file
(README.md, Testing). For every mutant the check copies the repository to a scratch directory once,
applies the mutant there (the working tree is never touched), runs only the test files that cover
that code (``pytest -x``, a timeout per mutant) and restores the file. A mutant is *caught* when
those tests fail, *survives* when they pass. A mutant whose old text is missing from the code (or
occurs more than once) is reported as an *error* (stale: update its text), never as caught; so is
one whose tests cannot run. Before the mutants, the unmutated tests must pass (the baseline), else a
broken suite would look like a perfect score.

    python tools/mutants.py              # every mutant; prints the score and the survivors
    python tools/mutants.py --list       # names, files and tests
    python tools/mutants.py --only kl_reversed,fresh_scaled --no-baseline
    python tools/mutants.py --extra my_round.py   # someone else's mutants (a MUTANTS tuple)

The rows of the wiring table of tests/test_wiring.py and tests/test_wiring_resume.py come first,
then mutants of the library code ([AA] §4 Shrink & Perturb, [LW] §3 layer-wise and subset methods,
[Z] §3/§6 schedules, distillation, label noise) and of resuming. Exit status 0 only at 100%.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "reinit_jax"


@dataclasses.dataclass(frozen=True)
class Mutant:
  """One bug: in ``file`` replace ``old`` (exactly one occurrence) by ``new``; ``tests`` must fail.

  When ``old`` is not in ``file`` but occurs exactly once elsewhere in the package (the code moved
  in a refactor), it is mutated there and the report says where.
  """

  name: str
  file: str
  old: str
  new: str
  tests: tuple[str, ...]
  why: str


WIRING = ("tests/test_wiring.py",)
RESUME = ("tests/test_wiring_resume.py",)
STEP, LOOP = "reinit_jax/train/step.py", "reinit_jax/train/loop.py"
STATE = "reinit_jax/train/state.py"
METHODS, MASKS, EVENTS = "reinit_jax/methods.py", "reinit_jax/masks.py", "reinit_jax/events.py"
SCHED, SPLITS = "reinit_jax/train/schedules.py", "reinit_jax/data/splits.py"
PACK, PACK_TESTS = "reinit_jax/train/pack.py", ("tests/test_pack.py",)

MUTANTS = (
  # ---------------------------------------------------------------- the trainer's wiring (issue 17)
  Mutant("event_stage_constant", STEP, "fresh = stage_draw(model, state.seed, t)",
         "fresh = stage_draw(model, state.seed, 1)", WIRING,
         "every event draws the same 'fresh' θ_init"),
  Mutant("fresh_scaled", STEP, "fresh = stage_draw(model, state.seed, t)",
         "fresh = jax.tree.map(lambda a: 0.4 * a, stage_draw(model, state.seed, t))", WIRING,
         "θ_init scaled ×0.4 (re-initialized layers get several times less variance)"),
  Mutant("lwnorm_times_sigma", "reinit_jax/models/base.py", "(z - mu.value) / sigma.value",
         "(z - mu.value) * sigma.value", WIRING, "layer-wise normalization as (z − μ)·σ"),
  Mutant("fixed_mask_global_key", STATE,
         "method.prepare(backends.draw_key(stream_key(state.key, EVENT_STREAM, 0))",
         "method.prepare(backends.draw_key(jax.random.PRNGKey(0))", WIRING,
         "fixed_subset's mask from one global key: the same mask for every seed"),
  Mutant("optimizer_policy_ignored", "reinit_jax/train/build.py",
         "distill=reinit.distill, optimizer_policy=reinit.optimizer_policy,",
         'distill=reinit.distill, optimizer_policy="keep",', WIRING,
         "the trainer always keeps the optimizer state at events"),
  Mutant("kl_reversed", "reinit_jax/train/loss.py", "return jnp.sum(p * (log_p - log_s), axis=-1)",
         "return jnp.sum(jnp.exp(log_s) * (log_s - jnp.log(p + 1e-30)), axis=-1)", WIRING,
         "distillation KL(student ‖ teacher)"),
  Mutant("teacher_after_event", STEP, "teacher=dict(state.variables) if distill",
         "teacher=dict(variables) if distill", WIRING,
         "the teacher is the re-initialized network"),
  Mutant("resume_resets_step", LOOP, "state = built.inputs.place.seeded(state)",
         "state = built.inputs.place.seeded(state.replace(step=0 * state.step))", RESUME,
         "a resumed run restarts the global step counter"),
  Mutant("summary_test_from_validation", LOOP, 'best.test[s] = float(results["test"][1][s])',
         'best.test[s] = float(results["validation"][1][s])', RESUME,
         "summary test accuracy read from the validation split at model selection"),
  Mutant("summary_final_test", LOOP, "test = best.test if has_val else pos.last_test",
         "test = pos.last_test", RESUME,
         "summary test accuracy is the final one despite a validation split"),
  Mutant("init_same_for_every_seed", STATE, "variables = stage_draw(model, seed, 0)",
         "variables = stage_draw(model, 0, 0)", WIRING, "every seed starts from one θ_1"),
  Mutant("event_key_ignores_seed", EVENTS, "jax.random.fold_in(key, jnp.asarray(seed, jnp.uint32))",
         "jax.random.fold_in(key, 0)", WIRING + ("tests/test_events.py",),
         "every seed draws the same θ_init at an event"),
  Mutant("event_stage_off_by_one", STEP, "state.opt_state, tx, t, ek",
         "state.opt_state, tx, t + 1, ek", WIRING,
         "R is told the stage after the one just finished"),
  Mutant("norm_batch_one_row", STEP, "(nk, (norm_batch_size,), 0, n_current)",
         "(nk, (norm_batch_size,), 0, 1)", WIRING,
         "the layer-wise normalization is measured on one training example"),
  Mutant("momentum_dropped", SCHED, 'kwargs.setdefault("momentum", momentum)',
         'kwargs.setdefault("momentum", None)', WIRING, "optim.momentum never reaches SGD"),
  # ---------------------------------------------------------------- methods, masks, events
  Mutant("shrink_perturb_formula", METHODS, "shrink * p + perturb * f.astype(p.dtype)",
         "perturb * p + shrink * f.astype(p.dtype)", ("tests/test_methods.py",),
         "Shrink & Perturb with λ and γ swapped"),
  Mutant("layerwise_block_off_by_one", MASKS, "jnp.asarray(i) <= k", "jnp.asarray(i) < k",
         ("tests/test_masks.py", "tests/test_methods.py"),
         "layer-wise keeps blocks 1..k−1: block k is re-initialized too"),
  Mutant("layerwise_no_rescale", METHODS, "rescale_to_norms(params, context.init_norms, kept)",
         "params", ("tests/test_methods.py",), "layer-wise keeps blocks without rescaling them"),
  Mutant("rescale_inverted", METHODS, "n / jnp.where(cur > 0, cur, 1.0)",
         "jnp.where(cur > 0, cur, 1.0) / jnp.where(n > 0, n, 1.0)", ("tests/test_methods.py",),
         "rescaling by current/initial norm instead of initial/current"),
  Mutant("magnitude_largest", MASKS, "float_keys(jnp.abs(x))",
         "float_keys(1 / (jnp.abs(x) + 1e-30))", ("tests/test_masks.py", "tests/test_methods.py"),
         "magnitude re-initializes the largest entries, not the smallest"),
  Mutant("subset_fraction_complement", "reinit_jax/selection.py", "round(float(fraction) * n)",
         "round(float(1 - fraction) * n)", ("tests/test_masks.py", "tests/test_methods.py"),
         "a subset method re-initializes the fraction 1 − p it should keep"),
  Mutant("random_subset_fixed", METHODS,
         "fold_in(key, jnp.asarray(stage, jnp.int32)), params, fraction,",
         "fold_in(key, 0), params, fraction,", ("tests/test_methods.py",),
         "random_subset (WELSR) reuses one mask at every event"),
  Mutant("fixed_subset_redrawn", METHODS, "return context.fixed_mask",
         "return M.random_fraction(jax.random.fold_in(key, stage), params, fraction)",
         ("tests/test_methods.py",), "fixed_subset (WELS) draws a new mask at every event"),
  Mutant("batch_stats_not_reset", EVENTS, "jnp.where(touched[prefix], new, old)",
         "jnp.where(touched[prefix], old, old)", ("tests/test_events.py",),
         "BatchNorm statistics of re-initialized layers kept"),
  Mutant("optimizer_mask_inverted", EVENTS, "jnp.where(m, jnp.zeros_like(s), s)",
         "jnp.where(m, s, jnp.zeros_like(s))", ("tests/test_events.py",),
         "optimizer 'mask' zeroes the entries that were kept"),
  # ---------------------------------------------------------------- data, schedules, distillation
  Mutant("label_noise_count", SPLITS, "size=int(round(q * n))",
         "size=int(round(q * n * (num_classes - 1) / num_classes))", ("tests/test_data_splits.py",),
         "label noise relabels q·n·(C−1)/C examples instead of round(q·n)"),
  Mutant("label_noise_one_seed", SPLITS, "np.random.default_rng([seed, _NOISE])",
         "np.random.default_rng(_NOISE)", ("tests/test_data_splits.py",),
         "every seed gets the same noisy labels"),
  Mutant("schedule_no_restart", STEP, "step_in_stage=jnp.zeros_like(state.step_in_stage)",
         "step_in_stage=state.step_in_stage", ("tests/test_train.py",),
         "cosine_per_stage does not restart at events"),
  Mutant("cosine_reads_stage_step", SCHED, "jnp.asarray(sched(step), jnp.float32)",
         "jnp.asarray(sched(step_in_stage), jnp.float32)", ("tests/test_train.py",),
         "the one-cosine schedule restarts at every event"),
  Mutant("distill_in_stage_1", STEP, "jnp.where(state.stage > 1,", "jnp.where(state.stage > 0,",
         ("tests/test_train.py",), "distillation on (against a teacher of zeros) in stage 1"),
  Mutant("weight_decay_dropped", SCHED, "optax.chain(optax.add_decayed_weights(weight_decay), opt)",
         "opt", ("tests/test_train.py",), "optim.weight_decay has no effect"),
  # ---------------------------------------------------------------- resume
  Mutant("resume_fresh_state", LOOP, "self.last_ckpt, state, meta = restored",
         "self.last_ckpt, _, meta = restored", ("tests/test_train_resume.py",) + RESUME,
         "resume restores the position but trains a fresh state"),
  Mutant("pack_lr_ignored", PACK, 'lr = lr_fn if "learning_rate" not in hyper else',
         'lr = lr_fn if True else', PACK_TESTS,
         "a packed grid trains every point at the first point's learning rate"),
  Mutant("pack_hparams_ignored", PACK, "m = method if not hp else", "m = method if True else",
         PACK_TESTS, "a packed grid applies the first point's S&P λ to every point"),
  Mutant("pack_runs_off_by_one", PACK, "return slice(idx[0], idx[-1] + 1)",
         "return slice(idx[0], idx[-1])", PACK_TESTS,
         "a point's summary drops its last seed"),
  # ---------------------------------------------------------------- CPU path (backends)
  Mutant("taps_kernel_unflipped", "reinit_jax/backends/cpu_conv.py",
         "return _taps_conv(g, wt.astype(g.dtype), (1, 1), padding)",
         "return _taps_conv(g, w.transpose(0, 1, 3, 2).astype(g.dtype), (1, 1), padding)",
         ("tests/test_models.py",), "a narrow conv's input gradient with the kernel not flipped"),
  Mutant("kernel_init_fan_out", "reinit_jax/models/base.py",
         "variance = jnp.array(2.0 / fan_in, dtype=dtype)",
         "variance = jnp.array(2.0 / fan_out, dtype=dtype)", ("tests/test_models.py",),
         "He kernels drawn with the fan-out (conv kernels at the wrong scale)"),
  # ---------------------------------------------------------------- class tests (issue 23)
  # -- packed grids (run-axis values, points → directories)
  Mutant("pack_values_by_sorted_name", PACK, "flats = [_flat(c) for c in cs]",
         "flats = [_flat(configs[n]) for n in sorted(configs)]", ("tests/test_pack_class.py",),
         "a pack gathers its points' traced values in sorted-name order, not the grid's order"),
  # -- BatchNorm statistics under partial masks; every method on every model family
  Mutant("bn_reset_all_not_any", EVENTS, "hit = jnp.any(m)", "hit = jnp.all(m)",
         ("tests/test_events_class.py",),
         "a norm layer's statistics reset only when the mask selects all of its entries"),
  Mutant("bn_reset_outermost_module", EVENTS, "for i in range(len(parts), 0, -1):",
         "for i in range(1, len(parts) + 1):", ("tests/test_events_class.py",),
         "statistics reset when any parameter of the top-level module (the conv beside) is hit"),
  # -- schedules × stages × optimizer policies; resume mid-stage
  Mutant("per_stage_cosine_next_length", SCHED, "n = table[jnp.clip(stage - 1, 0, len(lens) - 1)]",
         "n = table[jnp.clip(stage, 0, len(lens) - 1)]", ("tests/test_schedules_class.py",),
         "online cosine_per_stage anneals each stage over the next (longer) stage's length"),
  # -- distillation live vs cached; exact k-smallest selection at the cut
  Mutant("live_teacher_is_student", STEP, "tprobs = _teacher_probs(model, state.teacher, x)",
         "tprobs = _teacher_probs(model, state.variables, x)", ("tests/test_distill_class.py",),
         "distill_live: the teacher forward runs on the student being trained, not the teacher"),
  Mutant("count_pass_strict_at_cut", "reinit_jax/selection.py", "ok = c >= k", "ok = c > k",
         ("tests/test_selection_class.py",),
         "a counting pass whose probe holds exactly k keys moves the bracket past the k-th key"),
  Mutant("subnormal_keys_flushed", "reinit_jax/selection.py",
         "return jnp.where(jnp.isnan(f), jnp.int32(_MAX_KEY), jnp.maximum(bits, 0))",
         "return jax.lax.bitcast_convert_type(jnp.where(jnp.isnan(f), jnp.inf, "
         "jnp.maximum(f, 0.0)), jnp.int32)", ("tests/test_selection_class.py",),
         "magnitude keys via float max: XLA:CPU flushes subnormal |θ| to 0 (ties with zeros)"),
  # -- report and plot statistics
  Mutant("weight_norm_one_per_step", "reinit_jax/analysis/plots.py",
         'k = (r.get("seed"), r.get("step"))', 'k = r.get("step")',
         ("tests/test_analysis_class.py",),
         "the weight-norm figure keeps one record per step: the first seed's norm, no band"),
  # -- the two survivors of a blind round of 25 (2026-12-05: 23 caught), now tested
  Mutant("restart_ignored_when_finished", "reinit_jax/train/workdir.py",
         "  if c.run.restart:\n    return None\n  path = os.path.join(workdir, \"summary.json\")",
         "  path = os.path.join(workdir, \"summary.json\")", ("tests/test_reliability_faults.py",),
         "run.restart=True on a finished run of the same config says 'already finished'"),
  Mutant("report_distill_column_merged", "reinit_jax/analysis/report.py",
         'info.method = str(method) + ("+distill" if c.get("distill") else "")',
         "info.method = str(method)", ("tests/test_analysis_report.py",),
         "runs with distillation share the column of the same method without it"),
  # ---------------------------------------------------------------- step-level events, L2 Init, ReDo
  Mutant("step_event_off_by_one", STEP, "due = state.step % every == 0",
         "due = state.step % every == 1", ("tests/test_step_events.py",),
         "step-level events fire one step after every N-th"),
  Mutant("fit_trigger_strict", STEP, "due & (window >= threshold * every)",
         "due & (window > threshold * every)", ("tests/test_step_events.py",),
         "'fit' does not fire when the accuracy equals the threshold"),
  Mutant("l2_init_sign", STEP, "loss = loss + plasticity.l2_init_penalty(",
         "loss = loss - plasticity.l2_init_penalty(",
         ("tests/test_step_events.py",), "L2 Init pushes away from θ₀"),
  Mutant("features_include_head", STEP, "outputs = model.block_outputs(variables, augment(key, x, "
         "False))[:-1]", "outputs = model.block_outputs(variables, augment(key, x, False))",
         ("tests/test_step_events.py",), "the logits counted as features"),
  Mutant("redo_scores_head", METHODS, "for h in context.activations[:-1]]",
         "for h in context.activations[1:]]", ("tests/test_events_class.py",),
         "ReDo scores the wrong layers' units"),
  Mutant("cbp_carry_dropped", STEP, "return context.replace(activations=None, select_impl=None)",
         "return context.replace(activations=None, select_impl=None, carry=None)",
         ("tests/test_step_events.py",), "continual backprop's utilities and ages not kept between "
         "events"),
  Mutant("cbp_ages_not_reset", "reinit_jax/plasticity.py", "age.append(jnp.where(mask, 0, a))",
         "age.append(a)", ("tests/test_step_events.py",),
         "a replaced unit keeps its age (mature again at once)"),
  Mutant("cbp_decay_swapped", "reinit_jax/plasticity.py",
         "utility.append(decay * u + (1 - decay) * mean_h * out_w)",
         "utility.append((1 - decay) * u + decay * mean_h * out_w)",
         ("tests/test_step_events.py",), "continual backprop's running utility with η and 1 − η "
         "swapped (the ranking of one event is unchanged)"),
  Mutant("streamed_check_inverted", "reinit_jax/train/validation.py",
         "if not registry.in_memory(data_options):", "if registry.in_memory(data_options):",
         ("tests/test_reliability_config.py",), "the streamed-data constraints checked in memory"),
  Mutant("together_ranks_swapped", "reinit_jax/continual.py",
         "for point, kept in zip(points, features):\n    for record, probe_features",
         "for point, kept in zip(points, features[::-1]):\n    for record, probe_features",
         ("tests/test_continual.py",),
         "streams trained side by side: each records the other's feature ranks"),
  Mutant("example_shape_ignores_native", "reinit_jax/data/registry.py",
         "native = spec.shape or (0, 0, 3)", "native = (0, 0, 3)", ("tests/test_data_augment.py",),
         "the model's input shape from the config forgets the data set's native image shape"),
  Mutant("pack_of_one_names_point", "reinit_jax/train/pack.py",
         "    if len(self.points) == 1:\n      return {\"seed\": self.seeds[s]}",
         "    if len(self.points) == 0:\n      return {\"seed\": self.seeds[s]}",
         ("tests/test_pack.py",), "a point alone tags its records with a point index"),
  Mutant("pack_of_one_writes_points", "reinit_jax/train/pack.py",
         "if len(self.points) == 1 or stopped:", "if stopped:", ("tests/test_wiring_resume.py",),
         "a point alone rewrites its own directory as a pack's point when it finishes"),
  Mutant("pack_optimizer_not_rebuilt", "reinit_jax/train/validation.py",
         'if "weight_decay" not in traced:', "if True:", ("tests/test_pack.py",),
         "a pack whose weight decay rides on the run axis keeps its first point's optimizer"),
  Mutant("build_error_unnamed", "reinit_jax/train/validation.py",
         "raise _BuildError(field, msg or type(e).__name__) from None",
         "raise ValueError(msg) from None", ("tests/test_reliability_config.py",),
         "a model, optimizer or method refusal surfaces without naming its config field"),
  Mutant("list_skips_value_check", "reinit_jax/launch/sweep.py",
         "  if values:\n    for p in grid:", "  if not values:\n    for p in grid:",
         ("tests/test_sweep.py",), "--sweep=list prints commands whose --config values are of the "
         "wrong type"),
)


def _locate(root: str, m: Mutant) -> tuple[str | None, str]:
  """(path relative to root, '') where ``m.old`` occurs exactly once, else (None, error)."""
  def count(rel):
    with open(os.path.join(root, rel), encoding="utf-8") as f:
      return f.read().count(m.old)

  if os.path.exists(os.path.join(root, m.file)):
    n = count(m.file)
    if n == 1:
      return m.file, ""
    if n > 1:
      return None, f"old text occurs {n} times in {m.file} (make it distinctive)"
  hits = []
  for path in sorted(glob.glob(os.path.join(root, PACKAGE, "**", "*.py"), recursive=True)):
    rel = os.path.relpath(path, root)
    hits += [rel] * count(rel)
  if len(hits) == 1:
    return hits[0], ""
  where = f"{len(hits)} times in {PACKAGE}/ ({', '.join(sorted(set(hits)))})" if hits else \
    f"nowhere in {m.file} or {PACKAGE}/"
  return None, f"stale: old text {m.old!r} found {where}"


def _check(root: str, m: Mutant) -> tuple[str | None, str]:
  """Where to apply ``m``, or an error: missing text, missing test file, or a syntax error."""
  rel, err = _locate(root, m)
  if rel is None:
    return None, err
  missing = [t for t in m.tests if not os.path.exists(os.path.join(root, t.split("::")[0]))]
  if missing:
    return None, f"stale: test file(s) {missing} do not exist"
  with open(os.path.join(root, rel), encoding="utf-8") as f:
    src = f.read().replace(m.old, m.new)
  try:
    compile(src, rel, "exec")
  except SyntaxError as e:
    return None, f"the mutated {rel} does not compile: {e}"
  return rel, ""


def _pytest(scratch: str, tests, timeout: float, log_path: str) -> tuple[str, int, float]:
  """``pytest -x`` on ``tests`` in the scratch copy: ('pass'|'fail'|'error'|'timeout', rc, secs)."""
  env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
             PYTHONPATH=os.pathsep.join([scratch, os.environ.get("PYTHONPATH", "")]).rstrip(
               os.pathsep))
  cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
  t0 = time.time()
  with open(log_path, "w") as log:
    proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
      rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)  # pytest and any process a test started
      proc.wait()
      return "timeout", -9, time.time() - t0
  # pytest: 0 all passed, 1 some failed, 2 interrupted (e.g. a collection error from the mutant);
  # 3 internal error, 4 usage error (a test path that does not exist), 5 no tests collected.
  verdict = {0: "pass", 1: "fail", 2: "fail"}.get(rc, "error")
  return verdict, rc, time.time() - t0


def _tail(path: str, n: int = 15) -> str:
  with open(path, errors="replace") as f:
    return "".join(f.readlines()[-n:])


def _copy(dest: str) -> str:
  repo = os.path.join(dest, "repo")
  shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(
    ".git", "runs", "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis"))
  out = subprocess.run([sys.executable, "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"],
                       cwd=repo, env=dict(os.environ, PYTHONPATH=repo), capture_output=True,
                       text=True, check=True).stdout.strip()
  if not os.path.realpath(out).startswith(os.path.realpath(repo)):
    raise SystemExit(f"the scratch copy imports {PACKAGE} from {out}, not from itself")
  return repo


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--list", action="store_true", help="list the mutants and exit")
  p.add_argument("--only", action="append", default=[],
                 help="comma-separated mutant names (repeatable)")
  p.add_argument("--timeout", type=float, default=900, help="seconds per mutant (default 900)")
  p.add_argument("--no-baseline", action="store_true",
                 help="skip checking that the unmutated tests pass")
  p.add_argument("--keep", action="store_true", help="keep the scratch copy and its logs")
  p.add_argument("-v", "--verbose", action="store_true", help="print the pytest tail of survivors")
  p.add_argument("--extra", metavar="FILE",
                 help="run the mutants of FILE (a Python file defining MUTANTS, a tuple of Mutant) "
                      "instead of the curated list: a fresh round written by someone else")
  a = p.parse_args(argv)
  pool = MUTANTS
  if a.extra:
    import runpy
    pool = tuple(runpy.run_path(a.extra).get("MUTANTS", ()))
    if not pool or not all(isinstance(m, Mutant) or type(m).__name__ == "Mutant" for m in pool):
      p.error(f"--extra {a.extra} must define MUTANTS, a non-empty tuple of Mutant")
  names = [n for arg in a.only for n in arg.split(",") if n]
  known = {m.name for m in pool}
  unknown = [n for n in names if n not in known]
  if unknown:
    p.error(f"unknown mutant(s) {unknown}; --list shows them")
  chosen = [m for m in pool if not names or m.name in names]
  if a.list:
    for m in chosen:
      print(f"{m.name:30s} {m.file:32s} {' '.join(m.tests)}\n{'':30s} {m.why}")
    return 0

  plan = [(m, *_check(ROOT, m)) for m in chosen]
  runnable = [(m, rel) for m, rel, _ in plan if rel is not None]
  results = {m.name: ("error", err, 0.0) for m, rel, err in plan if rel is None}
  tmp = tempfile.mkdtemp(prefix="reinit_mutants_")
  try:
    repo = _copy(tmp)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    if runnable and not a.no_baseline:
      tests = sorted({t for m, _ in runnable for t in m.tests})
      print(f"baseline: {' '.join(tests)}", flush=True)
      log = os.path.join(logs, "baseline.log")
      verdict, rc, secs = _pytest(repo, tests, a.timeout * 2, log)
      if verdict != "pass":
        print(_tail(log, 30))
        print(f"the unmutated tests do not pass ({verdict}, rc {rc}); fix them first")
        return 2
      print(f"baseline passes ({secs:.0f} s)", flush=True)
    for i, (m, rel) in enumerate(runnable, start=1):
      path = os.path.join(repo, rel)
      with open(path, encoding="utf-8") as f:
        original = f.read()
      log = os.path.join(logs, f"{m.name}.log")
      try:
        with open(path, "w", encoding="utf-8") as f:
          f.write(original.replace(m.old, m.new))
        verdict, rc, secs = _pytest(repo, m.tests, a.timeout, log)
      finally:
        with open(path, "w", encoding="utf-8") as f:
          f.write(original)
      status = {"fail": "caught", "pass": "SURVIVED"}.get(verdict, verdict)
      note = {2: "tests interrupted (collection error)"}.get(rc, "") if status == "caught" \
        else (f"rc {rc}" if status == "error" else "")
      if rel != m.file:
        note = f"{note}; moved to {rel}".lstrip("; ")
      results[m.name] = (status, note, secs)
      print(f"[{i}/{len(runnable)}] {m.name:30s} {status:8s} {secs:6.0f} s  {note}", flush=True)
      if status != "caught" and a.verbose:
        print(_tail(log))
  finally:
    if a.keep:
      print(f"scratch copy and logs kept in {tmp}")
    else:
      shutil.rmtree(tmp, ignore_errors=True)

  caught = [n for n, r in results.items() if r[0] == "caught"]
  print(f"\nscore: {len(caught)}/{len(chosen)} mutants caught "
        f"({100.0 * len(caught) / max(len(chosen), 1):.0f}%)")
  for label in ("SURVIVED", "timeout", "error"):
    bad = [m for m in chosen if results[m.name][0] == label]
    if bad:
      print(f"{label.lower()}:")
      for m in bad:
        print(f"  {m.name}: {m.why} ({m.file}) {results[m.name][1]}".rstrip())
  return 0 if len(caught) == len(chosen) else 1


if __name__ == "__main__":
  sys.exit(main())
