"""Training-set evaluation per stage (run.eval_train, reinit_jax/train/train_set_eval.py; [Z] §6, [AA] §4).

The recorded train_fit / train_noisy / train_noisy_clean / train_clean numbers are checked against
a direct computation on the checkpointed parameters of the same step, with masks built here from
the data's noisy indices and clean labels; online stages against the stage's rows only; per-seed
data sets against each seed's own noise; epochs_to_fit against the records; resume keeps them.
"""

import json
import os

import jax
import numpy as np
import pytest

from reinit_jax import train
from reinit_jax.checkpoint import Checkpoints
from reinit_jax.train import train_set_eval, validation
from train_helpers import records, run_keeping, tiny_config

SPLITS = ("train_fit", "train_noisy", "train_noisy_clean", "train_clean")


def _state_at(r, workdir, step):
  """The run's state (all seeds) saved at ``step`` (a stage end: before that stage's event)."""
  ck = Checkpoints(os.path.join(workdir, "checkpoints"))
  state, _ = ck.restore(step, r.init())
  ck.close()
  return state


def _direct(r, data, variables, seed_index, n):
  """Per split (accuracy, loss) of one seed on the first ``n`` training rows, by hand."""
  v = jax.tree.map(lambda a: np.asarray(a)[seed_index], variables)
  split = data.train(r.geometry.stages)  # the full view; the stage is its first n rows
  x = r.inputs.data.augment(jax.random.PRNGKey(0), split.x[:n], False)
  logits = np.asarray(r.parts.model.apply(v, x, train=False), np.float64)
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  y, clean = split.y[:n], data.train_clean_y[:n]
  noisy = np.zeros(n, bool)
  noisy[[i for i in data.noisy_indices if i < n]] = True
  pred = logits.argmax(1)
  rows = np.arange(n)

  def one(mask, labels):
    if not mask.any():
      return (None, None)
    return (float(np.mean(pred[mask] == labels[mask])),
            float(np.mean(-logp[rows[mask], labels[mask]])))

  every = np.ones(n, bool)
  return {"train_fit": one(every, y), "train_noisy": one(noisy, y),
          "train_noisy_clean": one(noisy, clean), "train_clean": one(~noisy, y),
          "_counts": (int(noisy.sum()), int((~noisy).sum()))}


def _recorded(workdir, step, seed):
  return {r_["split"]: (r_["accuracy"], r_["loss"]) for r_ in records(workdir)
          if r_["step"] == step and r_["seed"] == seed and r_["split"] in SPLITS}


def _check(got, want):
  assert set(got) == set(SPLITS)
  for name in SPLITS:
    assert got[name][0] == pytest.approx(want[name][0], abs=1e-6), name
    assert got[name][1] == pytest.approx(want[name][1], rel=1e-4, abs=1e-5), name
  k, m = want["_counts"]
  # train_fit is the count-weighted mean of the noisy and clean parts.
  mixed = (k * got["train_noisy"][0] + m * got["train_clean"][0]) / (k + m)
  assert got["train_fit"][0] == pytest.approx(mixed, abs=1e-6)


def test_noise_splits_equal_a_direct_computation(tmp_path):
  c = tiny_config(method="standard", label_noise=0.4, eval_train="stage", seeds=(0, 1),
                  learning_rate=0.2, keep_checkpoints=3)
  w = str(tmp_path)
  r, s = run_keeping(c, w, fresh=True)
  n = len(r.inputs.data.train(1))
  for step in (2, 6):
    state = _state_at(r, w, step)
    for i, seed in enumerate(r.inputs.seeds):
      _check(_recorded(w, step, seed), _direct(r, r.inputs.data, state.variables, i, n))
  # The noisy labels are learnt, not the clean ones: they differ on most relabelled examples.
  got = _recorded(w, 6, 0)
  assert got["train_noisy"][0] != got["train_noisy_clean"][0]
  # 'stage': only at stage ends; every stage record holds the four splits of each seed.
  assert sorted({r_["step"] for r_ in records(w, "train_fit")}) == [2, 4, 6]
  for st in s["stages"]:
    assert sorted(m["split"] for m in st["metrics"] if m["split"] in SPLITS) == sorted(SPLITS * 2)
  assert "epochs_to_fit" not in s  # only with eval_train='eval'


def test_online_stage_restricts_to_its_rows(tmp_path):
  c = tiny_config(method="standard", chunks=3, stages=3, epochs=6, batch_size=8,
                  synthetic_train=48, label_noise=0.4, eval_train="stage", keep_checkpoints=3)
  w = str(tmp_path)
  r, _ = run_keeping(c, w, fresh=True)
  ends = r.geometry.stage_examples  # 16, 32, 48 rows
  assert ends == [16, 32, 48]
  for t, step in ((1, 4), (2, 12), (3, 24)):
    state = _state_at(r, w, step)
    want = _direct(r, r.inputs.data, state.variables, 0, ends[t - 1])
    assert want["_counts"][0] < int(np.sum(r.inputs.data.noisy_indices < 48)) or t == 3
    _check(_recorded(w, step, 0), want)
  assert r.compiled.train_call.jitted._cache_size() == 1  # the evaluation leaves the step alone


def test_without_noise_only_train_fit(tmp_path):
  w = str(tmp_path)
  r, s = run_keeping(tiny_config(eval_train="stage"), w)
  assert {x["split"] for x in records(w)} == {"train", "test", "train_fit"}
  state = _state_at(r, w, 6)
  n = len(r.inputs.data.train(1))
  want = _direct(r, r.inputs.data, state.variables, 0, n)["train_fit"]
  got = _recorded(w, 6, 0)["train_fit"]
  assert got == pytest.approx(want, abs=1e-5)


def test_per_seed_data_uses_each_seeds_noise(tmp_path):
  c = tiny_config(seeds=(0, 1), per_seed=True, label_noise=0.4, eval_train="stage")
  w = str(tmp_path)
  r, _ = run_keeping(c, w)
  d0, d1 = r.inputs.run_data
  assert not np.array_equal(d0.noisy_indices, d1.noisy_indices)
  state = _state_at(r, w, 6)
  n = len(d1.train(1))
  for i, d in enumerate(r.inputs.run_data):  # seed i: its own inputs, labels and noise
    _check(_recorded(w, 6, r.inputs.seeds[i]), _direct(r, d, state.variables, i, n))


# Four epochs in each of three stages, one epoch a call; the training set evaluated every epoch.
_FIT = dict(method="standard", epochs=12, stages=3, eval_train="eval", eval_every_epochs=1,
            max_steps_per_call=1, learning_rate=0.3, seeds=(0, 1), synthetic_alpha=3.0,
            fit_threshold=0.7)
_EVERY_EPOCH = [(t, e) for t in (1, 2, 3) for e in (1, 2, 3, 4)]


def test_epochs_to_fit_follows_the_records(tmp_path):
  w = str(tmp_path)
  s = train.run(tiny_config(**_FIT), w)
  fit = records(w, "train_fit")
  assert sorted({(x["stage"], x["epoch"]) for x in fit}) == _EVERY_EPOCH
  want = []
  for t in (1, 2, 3):
    row = []
    for seed in (0, 1):
      hits = [x["epoch"] for x in fit if x["stage"] == t and x["seed"] == seed
              and x["accuracy"] >= 0.7]
      row.append(min(hits) if hits else None)
    want.append(row)
  assert s["epochs_to_fit"] == want
  cells = [e for row in want for e in row]
  assert s["fit_reached"] == pytest.approx(sum(e is not None for e in cells) / 6)
  assert s["fit_threshold"] == 0.7
  assert any(e is not None and e > 1 for e in cells), want  # the test can tell epochs apart
  with open(os.path.join(w, "summary.json")) as f:
    assert json.load(f)["epochs_to_fit"] == want


def test_call_mode_fits_after_every_call_and_tests_at_stage_ends(tmp_path):
  # Online studies: the epoch a stage fits, without evaluating the test set every epoch.
  w = str(tmp_path)
  s = train.run(tiny_config(**{**_FIT, "eval_train": "call", "eval_every_epochs": 0}), w)
  fit, test = records(w, "train_fit"), records(w, "test")
  assert sorted({(x["stage"], x["epoch"]) for x in fit}) == _EVERY_EPOCH
  assert sorted({(x["stage"], x["epoch"]) for x in test}) == [(1, 4), (2, 4), (3, 4)]
  eval_mode = train.run(tiny_config(**_FIT), str(tmp_path / "eval"))
  assert s["epochs_to_fit"] == eval_mode["epochs_to_fit"]  # the same training, the same fits
  assert s["params_digest"] == eval_mode["params_digest"]


def test_epochs_to_fit_counts_only_evaluations_that_happened():
  recs = [{"split": "train_fit", "stage": 1, "epoch": e, "seed": 0, "accuracy": a}
          for e, a in ((2, 0.5), (4, 0.995), (6, 1.0))]
  recs += [{"split": "test", "stage": 2, "epoch": 1, "seed": 0, "accuracy": 1.0}]
  out = train_set_eval.epochs_to_fit(recs, [0, 1], 3, 0.99)
  assert out == {"epochs_to_fit": [[4, None]], "fit_reached": 0.5, "fit_threshold": 0.99}
  assert train_set_eval.epochs_to_fit([], [0], 2, 0.99)["fit_reached"] is None


@pytest.mark.parametrize("field,value", [("eval_train", "sometimes"), ("eval_train", "Stage"),
                                         ("fit_threshold", 0.0), ("fit_threshold", 1.5)])
def test_bad_values_are_one_line_naming_the_field(field, value):
  c = tiny_config()
  c.run[field] = value
  with pytest.raises(ValueError, match=rf"^config\.run\.{field}=") as e:
    validation.validate(c)
  assert "\n" not in str(e.value)


def test_resume_keeps_the_records_and_epochs_to_fit(tmp_path):
  kw = dict(method="shrink_perturb", epochs=6, stages=3, eval_train="eval", eval_every_epochs=1,
            max_steps_per_call=1, checkpoint_every=1, label_noise=0.3, seeds=(0, 1),
            fit_threshold=0.3)
  full = train.run(tiny_config(**kw), str(tmp_path / "full"))
  part = train.run(tiny_config(stop_after_steps=3, **kw), str(tmp_path / "resumed"))
  assert part["interrupted"] and len(part["epochs_to_fit"]) == 2  # stages 1 and 2 evaluated
  done = train.run(tiny_config(**kw), str(tmp_path / "resumed"))
  assert records(str(tmp_path / "resumed")) == records(str(tmp_path / "full"))
  for k in ("epochs_to_fit", "fit_reached", "stages", "params_digest"):
    assert done[k] == full[k], k


@pytest.mark.parametrize("path,mode,cpu_mode,subset,points,blocks", [
  ("configs/label_noise.py", "stage", "stage", 3000, 36, 2),  # a subset standard training memorizes
  ("configs/online.py", "eval", "call", 10000, 9, None),  # a subset every stage of which is fitted
])
def test_cpu_knob_and_every_point_validates(path, mode, cpu_mode, subset, points, blocks):
  """cpu=1: an MLP; layerwise's K fits the MLP's layers; explicit fields still override the knob."""
  from reinit_jax.launch import sweep
  m = sweep.load_module(path)
  grid = m.get_sweep("cpu=1")
  assert len(grid) == points
  for p in grid:
    c = validation.validate(m.get_config(sweep.merged_arg("cpu=1", p)))
    assert c.model.name == "mlp" and c.data.train_subset == subset
    assert c.run.eval_train == cpu_mode
    if c.reinit.method == "layerwise":  # K given by the size, else as many groups as layers (≤ T)
      assert c.model.num_blocks == (blocks or min(c.reinit.stages, len(c.model.options.widths) + 1))
  c = m.get_config("cpu=1,learning_rate=0.5,stages=5,epochs=10")
  assert (c.optim.learning_rate, c.reinit.stages, c.model.name) == (0.5, 5, "mlp")
  assert m.get_config("").run.eval_train == mode


@pytest.mark.slow  # imports TensorFlow and prepares Fashion-MNIST for TFDS (~30 s)
def test_streamed_training_view_and_noise_refused(request, tmp_path):
  """Streamed data: train_fit (read un-augmented through tf.data) at every stage end; the noise
  splits need the training set in memory: one line naming the field, before any step."""
  from test_train_stream import needs_debian, stream_config
  if needs_debian.args[0]:
    pytest.skip(needs_debian.kwargs["reason"])
  data_dir = str(request.config.cache.mkdir("reinit_jax_tfds"))
  w = str(tmp_path / "s")
  train.run(stream_config(data_dir, **{"run.eval_train": "stage"}), w)
  fit = records(w, "train_fit")
  assert [x["step"] for x in fit] == [4, 8] and all(0 <= x["accuracy"] <= 1 for x in fit)
  c = stream_config(data_dir, **{"run.eval_train": "stage", "data.label_noise": 0.2})
  with pytest.raises(ValueError, match=r"^config\.run\.eval_train='stage' is invalid; allowed: "
                                       r"'off' for a streamed data set") as e:
    train.run(c, str(tmp_path / "noisy"))
  assert "\n" not in str(e.value)


def test_seed_axis_map_and_vmap_agree():
  """The accelerator path (seeds vmapped) gives the CPU path's numbers (seeds one after another)."""
  from reinit_jax.train import build
  checked = validation.check(tiny_config(label_noise=0.4, seeds=(0, 1), eval_batch_size=24))
  c, r = checked.config, build.Built(checked)
  state = r.init()
  fit = train_set_eval.TrainFit(r, _with(c, "stage"))
  x, _ = r.inputs.arrays(lambda d: d.train(1))
  fit.stage(1, x)
  got = {}
  for axis in ("map", "vmap"):
    fn = train_set_eval.make_fit_eval(r.parts.model, r.inputs.data.augment, seed_axis=axis)
    got[axis] = [np.asarray(a) for a in fn(state.variables, *fit.current.inputs)]
  assert got["map"][1].shape == (2, 4)
  for a, b in zip(got["map"], got["vmap"]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert fit.current.inputs[-1] == 3  # 64 rows in padded batches of 24


def _with(c, mode):
  c = c.copy_and_resolve_references()
  c.run.eval_train = mode
  return c
