#!/usr/bin/env bash
# The bundled H100 reference data (issues 3 and 7), run on the GPU machine from the repository root,
# one stage per device command:
#
#   source .gpu/activate.sh; scripts/gpu_sweep.sh layers          # 5 layers x 2 phases x 8 batches x 7 lengths
#   source .gpu/activate.sh; scripts/gpu_sweep.sh models-decode   # the four 8B models, decode (CUDA graphs)
#   source .gpu/activate.sh; scripts/gpu_sweep.sh prefill-transformer-8b    # TTFT, one model a stage:
#   source .gpu/activate.sh; scripts/gpu_sweep.sh prefill-mamba-8b          #   each 3-7 min on an H100
#   source .gpu/activate.sh; scripts/gpu_sweep.sh prefill-mamba2-8b
#   source .gpu/activate.sh; scripts/gpu_sweep.sh prefill-mamba2-hybrid-8b
#
# Each stage appends one run (Parquet + manifest) to $RESULTS (default results/h100) with --resume:
# points already there are not measured again, so a stage cut off by the time limit is simply run
# again. Bring $RESULTS back by copying it (or a tarball of it) under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
RESULTS=${RESULTS:-results/h100}
run() { python3 -m perfbench run --out "$RESULTS" --resume "$@"; }
MODEL_GRID=(--batch 1,8,32,64,128 --seqlen 1k,4k,16k,32k,128k)

case "${1:-layers}" in
  layers)
    run --layer mamba,mamba2,attention,mlp,attention-mha --phase prefill,decode \
        --batch 1,2,4,8,16,32,64,128 --seqlen 512,1k,2k,4k,8k,16k,32k ;;
  layers-prefill|layers-decode)  # the same grid in two halves, if one command is too long
    run --layer mamba,mamba2,attention,mlp,attention-mha --phase "${1#layers-}" \
        --batch 1,2,4,8,16,32,64,128 --seqlen 512,1k,2k,4k,8k,16k,32k ;;
  models-decode)
    run --model all --phase decode "${MODEL_GRID[@]}" ;;
  prefill-*)
    # Time to first token: up to ~22 s a call (mamba-8b, 262K prompt tokens), so 2 repeats and
    # the first call as the only warm-up (seconds-long calls vary by well under 1 %).
    run --model "${1#prefill-}" --phase prefill "${MODEL_GRID[@]}" --repeats 2 --warmup 0 ;;
  *) echo "usage: scripts/gpu_sweep.sh layers|layers-prefill|layers-decode|models-decode|prefill-<model>" >&2
     exit 2 ;;
esac
