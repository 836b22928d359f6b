#!/usr/bin/env bash
# Real captures for issue 5 (`perfbench trace`) on the GPU machine, one prefill and one decode
# point per layer type (mamba, mamba2, attention, mlp): Nsight Systems, Nsight Compute, and a
# torch.profiler trace; then small gzipped copies for tests/data/ (the form the tests read) and the
# Parquet tables into $OUT.
#
# From the repository root, each stage in its own device command (each fits in < 10 min; traces/
# survives between commands while the machine stays warm):
#   source .gpu/activate.sh; scripts/gpu_trace.sh nsys
#   source .gpu/activate.sh; scripts/gpu_trace.sh ncu
#   source .gpu/activate.sh; scripts/gpu_trace.sh torch collect
# Stages: nsys | ncu | torch | collect | test | all (nsys ncu torch collect).
set -euo pipefail

OUT=${OUT:-out}
TRACES=${TRACES:-traces/gpu}
LAYERS=${LAYERS:-mamba,mamba2,attention,mlp}
LAUNCHES=${LAUNCHES:-64}  # ncu: launches profiled per point (>= 2 steps of every layer)
PREFILL=(--phase prefill --batch 8 --seqlen 4096)
DECODE=(--phase decode --batch 64 --seqlen 4096)
QUICK=(--run-arg=--max-repeats=20 --run-arg=--target-ms=50)  # few timed calls: small reports
STORE=(--store "$TRACES/store")

say() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

preflight() {
  python3 -c "import pyarrow, nvtx, torch; assert torch.cuda.is_available()" \
    || { echo "gpu_trace.sh: needs pyarrow, nvtx (source .gpu/activate.sh) and a CUDA GPU" >&2; exit 2; }
}

stage_nsys() {
  command -v nsys >/dev/null || { echo "gpu_trace.sh: nsys not on PATH (source .gpu/activate.sh)" >&2; exit 2; }
  nsys --version || true
  say "nsys prefill"
  python3 -m perfbench trace --layer "$LAYERS" "${PREFILL[@]}" "${QUICK[@]}" --out "$TRACES" "${STORE[@]}"
  say "nsys decode"
  python3 -m perfbench trace --layer "$LAYERS" "${DECODE[@]}" "${QUICK[@]}" --out "$TRACES" "${STORE[@]}"
}

stage_ncu() {
  command -v ncu >/dev/null || { echo "gpu_trace.sh: ncu not on PATH" >&2; exit 2; }
  ncu --version | tail -n 1 || true
  say "ncu prefill"
  python3 -m perfbench trace --ncu --layer "$LAYERS" "${PREFILL[@]}" "${QUICK[@]}" \
    --launch-count "$LAUNCHES" --out "$TRACES" "${STORE[@]}"
  say "ncu decode"
  python3 -m perfbench trace --ncu --layer "$LAYERS" "${DECODE[@]}" "${QUICK[@]}" \
    --launch-count "$LAUNCHES" --out "$TRACES" "${STORE[@]}"
}

stage_torch() {
  say "torch.profiler decode (mamba2)"
  python3 -m perfbench trace --torch-profiler --layer mamba2 "${DECODE[@]}" \
    --run-arg=--max-repeats=5 --run-arg=--repeats=3 --out "$TRACES" "${STORE[@]}"
}

newest() { ls -t $1 2>/dev/null | head -n 1; }

stage_collect() {
  say "collect into $OUT"
  mkdir -p "$OUT/data" "$OUT/store" "$OUT/manifests"
  local f
  f=$(newest "$TRACES/*/*_prefill.sqlite"); [ -n "$f" ] && python3 -m perfbench.traces.trim sqlite "$f" "$OUT/data/nsys_layers_prefill.sqlite" --max-kernels 40
  f=$(newest "$TRACES/*/*_decode.sqlite"); [ -n "$f" ] && python3 -m perfbench.traces.trim sqlite "$f" "$OUT/data/nsys_layers_decode.sqlite" --max-kernels 40
  f=$(newest "$TRACES/*/mamba2_decode_B_64_L_4096.ncu.csv"); [ -n "$f" ] && python3 -m perfbench.traces.trim ncu "$f" "$OUT/data/ncu_mamba2_decode.ncu.csv" --max-kernels 48
  f=$(newest "$TRACES/*/*.torch.json"); [ -n "$f" ] && python3 -m perfbench.traces.trim torch "$f" "$OUT/data/torch_mamba2_decode.torch.json" --max-kernels 40
  gzip -9 -n -f "$OUT"/data/*.sqlite "$OUT"/data/*.ncu.csv "$OUT"/data/*.torch.json 2>/dev/null || true
  cp "$TRACES"/store/*.parquet "$OUT/store/" 2>/dev/null || true
  for m in "$TRACES"/*/trace.json; do cp "$m" "$OUT/manifests/$(basename "$(dirname "$m")").json"; done
  python3 -m perfbench.traces.summary "$TRACES" | tee "$OUT/summary.md"
  ls -la "$OUT/data" "$OUT/store"
}

stage_test() {
  say "GPU tests of the trace command"
  python3 -m pytest -q -m gpu tests/test_trace_gpu.py 2>&1 | tail -n 20
}

preflight
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(all)
for stage in "${stages[@]}"; do
  case "$stage" in
    nsys) stage_nsys ;;
    ncu) stage_ncu ;;
    torch) stage_torch ;;
    collect) stage_collect ;;
    test) stage_test ;;
    all) stage_nsys; stage_ncu; stage_torch; stage_collect ;;
    *) echo "gpu_trace.sh: unknown stage $stage (nsys, ncu, torch, collect, test, all)" >&2; exit 2 ;;
  esac
done
