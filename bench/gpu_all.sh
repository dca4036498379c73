#!/usr/bin/env bash
# Every GPU measurement of issues 13 and 14 in one command, < 8 min on one H200:
#
#   bash bench/gpu_all.sh              # on the GPU host (jax+CUDA, flax, optax, orbax, torch; no
#                                      # tensorflow, tensorflow-datasets or ml_collections needed)
#   bash bench/gpu_all.sh --dry-run    # the same steps at tiny sizes, on a CPU, to check the script
#
# Steps, in order of priority (a step is skipped once BUDGET_S seconds have passed):
#   (a) bench_step_vs_torch.py: ResNet-18 CIFAR width 1, bf16, batch 512; JAX 1 and 8 steps per call
#       vs PyTorch eager and torch.compile (autocast bf16, channels_last), images/s side by side,
#       TFLOP/s from the analytic FLOP count and the fraction of each PEAK_TFLOPS figure.
#   (b) bench_events.py: every method's event ÷ step on the same model, batch and dtype, with the
#       k-smallest selection by 'sort' (the GPU default: a sort per tensor), 'sort_batched' (equal
#       sizes stacked) and 'bracket' (the CPU default), side by side.
#   (c) SLOT for bench/bench_run.py (issue 13: train.run end to end vs the step benchmark); runs only
#       where the file exists, with BENCH_RUN_ARGS (default: --quick).
#   (d) SLOT for issue 13's grid in one process: the 100-seed synthetic grid with --sweep=all, timed;
#       runs only with SWEEP_ALL=1 and ml_collections importable (ML_COLLECTIONS_WHEEL=path/to.whl is
#       installed into a temporary directory first).
#   (e) bench_seeds.py --quick: K = 8 vmapped seeds vs one run (issue 6 goal 4, "needs a GPU").
#
# Outputs under $OUT (the device tool's folder) or bench/gpu_out: <step>.log, <step>.json (the
# benchmark's last line) and summary.txt. Environment: PYTHON (default python), PEAK_TFLOPS (default
# 989.5,790: the H200 SXM datasheet's dense bf16 figure, and the ~790 of issue 14), BUDGET_S (420;
# no limit in --dry-run), ONLY (a space-separated list of steps: step_vs_torch events bench_run
# sweep_all seeds).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUTDIR=${OUT:-bench/gpu_out}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python}
PEAKS=${PEAK_TFLOPS:-989.5,790}
BUDGET_S=${BUDGET_S:-$([ $DRY = 1 ] && echo 100000 || echo 420)}
ONLY=${ONLY:-}  # e.g. ONLY="events seeds": run only these steps (a rerun of a failed part)
# JAX and PyTorch share the GPU in (a): JAX preallocates this fraction, PyTorch allocates from the rest.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}
START=$(date +%s)
[ -z "$ONLY" ] && : > "$OUTDIR/summary.txt"  # a rerun of some steps appends

say() { echo "$*" | tee -a "$OUTDIR/summary.txt"; }

run() {  # run NAME LIMIT_S CMD...: log to NAME.log, last line to NAME.json, a status line
  local name=$1 limit=$2
  shift 2
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then
    return
  fi
  local now=$(( $(date +%s) - START ))
  if [ "$now" -ge "$BUDGET_S" ]; then
    say "== $name: skipped (${now} s elapsed >= BUDGET_S=$BUDGET_S)"
    return
  fi
  say "== $name: $*"
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUTDIR/$name.log" 2>&1
  local rc=$?
  tail -n 1 "$OUTDIR/$name.log" > "$OUTDIR/$name.json"
  grep -v '^{' "$OUTDIR/$name.log" | grep -v '^ ' | tail -n 30 | tee -a "$OUTDIR/summary.txt"
  say "   $name: rc=$rc ($([ $rc = 124 ] && echo "timed out after $limit s, " )$(( $(date +%s) - t0 )) s)"
}

say "gpu_all.sh $([ $DRY = 1 ] && echo '--dry-run ')$(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null)"
(nvidia-smi -L 2>/dev/null || echo "no nvidia-smi") | tee -a "$OUTDIR/summary.txt"
$PY - <<'EOF' 2>&1 | tee -a "$OUTDIR/summary.txt"
import importlib.util, jax
print("jax", jax.__version__, jax.default_backend(), [d.device_kind for d in jax.devices()])
for m in ("torch", "flax", "optax", "orbax", "tensorflow", "tensorflow_datasets", "ml_collections"):
  spec = importlib.util.find_spec(m.split(".")[0])
  print(f"  {m}: {'present' if spec else 'absent'}")
EOF

if [ $DRY = 1 ]; then
  STEP_ARGS="--width 0.125 --batch 8 --steps-per-call 2 --rounds 2"
  EVENT_ARGS="--width 0.125 --batch 8 --norm-batch 8 --rounds 2 --methods layerwise,magnitude,random_subset,shrink_perturb"
  LIMIT_A=900; LIMIT_B=900; LIMIT_C=900
else
  STEP_ARGS="--width 1 --batch 512 --steps-per-call 8 --rounds 7"
  EVENT_ARGS="--width 1 --batch 512 --rounds 7"
  LIMIT_A=200; LIMIT_B=240; LIMIT_C=90
fi

# (a) the step, JAX vs PyTorch (issue 14 goal: >= 100,000 images/s and >= 1.5x PyTorch eager)
run step_vs_torch $LIMIT_A $PY bench/bench_step_vs_torch.py --model resnet18 --dtype bfloat16 \
  --impls xla --torch-compile --peak-tflops "$PEAKS" $STEP_ARGS

# (b) events ÷ step, both selection implementations (issue 14 goal: every ratio <= 0.3)
run events $LIMIT_B $PY bench/bench_events.py --model resnet18 --dtype bfloat16 \
  --select-impls sort,sort_batched,bracket $EVENT_ARGS

# (c) ======== SLOT: bench/bench_run.py (issue 13, written separately) ========
if [ -f bench/bench_run.py ]; then
  run bench_run $LIMIT_C $PY bench/bench_run.py ${BENCH_RUN_ARGS:---quick}
else
  say "== bench_run: bench/bench_run.py not present: skipped (slot for issue 13)"
fi

# (d) ======== SLOT: the 100-seed synthetic grid in one process (issue 13, --sweep=all) ========
if [ "${SWEEP_ALL:-0}" = 1 ]; then
  if ! $PY -c "import ml_collections" 2>/dev/null && [ -n "${ML_COLLECTIONS_WHEEL:-}" ]; then
    MLC_DIR=$(mktemp -d)
    $PY -m pip install --quiet --no-index --no-deps --target "$MLC_DIR" "$ML_COLLECTIONS_WHEEL" \
      && export PYTHONPATH="$MLC_DIR${PYTHONPATH:+:$PYTHONPATH}"
  fi
  if $PY -c "import ml_collections" 2>/dev/null; then
    SEEDS=$([ $DRY = 1 ] && echo 2 || echo 100)
    run sweep_all $LIMIT_C $PY launch.py --config="configs/synthetic.py:seeds=$SEEDS" --sweep=all \
      --workdir="$(mktemp -d)"
  else
    say "== sweep_all: ml_collections not importable (set ML_COLLECTIONS_WHEEL): skipped"
  fi
else
  say "== sweep_all: SWEEP_ALL=1 not set: skipped (slot for issue 13)"
fi

# (e) seeds in parallel (issue 6 goal 4 needs a GPU)
run seeds $LIMIT_C $PY bench/bench_seeds.py --quick

say "total $(( $(date +%s) - START )) s"
