"""launch.py: config files with ``:k=v`` overrides and ``--config.<field>`` flags, the study table."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from reinit_jax.launch import study
from reinit_jax.launch import sweep
from reinit_jax.train.config import fields, get

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(args, timeout=300):
  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_launch_synthetic_with_overrides(tmp_path):
  p = _launch(["--config=configs/synthetic.py:method=shrink_perturb,seeds=2,alpha=2",
               f"--workdir={tmp_path}", "--config.optim.epochs=4", "--config.reinit.stages=2",
               "--config.data.synthetic_test=200", "--config.run.progress=off"])
  assert p.returncode == 0, p.stderr[-2000:]
  assert "shrink_perturb" in p.stdout and str(tmp_path) in p.stdout
  s = json.load(open(tmp_path / "summary.json"))
  assert s["steps"] == 4 and s["events"] == 1 and len(s["test_accuracy"]["per_seed"]) == 2
  c = json.load(open(tmp_path / "config.json"))
  assert c["data"]["synthetic_alpha"] == 2.0 and c["run"]["seeds"] == [0, 1]
  assert c["reinit"]["method"] == "shrink_perturb" and c["optim"]["epochs"] == 4


def test_launch_bad_override_fails_fast(tmp_path):
  p = _launch(["--config=configs/synthetic.py:method=nope", f"--workdir={tmp_path}"], timeout=60)
  assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
  assert p.stderr.strip().splitlines()[-1].startswith("error: config.reinit.method='nope'")


def test_launch_methods_list_makes_subdirs(tmp_path):
  p = _launch(["--config=configs/synthetic.py:epochs=2,stages=2,synthetic_test=100,"
               "method=(standard;full)", f"--workdir={tmp_path}",
               "--config.run.progress=off"])
  assert p.returncode == 0, p.stderr[-2000:]
  for m in ("standard", "full"):
    assert json.load(open(tmp_path / m / "summary.json"))["method"] == m


@pytest.mark.parametrize("flag", ["--help", "--helpfull", "-h"])
def test_help_lists_every_field_with_the_configs_value_without_jax(flag):
  """Help exits 0 and lists ``--config.<section>.<field>=<value>`` for every schema field, with the
  value of the config it is given (configs/default.py without --config=), without importing JAX
  (listing a config must stay instant)."""
  code = ("import runpy, sys\n"
          f"sys.argv = ['launch.py', {flag!r}]\n"
          "try:\n"
          "  runpy.run_path('launch.py', run_name='__main__')\n"
          "except SystemExit as e:\n"
          "  print('EXIT', e.code, 'jax' in sys.modules)\n")
  p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                     capture_output=True, text=True, timeout=120)
  assert p.returncode == 0, p.stderr[-2000:]
  assert p.stdout.strip().splitlines()[-1] == "EXIT 0 False", p.stdout[-500:]
  assert "--config.optim.learning_rate=0.01" in p.stdout and "--config.data.label_noise=0.4" in p.stdout
  assert "--config.run.seeds=(0, 1, 2, 3, 4)" in p.stdout
  assert "--config.reinit.method=('standard', 'shrink_perturb', 'layerwise')" in p.stdout
  default = sweep.load_module("configs/default.py").get_config()
  for dotted in fields():
    value = get(default, dotted)
    value = value.to_dict() if hasattr(value, "to_dict") else value
    assert f"--config.{dotted}={value!r}\n" in p.stdout, dotted
  assert p.stderr.strip() == ""


def test_help_shows_the_given_config_with_its_flags_and_survives_a_closed_pipe():
  env = {**os.environ, "PYTHONPATH": ROOT}
  p = subprocess.run(f"{sys.executable} launch.py --config=configs/label_noise.py:cpu=1 "
                     "--config.optim.epochs=7 --help | head -3; echo rc=${PIPESTATUS[0]}",
                     shell=True, executable="/bin/bash", cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=120)
  assert p.stdout.strip().endswith("rc=0") and p.stderr == "", (p.stdout, p.stderr)
  full = subprocess.run([sys.executable, "launch.py", "--config=configs/label_noise.py:cpu=1",
                         "--config.optim.epochs=7", "--help"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120).stdout
  assert "values of configs/label_noise.py:cpu=1 with the --config.* flags" in full
  assert "--config.data.train_subset=3000\n" in full and "--config.optim.epochs=7\n" in full
  broken = subprocess.run([sys.executable, "launch.py", "--config=configs/nope.py", "--help"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert broken.returncode == 0 and "the schema's defaults (configs/nope.py:" in broken.stdout


@pytest.mark.parametrize("args,want", [
  (["--config.optim.learnig_rate=0.1"], ("did you mean", "optim.learning_rate")),
  (["--config=configs/synthetic.py", "--config.optim.learnig_rate=0.1"],
   ("did you mean", "optim.learning_rate")),
  (["--config.learning_rate=0.1"], ("must name its section", "--config.optim.learning_rate=0.1")),
  (["--config.optim.learning_rate=abc"], ("config.optim.learning_rate='abc'",)),
  (["--config=configs/synthetic.py:seeds=abc"], ("seeds='abc'", "integer")),
  (["--config=configs/synthetic.py:learnig_rate=0.1"], ("did you mean", "learning_rate")),
  (["--config=configs/does_not_exist.py:q=1"], ("--config=configs/does_not_exist.py: no such "
                                                "config file (configs/ holds cifar_resnet18.py,",)),
  (["--config.reinit.method=shrink_perturbb"], ("config.reinit.method='shrink_perturbb'",)),
  (["--config.reinit.methods=('standard',)"], ("did you mean", "reinit.method")),
])
def test_flag_mistakes_are_one_stderr_line_exit_1(args, want, tmp_path):
  """A misspelt, unsectioned or malformed ``--config`` flag or ``:arg``: exit 1 and exactly one
  stderr line naming the field, before any compute."""
  p = _launch(args + [f"--workdir={tmp_path}"], timeout=120)
  lines = [line for line in p.stderr.splitlines() if line.strip()]
  assert p.returncode == 1, p.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-3000:]
  for w in want:
    assert w in lines[0], (w, lines[0])
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_launch_default_no_flags(tmp_path):
  """``python launch.py`` with no flags: the Fashion-MNIST study of configs/default.py."""
  p = _launch([], timeout=1200)
  assert p.returncode == 0, p.stderr[-2000:]
  s = {m: json.load(open(os.path.join(ROOT, "runs", "default", m, "summary.json")))
       for m in ("standard", "shrink_perturb", "layerwise")}
  for m in s:
    assert s[m]["test_accuracy"]["mean"] > 0.5
  # What the study shows (configs/default.py): standard training memorizes the noisy labels and
  # ends far below Shrink & Perturb, by more than the seeds' spread; its final accuracy falls below
  # its best one.
  final = {m: np.asarray(s[m]["final_test_accuracy"]["per_seed"]) for m in s}
  gap = final["shrink_perturb"].mean() - final["standard"].mean()
  assert gap > 3 * (final["shrink_perturb"].std() + final["standard"].std()) and gap > 0.05, final
  assert (final["shrink_perturb"] > final["standard"]).all()
  assert np.mean(study.memorized(s["standard"])) > 0.8 > 0.3 > np.mean(
      study.memorized(s["shrink_perturb"]))
  assert "noisy labels memorized" in p.stdout and "learning curves: " in p.stdout
  assert os.path.getsize(os.path.join(ROOT, "runs", "default", "curves.png")) > 1000


def test_one_cpu_device_per_core_keeps_a_users_count(monkeypatch):
  from reinit_jax.backends import cpu_host as devices
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
  devices.one_cpu_device_per_core()
  cores = len(os.sched_getaffinity(0))
  assert os.environ["XLA_FLAGS"] == ("--xla_cpu_enable_fast_math=false "
                                     f"--xla_force_host_platform_device_count={cores}")
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  devices.one_cpu_device_per_core()
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8"


def test_compilation_cache_is_shared_by_processes(tmp_path):
  """run.compilation_cache: the first process writes its compiled programs to the directory, the
  next one (another grid point, or a re-run) finds them and ends with the same params; 'off' and a
  directory that cannot be made write nothing, the latter with a warning, and the run goes on."""
  cache = tmp_path / "cache"
  args = ["--config=configs/synthetic.py:method=standard,epochs=4,stages=2,synthetic_test=200",
          "--config.run.progress=off"]
  p = _launch(args + [f"--workdir={tmp_path / 'a'}", f"--config.run.compilation_cache={cache}"])
  assert p.returncode == 0, p.stderr[-2000:]
  entries = set(os.listdir(cache))
  assert any(e.endswith("-cache") for e in entries), entries
  p = _launch(args + [f"--workdir={tmp_path / 'b'}", f"--config.run.compilation_cache={cache}"])
  assert p.returncode == 0, p.stderr[-2000:]
  assert set(os.listdir(cache)) >= entries
  digest = lambda d: json.load(open(tmp_path / d / "summary.json"))["params_digest"]
  assert digest("a") == digest("b")
  blocked = tmp_path / "file"
  blocked.write_text("")
  p = _launch(args + [f"--workdir={tmp_path / 'c'}",
                      f"--config.run.compilation_cache={blocked / 'sub'}"])
  assert p.returncode == 0 and "cannot be used" in p.stderr, p.stderr[-2000:]
  assert digest("c") == digest("a")
  env_cache = tmp_path / "env_cache"
  p = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args,
                      f"--workdir={tmp_path / 'd'}", "--config.run.compilation_cache=off"],
                     cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT,
                                    "REINIT_JAX_CACHE": str(env_cache)},
                     capture_output=True, text=True, timeout=300)
  assert p.returncode == 0 and not env_cache.exists(), p.stderr[-2000:]
