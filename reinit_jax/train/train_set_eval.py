"""Does training fit its data? Training-set evaluation per stage ([Z] §6 label noise; [AA] §3).

With ``run.eval_train`` on, the stage loop also evaluates the current stage's training view
``data.train(t)`` (eval mode, no augmentation, every seed) at the last evaluation of every stage
(``'stage'``), at every evaluation (``'eval'``), in the same host transfer as validation and test,
or after every train call (``'call'``: the training view alone between the regular evaluations,
so an online study sees the epoch a stage fits without evaluating the test set every epoch).
Records (metrics.jsonl ``split``, docs/CONTRACTS.md):

* ``train_fit``: accuracy/loss on the labels as trained on (noisy where relabelled);
* with ``data.label_noise > 0`` ([Z] §6): ``train_noisy`` (the relabelled examples against their
  noisy labels), ``train_noisy_clean`` (the same examples against their original labels) and
  ``train_clean`` (the examples not relabelled). A relabelled example may have drawn its own class
  again (about 1/C of them, as in [Z]); it still counts as relabelled.

Online mode ([AA] §3): stage t trains on a prefix of the training view, so the noisy indices are
restricted to the stage's rows. One forward pass per seed over the stage's rows gives all four
splits; the index batches, weights and label arrays are built once per stage (not per evaluation),
padded to the largest stage so the evaluation compiles once per run.

[AA] §4 trains each online stage until the training accuracy reaches 99%. The budget here is
fixed (every call keeps its shape; no early stopping), so with ``'eval'`` the summary reports
:func:`epochs_to_fit`: whether, and after how many epochs, the fixed budget reached
``run.fit_threshold``. A config must show that its budget reaches the threshold.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reinit_jax.train import compiled, feed, build, stream
from reinit_jax.train import loss as loss_
from reinit_jax.train import step as step_

SPLITS = ("train_fit", "train_noisy", "train_noisy_clean", "train_clean")
KEY = "_train_fit"  # the device results' key among the validation/test results


def make_fit_eval(model, augment, per_run: bool = False, seed_axis: str = "auto", runs_mesh=None):
  """The jitted training-set evaluation of every seed (one forward pass for the four splits).

  ``fit(variables (S,...), x (N, ...), y (N,), y_clean (N,), noisy (N,), idx (nb, Be), w (nb, Be),
  nb_run int32) -> (loss (S, 4), acc (S, 4))``, columns in :data:`SPLITS` order: all rows against
  ``y``; rows with ``noisy`` = 1 against ``y`` and against ``y_clean``; rows with ``noisy`` = 0
  against ``y``. Only the first ``nb_run`` batches of ``idx`` run (a while loop: online stages pad
  ``idx`` to the largest stage without computing the padding); padding rows have weight 0. An empty
  split gives loss = accuracy = 0. ``per_run``: ``x``, ``y``, ``y_clean``, ``noisy`` carry the run
  axis (S, N, ...). ``seed_axis`` as in ``step.over_runs``; ``runs_mesh``: the seeds
  split over its 'runs' axis (``step.jit_seeds``).
  """
  key = jax.random.PRNGKey(0)  # eval-mode augmentation is deterministic; the key is unused

  def one(variables, x, y, y_clean, noisy, idx, w, nb_run):
    def body(i, tot):
      ix, ww = idx[i], w[i]
      logits = model.apply(variables, augment(key, x[ix], False), train=False)
      pred = jnp.argmax(logits, -1)
      ce, ce_c = loss_.cross_entropy(logits, y[ix]), loss_.cross_entropy(logits, y_clean[ix])
      hit = (pred == y[ix]).astype(jnp.float32)
      hit_c = (pred == y_clean[ix]).astype(jnp.float32)
      m = noisy[ix] * ww
      # Columns: weight, loss, hits per split (SPLITS order).
      wts = jnp.stack([ww, m, m, ww - m])
      losses = jnp.stack([ce, ce, ce_c, ce])
      hits = jnp.stack([hit, hit, hit_c, hit])
      return tot + jnp.stack([wts.sum(-1), (wts * losses).sum(-1), (wts * hits).sum(-1)])

    tot = jax.lax.fori_loop(0, nb_run, body, jnp.zeros((3, len(SPLITS)), jnp.float32))
    n = jnp.maximum(tot[0], 1.0)
    return tot[1] / n, tot[2] / n

  d = 0 if per_run else None
  fn = step_.over_runs(one, (0, d, d, d, d, None, None, None), seed_axis)
  return step_.jit_seeds(fn, runs_mesh, (True,) + (per_run,) * 4 + (False,) * 3)


def stage_rows(data, stage: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Stage ``stage``'s training labels ``y`` (n,), original labels ``y_clean`` (n,) and relabelled
  mask ``noisy`` (n,) float32, n = len(data.train(stage)): ``noisy_indices`` index the full training
  view, so online stages keep those below the stage's row count ([AA] §3, [Z] §6)."""
  y = np.asarray(data.train(stage).y, np.int32)
  n = len(y)
  noisy = np.zeros(n, np.float32)
  idx = np.asarray(data.noisy_indices, np.int64)
  noisy[idx[idx < n]] = 1.0
  clean = y if data.train_clean_y is None else np.asarray(data.train_clean_y[:n], np.int32)
  return y, clean, noisy


class FitStage(NamedTuple):
  """The stage whose training set is evaluated: its ``number``; per data set its (examples,
  relabelled, clean) ``counts``; the evaluation's device ``inputs`` (x, y, y_clean, noisy, index
  batches, weights, batch count). ``counts`` and ``inputs`` are None when off or streamed."""

  number: int
  counts: list | None = None
  inputs: tuple | None = None


class TrainFit:
  """The training-set evaluation of the runs of a :class:`build.Built` (module docstring).

  ``stage(t, x_dev)`` prepares stage t (once per stage), ``due(end_of_stage)`` says whether an
  evaluation includes the training set, ``launch(variables)`` dispatches it (device arrays, fetched
  together with validation and test), ``collect(fetched, variables)`` returns ``{split: (loss (S,),
  acc (S,))}`` for the non-empty splits.
  """

  def __init__(self, built: build.Built, c):
    self.built, self.mode, self.threshold = built, c.run.eval_train, float(c.run.fit_threshold)
    inputs, pack = built.inputs, built.pack
    # Per run: its point's label noise and the point it belongs to (a packed grid, train/pack.py).
    configs = [pack.configs[p] for p in pack.point_of]
    self.noisy_run = np.asarray([float(pc.data.label_noise) > 0 for pc in configs])
    self.point = np.asarray(pack.point_of)
    self.present = {}  # split -> runs that report it (bool (S,)), set by collect
    self.batch_size = c.run.eval_batch_size
    self.current: FitStage | None = None  # set by stage()
    # In memory (mode not 'off'): the jitted evaluation and the padded shapes it is compiled for.
    self.fit_eval = self.max_rows = self.max_batches = None
    if self.mode == "off":
      return
    if inputs.streaming:  # validation.py: no label noise here
      return
    # Shared with the grid's other points in this process, as build.py's own jitted functions.
    self.fit_eval = compiled.get_or_build("fit", c, built.derived, lambda: make_fit_eval(
        built.parts.model, inputs.data.augment, inputs.per_run, runs_mesh=inputs.place.runs_mesh))
    self.max_rows = max(built.geometry.stage_examples)
    self.max_batches = feed.eval_batches(self.max_rows, self.batch_size,
                                         inputs.place.n)[0].shape[0]

  @property
  def noise(self) -> bool:
    """Whether any run's point has label noise (then the noisy and clean splits are reported)."""
    return bool(self.noisy_run.any())

  def stage(self, t: int, x_dev) -> None:
    """Builds stage t's device inputs: rows padded to the largest stage, index batches padded to
    its batch count (``x_dev``: the stage's training inputs on the devices, the loop's copy)."""
    inputs = self.built.inputs
    if self.mode == "off" or inputs.streaming:
      self.current = FitStage(t)
      return
    runs = inputs.run_data if inputs.per_run else [inputs.data]
    rows = [stage_rows(d, t) for d in runs]
    n = len(rows[0][0])
    counts = [(n, int(nz.sum()), n - int(nz.sum())) for _, _, nz in rows]
    pad = lambda a: np.pad(a, [(0, self.max_rows - n)] + [(0, 0)] * (a.ndim - 1))
    cols = [np.stack([pad(row[i]) for row in rows]) if inputs.per_run else pad(rows[0][i])
            for i in range(3)]
    axis = 1 if inputs.per_run else 0
    if n < self.max_rows:  # online: one shape for every stage, so one compilation per run
      widths = [(0, 0)] * x_dev.ndim
      widths[axis] = (0, self.max_rows - n)
      x_dev = jnp.pad(x_dev, widths)
    idx, w = feed.eval_batches(n, self.batch_size, inputs.place.n)
    nb = idx.shape[0]
    idx = np.pad(idx, ((0, self.max_batches - nb), (0, 0)))
    w = np.pad(w, ((0, self.max_batches - nb), (0, 0)))
    sh = inputs.place.batch(2, 1)
    put = inputs.place.seeded if inputs.per_run else inputs.place.replicate
    self.current = FitStage(t, counts, (x_dev, *put(tuple(cols)), jax.device_put(idx, sh),
                                        jax.device_put(w, sh), np.int32(nb)))

  def due(self, end_of_stage: bool) -> bool:
    """Whether this evaluation includes the training set ('stage': the stage's last; 'eval' and
    'call': all)."""
    return self.mode in ("eval", "call") or (self.mode == "stage" and end_of_stage)

  def launch(self, variables):
    """Dispatches the evaluation on the devices; None when streamed (see :meth:`collect`)."""
    return None if self.built.inputs.streaming else self.fit_eval(variables, *self.current.inputs)

  def collect(self, fetched, variables) -> dict:
    """``{split: (loss (S,), acc (S,))}`` from the fetched ``launch`` output; a streamed training
    view (train_fit only) is read here, un-augmented, with its noisy labels."""
    inputs = self.built.inputs
    if inputs.streaming:
      split = dataclasses.replace(inputs.data.train(self.current.number), train=False)
      return {"train_fit": stream.evaluate(self.built.compiled.eval_fn, variables, split,
                                           self.batch_size, inputs.place,
                                           inputs.data.meta.input_shape)}
    loss, acc = (np.asarray(a) for a in fetched)
    names = SPLITS if self.noise else SPLITS[:1]
    # A split with no example in the data of every seed of a point (e.g. an online stage of clean
    # rows) is not reported for that point; nor are the noise splits of a point without noise.
    counts = np.asarray(self.current.counts)[:, [0, 1, 1, 2]]  # examples per split, per data set
    counts = np.broadcast_to(counts, (len(self.point), 4))  # (S, 4): shared data, every run
    size = np.stack([counts[self.point == p].max(0) for p in self.point])  # its point's largest
    self.present = {}
    for i, name in enumerate(names):
      runs = (size[:, i] > 0) & (self.noisy_run if i else True)
      if runs.any():
        self.present[name] = runs
    return {name: (loss[:, i], acc[:, i]) for i, name in enumerate(names) if name in self.present}

  def summary(self, records: list, seeds: list, stages: int) -> dict:
    """``epochs_to_fit``, ``fit_reached``, ``fit_threshold`` for summary.json ('eval', 'call')."""
    if self.mode not in ("eval", "call"):
      return {}
    return epochs_to_fit(records, seeds, stages, self.threshold)


def epochs_to_fit(records: list, seeds: list, stages: int, threshold: float) -> dict:
  """Per stage and seed, the first epoch (1-based within the stage) whose ``train_fit`` accuracy
  is ≥ ``threshold``, or None if never ([AA] §4 trains every stage to 99% training accuracy).

  Only the evaluations that happened count (every ``run.eval_every_epochs``, and the end of every
  stage): with ``eval_every_epochs=2`` an epoch count is even or the stage's last. Stages 1..
  ``stages`` with any ``train_fit`` record are listed (an interrupted run lists fewer).
  Returns ``{"epochs_to_fit": [[epoch | None] * S per stage], "fit_reached": fraction of
  (stage, seed) pairs that reached it (None when none was evaluated), "fit_threshold"}``.
  """
  first: dict = {}
  seen = set()
  for rec in records:
    if rec.get("split") != "train_fit":
      continue
    t, s = rec["stage"], rec["seed"]
    seen.add(t)
    if rec["accuracy"] >= threshold and (t, s) not in first:
      first[(t, s)] = rec["epoch"]
  out = [[first.get((t, s)) for s in seeds] for t in range(1, stages + 1) if t in seen]
  cells = [e for row in out for e in row]
  reached = sum(e is not None for e in cells) / len(cells) if cells else None
  return {"epochs_to_fit": out, "fit_reached": reached, "fit_threshold": threshold}
