#!/usr/bin/env bash
# On the device: the steps of one lease by section, one section a run() call (each fits in <= 9.5 min on
# an H100 or H200; state under /tmp/pb survives between calls while the machine stays warm, and every
# section also copies what it made to $OUT).
#   suite        the what-if held-out suite (benchmarks/whatif/suite.toml layers and models, plus the
#                Hugging Face configs of tests/data/hf: Qwen3-8B, Qwen2.5-7B, Llama-3.2-1B, Nemotron-H-8B),
#                prefill and decode at points off the sweep's powers of two; never fitted   (H100 ~3 min);
#                WHATIF_POINTS=2 takes a second set of points, off the first's (or set WI_* below)
#   families     the kernel families over their hyper-parameters and the l2_resident GEMVs (~15 s) into a
#                copy of the bundled calibration
#                (H100 ~4 min; estimate H200 168 s: `perfbench calibrate --dry-run --refit F --remeasure ...`)
#   grid         the design-space GEMM grid into that copy            (H100 ~6 min; estimate H200 415 s)
#   host         this lease's host: its probe, `calibrate --remeasure host` into that copy (estimate 148 s),
#                and host-bound points timed the way the what-if suite times them: the paper's Mamba-2, MHA
#                and MLP layers and two what-if layers at B=1, and two small models, prefill (~4 min)
#   targeted     a targeted calibration of mamba2-hybrid-8b             (H100 65 s of GPU time)
# The copy is $STATE/<gpu>-design.json; a fresh machine starts it from calibrations/<gpu>-design.json when
# that file is in the working tree (untracked files travel with run()), else from the bundled file.
#
# The H200 lease, for the lead (kind nvidia-h200; no carry needed: calibrations/ is neither tracked nor
# ignored, so a file copied there travels; the kit is on the device):
#   1. run(kind="nvidia-h200", timeout_s=580, command="source .gpu/activate.sh; scripts/gpu_session.sh families")
#        prints "== families HH:MM:SSZ", the fit lines (grep FAILED|estimated|total|wrote), "wrote /tmp/pb/h200-design.json";
#        $OUT: families.log, h200-design.json   -> copy it to calibrations/h200-design.json here
#   2. run(command="source .gpu/activate.sh; scripts/gpu_session.sh grid", timeout_s=580)
#        prints "gemm: N samples, about 6.9 min" and "wrote ..."; $OUT: grid.log, h200-design.json (copy again)
#   3. run(command="source .gpu/activate.sh; scripts/gpu_session.sh host", timeout_s=580)
#        prints this host's probe (cpu_model, launch_s ~2-6e-06, python_loop_s ~1e-03), "host mamba2/prefill:
#        N us median (lo-hi over 11 windows)" per chain, then `perfbench compare` of the host-bound points
#        with --host-speed 1 and run; $OUT: host.log, host-points.tgz, h200-design.json (copy again)
#   4. run(command="source .gpu/activate.sh; scripts/gpu_session.sh suite", timeout_s=580)
#        prints the last 3 lines of each stage and the compare table; $OUT: whatif-h200.tgz, session.log
#   5. (optional) run(command="source .gpu/activate.sh; scripts/gpu_session.sh targeted", timeout_s=300)
#   If the machine went cold between calls, steps 2-3 start from calibrations/h200-design.json (copied above).
# Then on the CPU, in a worktree (files under files_at):
#   tar xzf whatif-h200.tgz -C results/scratch && python scripts/pack_results.py results/scratch/whatif-h200 \
#       --purpose "What-if suite on the H200 ..."     (name h200-whatif1; never fitted)
#   tar xzf host-points.tgz -C results/scratch     (the host-bound points: a diagnostic, not a set to fit)
#   perfbench calibrate --refit calibrations/h200-design.json --out calibrations/h200-design.json \
#       --host-from analytic/calibrations/h200.json.gz           (this lease's host windows and probe pooled
#                                                                 with the bundled file's four leases)
#   (a second H200 lease: --gemm-from / --samples-from that lease's file pool the grid and the families)
#   perfbench calibrate --refit calibrations/h200-design.json --out analytic/calibrations/h200.json.gz \
#       --uncertainty-from results/h200-holdout --uncertainty-from results/h200-holdout3 ... results/h200-holdout14
#       (the sets the bundled section used: docs/uncertainty.md; never the what-if sets)
#   python benchmarks/whatif_accuracy.py results/h200-whatif1 --per-config
#   perfbench compare results/h200-whatif1 --host-speed run      (host-bound points at this lease's host)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
OUT=${OUT:-out}; STATE=/tmp/pb; mkdir -p "$OUT" "$STATE"
gpu=$(python3 -c "import torch; print('h200' if 'H200' in torch.cuda.get_device_name(0) else 'h100')")
nvidia-smi --query-gpu=name,temperature.gpu,power.draw,clocks.sm --format=csv,noheader
suite=benchmarks/whatif/suite.toml
# the suite's points (h100-whatif1's by default; a fresh set takes other ones, e.g. WHATIF_POINTS=2)
if [ "${WHATIF_POINTS:-1}" = 2 ]; then
  : "${WI_LAYER_PREFILL_B:=2,5}" "${WI_LAYER_PREFILL_L:=2200,6500}" "${WI_LAYER_DECODE_B:=3,20}" "${WI_LAYER_DECODE_L:=2500,9000}"
  : "${WI_MODEL_PREFILL_B:=1,2}" "${WI_MODEL_PREFILL_L:=1800,4500}" "${WI_MODEL_DECODE_B:=3,16}" "${WI_MODEL_DECODE_L:=3000,10000}"
  : "${WI_HF_B:=3,8}" "${WI_HF_L:=2600}"
fi
: "${WI_LAYER_PREFILL_B:=1,6}" "${WI_LAYER_PREFILL_L:=1500,5000}" "${WI_LAYER_DECODE_B:=2,24}" "${WI_LAYER_DECODE_L:=1500,6000}"
: "${WI_MODEL_PREFILL_B:=1,3}" "${WI_MODEL_PREFILL_L:=1200,3000}" "${WI_MODEL_DECODE_B:=2,24}" "${WI_MODEL_DECODE_L:=2000,7000}"
: "${WI_HF_B:=2,12}" "${WI_HF_L:=1800}"
names() { python3 -c "import tomllib; print(','.join(tomllib.load(open('$suite','rb'))['$1']))"; }
measure() {  # STAGE_S run options...
  local limit=$1; shift
  timeout "$limit" python3 -m perfbench run --out "$STATE/whatif-$gpu" --resume --no-nvtx --target-ms 60 "$@" \
    2>&1 | grep -vE "^\s*$" | tail -n 3 | tee -a "$OUT/session.log"
}
cal="$STATE/$gpu-design.json"
if [ ! -f "$cal" ] && [ -f "calibrations/$gpu-design.json" ]; then cp "calibrations/$gpu-design.json" "$cal"; fi
[ -f "$cal" ] || python3 -c "import sys; from pathlib import Path; from analytic.calibration import bundled_path, read_calibration_data, write_calibration_data; write_calibration_data(Path(sys.argv[2]), read_calibration_data(bundled_path(sys.argv[1])))" "$gpu" "$cal"
for section in "$@"; do
  echo "== $section $(date -u +%H:%M:%SZ)" | tee -a "$OUT/session.log"
  case $section in
    suite)
      layers=$(names layers); models=$(names models)
      measure 75 --models-file $suite --layer "$layers" --phase prefill --batch "$WI_LAYER_PREFILL_B" --seqlen "$WI_LAYER_PREFILL_L"
      measure 60 --models-file $suite --layer "$layers" --phase decode --batch "$WI_LAYER_DECODE_B" --seqlen "$WI_LAYER_DECODE_L"
      measure 120 --models-file $suite --model "$models" --phase prefill --batch "$WI_MODEL_PREFILL_B" --seqlen "$WI_MODEL_PREFILL_L" --repeats 3 --warmup 1
      measure 110 --models-file $suite --model "$models" --phase decode --batch "$WI_MODEL_DECODE_B" --seqlen "$WI_MODEL_DECODE_L"
      for hf in Qwen3-8B Qwen2.5-7B Llama-3.2-1B Nemotron-H-8B-Base-8K; do
        measure 40 --hf-config tests/data/hf/$hf --phase prefill,decode --batch "$WI_HF_B" --seqlen "$WI_HF_L"
      done
      tar czf "$OUT/whatif-$gpu.tgz" -C "$STATE" "whatif-$gpu"
      python3 -m perfbench compare "$STATE/whatif-$gpu" 2>&1 | tail -n 60 ;;
    families)
      timeout 420 python3 -m perfbench calibrate --refit "$cal" --out "$cal" --remeasure \
        selective_scan_shapes,ssd_shapes,state_update_shapes,conv1d_shapes,attention_prefill_shapes,attention_decode_shapes,l2_resident \
        2>&1 | tee "$OUT/families.log" | grep -E "FAILED|estimated|total|wrote" | tail -n 12
      cp "$cal" "$OUT/" ;;
    grid)
      timeout 540 python3 -m perfbench calibrate --refit "$cal" --out "$cal" --remeasure gemm \
        2>&1 | tee "$OUT/grid.log" | grep -E "FAILED|estimated|gemm:|total|wrote" | tail -n 12
      cp "$cal" "$OUT/" ;;
    host)
      python3 -c "import json, torch; from perfbench.measure.host_probe import host_probe; print('probe', json.dumps(host_probe(torch, 'cuda')))" \
        | tee "$OUT/host.log"
      timeout 240 python3 -m perfbench calibrate --refit "$cal" --out "$cal" --remeasure host \
        2>&1 | tee -a "$OUT/host.log" | grep -E "^host .*/prefill|FAILED|wrote" | tail -n 30
      cp "$cal" "$OUT/"
      pts="$STATE/host-points-$gpu"  # beside the what-if ones: the same run options, B=1 prompts
      timeout 120 python3 -m perfbench run --out "$pts" --resume --no-nvtx --target-ms 60 --layer mamba2,attention-mha,mlp \
        --phase prefill --batch 1 --seqlen 512,1500 2>&1 | tail -n 2
      timeout 90 python3 -m perfbench run --out "$pts" --resume --no-nvtx --target-ms 60 --models-file $suite \
        --layer wl-mamba2-d1536-g1,wl-gqa-d1536-r6-bias --phase prefill --batch 1 --seqlen 1500 2>&1 | tail -n 2
      timeout 120 python3 -m perfbench run --out "$pts" --resume --no-nvtx --target-ms 60 --models-file $suite \
        --model wi-mamba2-780m,wi-llama3.2-1b --phase prefill --batch 1 --seqlen 1200 --repeats 3 --warmup 1 2>&1 | tail -n 2
      tar czf "$OUT/host-points.tgz" -C "$STATE" "host-points-$gpu"
      for speed in 1 run; do
        python3 -m perfbench compare "$pts" --calibration "$cal" --host-speed $speed --format markdown 2>/dev/null | tail -n 12
      done ;;
    targeted)
      timeout 240 python3 -m perfbench calibrate --model mamba2-hybrid-8b --out "$STATE/$gpu-hybrid.json" \
        2>&1 | tee "$OUT/targeted.log" | tail -n 5
      cp "$STATE/$gpu-hybrid.json" "$OUT/" ;;
    *) echo "unknown section $section" ;;
  esac
done
echo "== done $(date -u +%H:%M:%SZ)" | tee -a "$OUT/session.log"
