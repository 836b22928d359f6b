#!/usr/bin/env bash
# Issue 9's two-GPU measurement, on nvidia-h200-x2 (carry .gpu). One stage per device command
# (each stays well under the 10-minute limit); outputs go to $OUT (or ./tp-out):
#
#   scripts/gpu_tp.sh check      GPUs, NCCL, topology; sharded = unsharded on the real layers
#                                (tests/test_tp_gpu.py: Mamba-2, attention, MLP, a small hybrid)
#   scripts/gpu_tp.sh allreduce  all-reduce microbenchmark -> $OUT/allreduce.json (the calibration's
#                                `allreduce` entry: bus_bw_bytes_s, latency_s, n_gpus + samples)
#   scripts/gpu_tp.sh tp1        TP=1 on GPU0: transformer-8b and mamba2-hybrid-8b, decode B 1,16,64 at
#                                4K and 32K (CUDA graphs) and prefill B=1 at 4K -> $OUT/results-tp1
#   scripts/gpu_tp.sh tp2        the same points at TP=2 over both GPUs (NCCL) -> $OUT/results-tp2
#   scripts/gpu_tp.sh report     measured vs predicted (perfbench.tp.compare: analytic.tp per rank) for every
#                                point, with the all-reduce share -> $OUT/tp_compare.csv (runs on a CPU too;
#                                `perfbench compare results/h200-tp` gives the same table for the bundled run)
#   scripts/gpu_tp.sh all        everything above in one command (about 5 minutes on two H200s)
#
# Points that cannot fit one GPU (transformer-8b decode B=64 at 4K, B=16/64 at 32K at TP=1) are
# recorded as skipped from the memory estimate, which is part of the result (capacity).
set -o pipefail
cd "$(dirname "$0")/.."
[ -f .gpu/activate.sh ] && source .gpu/activate.sh
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# The lent multi-GPU hosts require NVLink multicast off (KINDS.md); set them for every child too.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-tp-out}
mkdir -p "$OUT"
MODELS=transformer-8b,mamba2-hybrid-8b
CAL=${CAL:-default}

stage_check() {
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/nvidia-smi.txt"
  nvidia-smi topo -m | tee "$OUT/topo.txt"
  python3 -c "import torch, mamba_ssm; print('torch', torch.__version__, 'gpus', torch.cuda.device_count(), 'nccl', torch.cuda.nccl.version(), 'mamba_ssm', mamba_ssm.__version__)" 2>&1 | tee "$OUT/env.txt"
  python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_tp_gpu.py 2>&1 | tee "$OUT/test_tp_gpu.log"
}

stage_allreduce() {  # python3 -c, not a stdin script: the spawned ranks re-import __main__ by path
  python3 -c '
import json, sys
from perfbench.tp.distributed import measure_allreduce
result = measure_allreduce(tp=2)
open(sys.argv[1], "w").write(json.dumps(result, indent=1) + "\n")
' "$OUT/allreduce.json" 2>&1 | tee "$OUT/allreduce.log"
}

sweep() {  # sweep TP PHASE BATCHES SEQLENS DIR
  local tp=$1 phase=$2 batches=$3 seqlens=$4 dir=$5
  local tp_flag=""; [ "$tp" != 1 ] && tp_flag="--tp $tp"
  CUDA_VISIBLE_DEVICES=$([ "$tp" = 1 ] && echo 0 || echo 0,1) \
    python3 -m perfbench.cli run --model $MODELS --phase "$phase" --batch "$batches" --seqlen "$seqlens" \
    $tp_flag --resume --out "$dir"
}

stage_tp() {  # stage_tp N
  local dir="$OUT/results-tp$1"
  sweep "$1" decode 1,16,64 4k,32k "$dir" 2>&1 | tee -a "$OUT/tp$1.log"
  sweep "$1" prefill 1 4k "$dir" 2>&1 | tee -a "$OUT/tp$1.log"
}

stage_report() {  # perfbench compare's tensor-parallel table, with a fresh all-reduce measurement if any
  python3 -c '
import json, sys
from pathlib import Path
import pandas as pd
from perfbench.measure.results import load_results
from perfbench.tp.compare import display_tp_table, tp_comparison, tp_summary

out, cal = Path(sys.argv[1]), sys.argv[2]
link_file = out / "allreduce.json"
link = json.loads(link_file.read_text()) if link_file.exists() else None
print("interconnect:", "measured " + str({k: link[k] for k in ("bus_bw_bytes_s", "latency_s", "n_gpus")})
      if link else "calibration/datasheet")
frames = [load_results(d) for d in sorted(out.glob("results-tp*")) if d.is_dir()]
table = tp_comparison(pd.concat(frames, ignore_index=True), calibration=cal, allreduce=link)
table.to_csv(out / "tp_compare.csv", index=False)
pd.set_option("display.width", 220)
print(display_tp_table(table).to_string(index=False))
print(tp_summary(table))
' "$OUT" "$CAL" 2>&1 | tee "$OUT/tp_report.txt"
}

case "${1:-all}" in
  check) stage_check ;;
  allreduce) stage_allreduce ;;
  tp1) stage_tp 1 ;;
  tp2) stage_tp 2 ;;
  report) stage_report ;;
  all) stage_check; stage_allreduce; stage_tp 1; stage_tp 2; stage_report ;;
  *) echo "usage: scripts/gpu_tp.sh check|allreduce|tp1|tp2|report|all" >&2; exit 2 ;;
esac
