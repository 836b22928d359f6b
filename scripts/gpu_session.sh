#!/usr/bin/env bash
# On the device: the steps of one lease, by section, each resumable (state under /tmp/pb survives
# between calls while the machine stays warm; every section also copies what it made to $OUT).
#   suite     the what-if held-out suite (benchmarks/whatif/suite.toml layers and models, plus the
#             Hugging Face configs of tests/data/hf: Qwen3-8B, Qwen2.5-7B, Llama-3.2-1B, Nemotron-H-8B),
#             prefill and decode at points off the sweep's powers of two; never fitted
#   families  the kernel families over their hyper-parameters into a copy of the bundled calibration
#   grid      the design-space GEMM grid into that copy
#   targeted  a targeted calibration of mamba2-hybrid-8b
# Usage (kit: mamba_ssm + causal_conv1d): source .gpu-lean/activate.sh; scripts/gpu_session.sh suite
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
OUT=${OUT:-out}; STATE=/tmp/pb; mkdir -p "$OUT" "$STATE"
gpu=$(python3 -c "import torch; print('h200' if 'H200' in torch.cuda.get_device_name(0) else 'h100')")
nvidia-smi --query-gpu=name,temperature.gpu,power.draw,clocks.sm --format=csv,noheader
suite=benchmarks/whatif/suite.toml
names() { python3 -c "import tomllib; print(','.join(tomllib.load(open('$suite','rb'))['$1']))"; }
measure() {  # STAGE_S run options...
  local limit=$1; shift
  timeout "$limit" python3 -m perfbench run --out "$STATE/whatif-$gpu" --resume --no-nvtx --target-ms 60 "$@" \
    2>&1 | grep -vE "^\s*$" | tail -n 3 | tee -a "$OUT/session.log"
}
cal="$STATE/$gpu-design.json"
[ -f "$cal" ] || python3 -c "import sys; from pathlib import Path; from analytic.calibration import bundled_path, read_calibration_data, write_calibration_data; write_calibration_data(Path(sys.argv[2]), read_calibration_data(bundled_path(sys.argv[1])))" "$gpu" "$cal"
for section in "$@"; do
  echo "== $section $(date -u +%H:%M:%SZ)" | tee -a "$OUT/session.log"
  case $section in
    suite)
      layers=$(names layers); models=$(names models)
      measure 75 --models-file $suite --layer "$layers" --phase prefill --batch 1,6 --seqlen 1500,5000
      measure 60 --models-file $suite --layer "$layers" --phase decode --batch 2,24 --seqlen 1500,6000
      measure 120 --models-file $suite --model "$models" --phase prefill --batch 1,3 --seqlen 1200,3000 --repeats 3 --warmup 1
      measure 110 --models-file $suite --model "$models" --phase decode --batch 2,24 --seqlen 2000,7000
      for hf in Qwen3-8B Qwen2.5-7B Llama-3.2-1B Nemotron-H-8B-Base-8K; do
        measure 40 --hf-config tests/data/hf/$hf --phase prefill,decode --batch 2,12 --seqlen 1800
      done
      tar czf "$OUT/whatif-$gpu.tgz" -C "$STATE" "whatif-$gpu"
      python3 -m perfbench compare "$STATE/whatif-$gpu" 2>&1 | tail -n 60 ;;
    families)
      timeout 420 python3 -m perfbench calibrate --refit "$cal" --out "$cal" --remeasure \
        selective_scan_shapes,ssd_shapes,state_update_shapes,conv1d_shapes,attention_prefill_shapes,attention_decode_shapes \
        2>&1 | tee "$OUT/families.log" | grep -E "FAILED|estimated|total|wrote" | tail -n 12
      cp "$cal" "$OUT/" ;;
    grid)
      timeout 500 python3 -m perfbench calibrate --refit "$cal" --out "$cal" --remeasure gemm \
        2>&1 | tee "$OUT/grid.log" | grep -E "FAILED|estimated|total|wrote" | tail -n 12
      cp "$cal" "$OUT/" ;;
    targeted)
      timeout 240 python3 -m perfbench calibrate --model mamba2-hybrid-8b --out "$STATE/$gpu-hybrid.json" \
        2>&1 | tee "$OUT/targeted.log" | tail -n 5
      cp "$STATE/$gpu-hybrid.json" "$OUT/" ;;
    *) echo "unknown section $section" ;;
  esac
done
echo "== done $(date -u +%H:%M:%SZ)" | tee -a "$OUT/session.log"
