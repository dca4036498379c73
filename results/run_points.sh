#!/bin/sh
# Runs the commands of `launch.py --sweep=list` read from stdin, one after another, skipping points
# whose workdir already holds summary.json. A persistent XLA compilation cache lets points with the
# same shapes (all methods of one grid) reuse the compiled train step.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/reinit_jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.5
while IFS= read -r cmd; do
  wd=$(printf '%s\n' "$cmd" | sed -n 's/.*--workdir=\([^ ]*\).*/\1/p')
  if [ -n "$wd" ] && [ -f "$wd/summary.json" ]; then
    echo "skip (done): $wd"
    continue
  fi
  echo "run: $cmd"
  sh -c "$cmd" < /dev/null
done
