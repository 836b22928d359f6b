#!/usr/bin/env bash
# Smoke test of the measurement side on the GPU machine (about 6 min): environment, a small layer
# sweep with the large corners (memory skips), the GPU tests, a small whole-model sweep, NVTX off
# and eager decode for the overheads. Logs and a tarball of the results go to $OUT.
#   source .gpu/activate.sh; scripts/gpu_smoke.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
OUT=${OUT:-out}; mkdir -p "$OUT"
R=/tmp/smoke-results; rm -rf "$R"; mkdir -p "$R"
say() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; tar czf "$OUT/smoke-results.tgz" -C "$R" .; }
run() { local t=$1; shift; timeout "$t" python3 -m perfbench run "$@"; echo "rc=$?"; }
{
  say env; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv
  python3 -m perfbench env; python3 -m perfbench env --json > "$OUT/env.json"
  say "layer sweep"
  run 120 --layer all --phase prefill,decode --batch 1,64 --seqlen 1k,32k --out "$R/layers"
  say "gpu tests"
  timeout 100 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_layers_gpu.py tests/test_stack.py; echo "rc=$?"
  say "model sweep"
  run 70 --model all --phase prefill,decode --batch 1,8 --seqlen 4k --repeats 3 --warmup 1 --out "$R/models"
  say "nvtx off"
  run 25 --layer mamba2,attention,mlp --phase decode --batch 1,64 --seqlen 1k --no-nvtx --out "$R/nvtx-off"
  say "eager decode"
  run 25 --layer mamba2,attention,mlp --phase decode --batch 1,64 --seqlen 1k --eager --out "$R/eager"
  say done
} 2>&1 | tee "$OUT/smoke.log"
