"""The report's training-set sections (reinit_jax/analysis/fit_report.py; [Z] §6, [AA] §4): test
accuracy at the final epoch with its sign tests, per-stage training-set accuracy, epochs to fit."""

import json
import os

from reinit_jax.analysis import report
from reinit_jax.launch import base_config
from reinit_jax.train.workdir import config_json


def _workdir(root, method, *, final, best, fit, epochs=None):
  """A workdir as the engine writes it: 2 seeds, 2 stages; ``fit[t][split]`` per-seed accuracies."""
  d = os.path.join(root, method)
  os.makedirs(d)
  c = base_config()
  c.name, c.data.dataset, c.data.label_noise, c.reinit.method = method, "synthetic", 0.4, method
  c.run.seeds = (0, 1)
  stages = []
  for t, splits in enumerate(fit, start=1):
    metrics = [dict(step=t, stage=t, epoch=2, split=name, loss=1.0, accuracy=acc[s], seed=s)
               for name, acc in splits.items() for s in (0, 1)]
    stages.append(dict(stage=t, step=t, metrics=metrics))
  ms = lambda v: dict(mean=sum(v) / 2, std=abs(v[0] - v[1]) / 2, per_seed=list(v))
  summary = dict(method=method, seeds=[0, 1], test_accuracy=ms(best),
                 best_validation_accuracy=ms([0.5, 0.5]), final_test_accuracy=ms(final),
                 stages=stages)
  if epochs is not None:
    summary.update(epochs_to_fit=epochs, fit_reached=0.5, fit_threshold=0.99)
  for name, obj in (("config.json", config_json(c)), ("summary.json", summary)):
    with open(os.path.join(d, name), "w") as f:
      json.dump(obj, f)
  open(os.path.join(d, "metrics.jsonl"), "w").close()
  return d


def test_final_accuracy_stage_fit_and_epochs_tables(tmp_path):
  root = str(tmp_path / "runs")
  fit = [{"train_fit": (0.7, 0.8), "train_noisy": (0.4, 0.6), "train_noisy_clean": (0.3, 0.3),
          "train_clean": (0.9, 0.9), "test": (0.5, 0.7)},
         {"train_fit": (0.9, 1.0), "train_noisy": (0.8, 1.0), "train_noisy_clean": (0.1, 0.1),
          "train_clean": (1.0, 1.0), "test": (0.6, 0.6)}]
  _workdir(root, "standard", final=(0.6, 0.62), best=(0.8, 0.82), fit=fit,
           epochs=[[2, None], [1, 3]])
  _workdir(root, "shrink_perturb", final=(0.7, 0.72), best=(0.79, 0.81), fit=fit[:1])
  md = open(report.report([root], str(tmp_path / "out"))).read()
  row = "synthetic/mlp aug=none sched=constant q=0.4 α=1"
  # Best validation: standard ahead; final epoch: shrink_perturb ahead on both seeds.
  assert f"| {row} | 80.00 ± 1.00 (n=2) | **81.00 ± 1.00 (n=2)** |" in md
  final = md.split("## Test accuracy (%) at the final epoch", 1)[1]
  assert f"| {row} | **71.00 ± 1.00 (n=2)** | 61.00 ± 1.00 (n=2) |" in final
  assert "| shrink_perturb | standard | 2 | 2 | 0 | 0 | 0.5 | 0.5 | no |" in final
  # The stage table: the four training-set splits and the stage's test accuracy ([AA] §4).
  assert (f"| {row} | standard | 2 | 95.00 ± 5.00 | 90.00 ± 10.00 | 10.00 ± 0.00 | 100.00 ± 0.00 "
          "| 60.00 ± 0.00 |") in md
  assert (f"| {row} | shrink_perturb | 1 | 75.00 ± 5.00 | 50.00 ± 10.00 | 30.00 ± 0.00 | "
          "90.00 ± 0.00 | 60.00 ± 10.00 |") in md
  assert f"| {row} | standard | 99% | 2 (1/2) | 2.0 ± 1.0 (2/2) |" in md
  assert f"| {row} | shrink_perturb | 99%" not in md  # no epochs_to_fit recorded


def test_sections_absent_without_the_records(tmp_path):
  root = str(tmp_path / "runs")
  d = _workdir(root, "standard", final=(0.6, 0.62), best=(0.8, 0.82), fit=[])
  s = json.load(open(os.path.join(d, "summary.json")))
  del s["final_test_accuracy"]
  json.dump(s, open(os.path.join(d, "summary.json"), "w"))
  md = open(report.report([root], str(tmp_path / "out"))).read()
  for head in ("at the final epoch", "Training-set accuracy", "Epochs to fit"):
    assert head not in md


def test_report_on_engine_runs_with_eval_train(tmp_path):
  from reinit_jax import train
  from train_helpers import tiny_config
  for method in ("standard", "shrink_perturb"):
    train.run(tiny_config(method=method, label_noise=0.4, eval_train="eval", seeds=(0, 1),
                          max_steps_per_call=1, eval_every_epochs=1),
              str(tmp_path / "runs" / method))
  md = open(report.report([str(tmp_path / "runs")], str(tmp_path / "out"))).read()
  table = md.split("## Training-set accuracy", 1)[1].split("##", 1)[0]
  assert table.count("| synthetic/mlp") == 6  # 2 methods × 3 stages
  epochs = md.split("## Epochs to fit", 1)[1].split("##", 1)[0]
  assert epochs.count("| synthetic/mlp") == 2 and "| stage 3 |" in epochs
  assert "## Sign tests at the final epoch" in md
