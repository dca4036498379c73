"""A whole grid with ``--sweep=all``: points packed on the run axis against points one by one.

Runs ``python launch.py --config=<config> --sweep=all`` from a cold start (a fresh process and
workdir, no persistent compilation cache) twice per round: ``run.pack='auto'`` (points that differ
only in values train as one pack, ``reinit_jax/train/pack.py``) and ``run.pack='off'`` (every point
alone). Prints each wall time, the sum over points of the summary's time breakdown, the ratio
off ÷ packed, and checks that every point's params_digest is the same both ways. Last line JSON.

``--processes K``: instead, the first K points as K ``launch.py --sweep=<i>`` processes (a
scheduler's array job), without a compilation cache and with JAX's persistent cache in a fresh
directory shared by the K processes (``run.compilation_cache``): wall times, summed compile
phases, the ratio, and the digests compared.

    python bench/bench_grid.py --config=configs/synthetic.py:seeds=10              # [LW] §1.1 main grid
    python bench/bench_grid.py --config=configs/synthetic.py:seeds=10,grid=l2      # α × {BL, LW} × L2
    python bench/bench_grid.py --quick                                             # seeds=3, 180 steps
    python bench/bench_grid.py --smoke      # grid=rescale (3 points), 2 seeds, 10 steps
    python bench/bench_grid.py --config=configs/synthetic.py:seeds=10 --processes 6  # one process a point
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("startup", "compile", "train", "evaluate", "checkpoint", "event")


def _launch(config: str, args: list[str]) -> None:
  """``launch.py --config=<config> <args>`` in a new process, the progress line off; JAX's
  compilation cache only as ``args`` set it (run.compilation_cache), never from the environment."""
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
  p = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), f"--config={config}",
                      "--config.run.progress=off", *args], cwd=ROOT, env=env,
                     capture_output=True, text=True)
  if p.returncode:
    raise SystemExit(f"launch.py {' '.join(args)} failed:\n{p.stderr[-3000:]}")


def grid_once(config: str, pack: str, extra: list[str]) -> dict:
  """Wall time, summed phases and per-point digests of one cold ``--sweep=all``."""
  wd = tempfile.mkdtemp(prefix=f"bench_grid_{pack}_")
  t0 = time.perf_counter()
  _launch(config, ["--sweep=all", f"--workdir={wd}", f"--config.run.pack={pack}",
                   "--config.run.compilation_cache=off", *extra])
  wall = time.perf_counter() - t0
  phases, digests = dict.fromkeys(PHASES, 0.0), {}
  seen = set()
  for name in sorted(os.listdir(wd)):
    if name.startswith("."):
      continue
    s = json.load(open(os.path.join(wd, name, "summary.json")))
    digests[name] = s["params_digest"]
    key = json.dumps(s["times"], sort_keys=True)  # a pack's points share its breakdown: once
    if key not in seen:
      seen.add(key)
      for k in PHASES:
        phases[k] += s["times"].get(k, 0.0)
  shutil.rmtree(wd)
  return {"wall_s": wall, "phases": phases, "digests": digests}


def processes_once(config: str, k: int, cache: bool, extra: list[str]) -> dict:
  """Wall time, summed compile phases and digests of the first ``k`` points, one process each."""
  wd = tempfile.mkdtemp(prefix="bench_grid_proc_")
  where = os.path.join(wd, ".cache") if cache else "off"
  t0 = time.perf_counter()
  for i in range(k):
    _launch(config, [f"--sweep={i}", f"--workdir={wd}", f"--config.run.compilation_cache={where}",
                     *extra])
  wall = time.perf_counter() - t0
  compile_s, digests = 0.0, {}
  for name in sorted(os.listdir(wd)):
    if not name.startswith("."):
      s = json.load(open(os.path.join(wd, name, "summary.json")))
      digests[name], compile_s = s["params_digest"], compile_s + s["times"]["compile"]
  shutil.rmtree(wd)
  return {"wall_s": wall, "compile_s": compile_s, "digests": digests}


def main_processes(config: str, k: int, extra: list[str]) -> None:
  off, on = processes_once(config, k, False, extra), processes_once(config, k, True, extra)
  same = off["digests"] == on["digests"]
  ratio = off["wall_s"] / on["wall_s"]
  print(f"{config}: {k} points, one process each: no cache {off['wall_s']:.1f} s (compile "
        f"{off['compile_s']:.1f} s), shared cache {on['wall_s']:.1f} s (compile "
        f"{on['compile_s']:.1f} s): {ratio:.2f}×; digests equal: {same}")
  print(json.dumps({"config": config, "processes": k, "no_cache_s": off["wall_s"],
                    "cache_s": on["wall_s"], "speedup": ratio, "compile_no_cache_s":
                    off["compile_s"], "compile_cache_s": on["compile_s"], "digests_equal": same}))


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="configs/synthetic.py:seeds=10")
  ap.add_argument("--rounds", type=int, default=1, help="alternating rounds of (packed, off)")
  ap.add_argument("--quick", action="store_true", help="seeds=3 and 180 steps (9 stages of 20)")
  # Not common.add_size_flags: importing common tunes this process's malloc (and starts JAX).
  ap.add_argument("--smoke", action="store_true", help="the same code path at a tiny size: the "
                  "3-point rescale grid, 2 seeds, 10 steps, 200 test examples (with --processes: "
                  "its first K points)")
  ap.add_argument("--processes", type=int, default=0,
                  help="the first K points as K processes, without and with a shared cache")
  args = ap.parse_args()
  config, extra = args.config, []
  if args.quick:
    config, extra = "configs/synthetic.py:seeds=3", ["--config.optim.epochs=180"]
  if args.smoke:
    config = "configs/synthetic.py:seeds=2,grid=rescale"
    extra = ["--config.optim.epochs=10", "--config.data.synthetic_test=200"]
  if args.processes:
    return main_processes(config, args.processes, extra)
  res = {"auto": [], "off": []}
  for r in range(args.rounds):
    for pack in (("auto", "off") if r % 2 == 0 else ("off", "auto")):
      res[pack].append(grid_once(config, pack, extra))
      one = res[pack][-1]
      print(f"round {r} pack={pack:4s} wall {one['wall_s']:6.1f} s  " +
            "  ".join(f"{k} {v:5.1f}" for k, v in one["phases"].items()), flush=True)
  same = all(a["digests"] == b["digests"] for a, b in zip(res["auto"], res["off"]))
  best = {k: min(x["wall_s"] for x in v) for k, v in res.items()}
  ratio = best["off"] / best["auto"]
  print(f"{config}: packed {best['auto']:.1f} s, one by one {best['off']:.1f} s: "
        f"{ratio:.2f}× faster packed; digests equal: {same}")
  print(json.dumps({"config": config, "extra": extra, "packed_s": best["auto"],
                    "off_s": best["off"], "speedup": ratio, "digests_equal": same,
                    "points": len(res["auto"][0]["digests"]),
                    "phases_packed": res["auto"][0]["phases"],
                    "phases_off": res["off"][0]["phases"]}))


if __name__ == "__main__":
  main()
