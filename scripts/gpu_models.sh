#!/usr/bin/env bash
# On the device: calibrate, then the whole-model sweep (issue 7) into results/h100, one command.
# Decode at batch {1,8,32,64,128} x context {1K,4K,16K,32K,128K} (what does not fit is recorded as
# skipped); time to first token where the prompt has at most 64K tokens (B*L), 3 repeats.
set -uo pipefail
source .gpu/activate.sh
export PYTHONPATH=$PWD:$PYTHONPATH PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
OUT=${OUT:-out}; mkdir -p "$OUT"
python3 -m perfbench.cli calibrate --out "$OUT/calibration.json" 2>&1 | tee "$OUT/calibrate.log"
run() { python3 -m perfbench run --out results/h100 --resume "$@" 2>&1 | tee -a "$OUT/models.log"; }
run --model all --phase decode --batch 1,8,32,64,128 --seqlen 1k,4k,16k,32k,128k --target-ms 100
run --model all --phase prefill --batch 1 --seqlen 1k,4k,16k,32k --repeats 3 --warmup 1
run --model all --phase prefill --batch 8 --seqlen 1k,4k --repeats 3 --warmup 1
run --model all --phase prefill --batch 32,64 --seqlen 1k --repeats 3 --warmup 1
tar czf "$OUT/results.tgz" results/h100
grep -E "points in" "$OUT/models.log"
