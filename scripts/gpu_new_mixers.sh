#!/usr/bin/env bash
# Mamba-3 and Gated DeltaNet on the GPU machine, one device command (~5-6 min on an H100; every stage
# has its own timeout, 9 min in all at most):
#   1. which kernels import (fla-core, mamba_ssm's Mamba-3 SISO and MIMO, the step kernel Mamba-3 decodes with),
#   2. the GPU tests of the new layers against their references,
#   3. a sweep of both layers, prefill and decode (21 + 24 points each) into $RESULTS,
#   4. the two new 8B models' decode and prefill at a few points,
#   5. perfbench compare over $RESULTS (calibrated and datasheet), printed last.
# From the repository root, with the kit minus what this does not need (nvtx, the nsys .debs) to stay
# under the 64 MiB a call carries, and fla-core's wheel in .whl/ (README of ../shared/device):
#   mkdir -p .gpu-mixers && cp .gpu/activate.sh .gpu/mamba_ssm-*.whl .gpu/causal_conv1d-*.whl .gpu-mixers/
#   run(carry=[".gpu-mixers", ".whl"], command="source .gpu-mixers/activate.sh; \
#       python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl; scripts/gpu_new_mixers.sh")
# Logs go under $OUT (new-mixers.log, pytest.log, results.tgz).
#
# `scripts/gpu_new_mixers.sh families` re-measures the mamba3, gdn, mamba3_shapes and gdn_shapes kernel
# families into a copy of the bundled calibration, $OUT/mixers-cal-$gpu.json, and prints their fits.
# `scripts/gpu_new_mixers.sh holdout` (<= 6 min on an H100) measures only what no fit has seen: the
# layers and small hybrids of benchmarks/whatif/new_mixers.toml and the 8B layers at off-grid points
# (HOLD_B x HOLD_L, default 3,12 x 1500,6000), prefill and decode, into $OUT/$HOLD_NAME-$gpu, then
# compares them with the bundled calibration; TESTS=1 runs the GPU tests of the new layers after it.
# (The B=1 L=512 Mamba-3 prefill that looked like a first-after-autotuning slowdown is host-bound: the
# layer's Python chain, ~1.1-1.5 ms, measured by the `host` section.)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
OUT=${OUT:-out}
gpu=$(python3 -c "import torch; print('h200' if 'H200' in torch.cuda.get_device_name(0) else 'h100')")
RESULTS=${RESULTS:-$OUT/new-mixers-$gpu}
mkdir -p "$OUT" "$RESULTS"
LOG="$OUT/new-mixers.log"
run() { timeout "${STAGE_S:-120}" python3 -m perfbench run --out "$RESULTS" --resume --target-ms 100 --rest-ms 200 "$@" \
        2>&1 | tail -n 4 | tee -a "$LOG"; }

if [ "${1:-}" = families ]; then  # the 8B families and the spreads (~4 min on an H100, most of it autotuning)
  echo "== families $(date -u +%H:%M:%SZ)" | tee "$OUT/families.log"
  timeout 420 python3 -m perfbench calibrate --refit analytic/calibrations/$gpu.json.gz \
      --out "$OUT/mixers-cal-$gpu.json" --remeasure mamba3,gdn,mamba3_shapes,gdn_shapes 2>&1 | tee -a "$OUT/families.log" \
      | grep -E "estimated|FAILED|fit (mamba3|gdn)|wrote" | tail -n 12
  cp "$OUT/mixers-cal-$gpu.json" "/tmp/mixers-cal-$gpu.json" 2>/dev/null  # for a later holdout on this machine
  exit 0
fi

if [ "${1:-}" = holdout ]; then
  # HOLD_B / HOLD_L: the off-grid batches and lengths (holdout1, 2026-12-07 12:59Z: 3,12 x 1500,6000);
  # HOLD_NAME names the set's directory; TESTS=1 runs the GPU tests after it.
  B=${HOLD_B:-3,12}; L=${HOLD_L:-1500,6000}; name=${HOLD_NAME:-holdout}
  suite=benchmarks/whatif/new_mixers.toml
  names() { python3 -c "import tomllib; print(','.join(tomllib.load(open('$suite','rb'))['$1']))"; }
  RESULTS=$OUT/$name-$gpu; LOG="$OUT/$name.log"; mkdir -p "$RESULTS"
  hold() { timeout "$1" python3 -m perfbench run --out "$RESULTS" --resume --no-nvtx --target-ms 60 --rest-ms 50 \
           --models-file $suite "${@:2}" 2>&1 | grep -vE "^\s*$" | tail -n 3 | tee -a "$LOG"; }
  echo "== $name $(date -u +%H:%M:%SZ) B $B x L $L" | tee "$LOG"
  # The 8B Mamba-3 first: its chunk kernel autotunes here (~40 s).
  hold 70 --layer mamba3 --phase prefill --batch $B --seqlen $L
  # each stage is a new process: it primes fla's autotuners on the 384-token prompt first (~15 s);
  # 25 s cut GDN's stage after one point on 2026-12-07 18:44Z
  hold 70 --layer gdn --phase prefill --batch $B --seqlen $L
  hold 50 --layer mamba3,gdn --phase decode --batch $B --seqlen $L
  if [ "${HOLD_WHATIF:-1}" = 1 ]; then  # HOLD_WHATIF=0: the 8B layers only
    layers=$(names layers); models=$(names models)
    hold 70 --layer "$layers" --phase prefill --batch $B --seqlen $L
    hold 25 --layer "$layers" --phase decode --batch $B --seqlen $L
    hold 35 --model "$models" --phase prefill --batch 1,${B%%,*} --seqlen ${L%%,*} --repeats 3 --warmup 1
    hold 25 --model "$models" --phase decode --batch $B --seqlen $L
  fi
  tar czf "$OUT/$name-$gpu.tgz" -C "$OUT" "$name-$gpu" 2>/dev/null
  if [ "${TESTS:-0}" = 1 ]; then
    echo "== GPU tests" | tee -a "$LOG"
    timeout "${TESTS_S:-150}" python3 -m pytest -q -p no:cacheprovider -rA tests/test_new_mixers_gpu.py tests/test_calibrate_gpu.py \
        -k "not models_host and not design_grid and not targeted and not sustained and not power and not relu_input and not unaligned" \
        > "$OUT/pytest.log" 2>&1
    grep -E "passed|failed|error" "$OUT/pytest.log" | tail -n 3 | tee -a "$LOG"
  fi
  echo "== $name compare (bundled calibration)" | tee -a "$LOG"
  python3 -m perfbench compare "$RESULTS" 2>&1 | tail -n 16 | tee -a "$LOG"
  exit 0
fi

# Without a section name: every stage below; or name some of: host sweep l2 trace models tests (e.g. `host sweep models`).
want() { [ $# -eq 0 ] && return 0; [ -z "$SECTIONS" ] && return 0; [[ " $SECTIONS " == *" $1 "* ]]; }
SECTIONS="$*"
echo "== kernels" | tee -a "$LOG"
python3 - <<'PY' 2>&1 | tee -a "$LOG"
import importlib
for name in ("fla", "mamba_ssm", "causal_conv1d", "triton"):
    try:
        print(f"{name}: {importlib.import_module(name).__version__}")
    except Exception as exc:  # noqa: BLE001
        print(f"{name}: unavailable ({type(exc).__name__}: {exc})".splitlines()[0])
from models.torch_layers import KernelUnavailable, build_layer, mamba3_step_kernel
from models.specs import Mamba3Spec
print(f"mamba3 decode step: {mamba3_step_kernel() or 'unavailable'}")
try:
    build_layer(Mamba3Spec(d_model=256, d_state=64, headdim=64, mimo_rank=4, chunk_size=16), device="cuda")
    print("mamba3 MIMO: available (TileLang)")
except KernelUnavailable as exc:
    print(f"mamba3 MIMO: unavailable: {exc}")
PY

if want host; then  # the new layers' host launch chains (fit data: 64-token calls), kept beside the file's others
# (HOST_S: 110 s printed nothing on 2026-12-07 18:37Z, priming both layers' autotuners included)
echo "== host chains of mamba3, gdn" | tee -a "$LOG"
timeout ${HOST_S:-200} python3 -m perfbench calibrate --refit analytic/calibrations/$gpu.json.gz --out "$OUT/host-cal-$gpu.json" \
    --remeasure host --layer mamba3,gdn 2>&1 | tee "$OUT/host.log" | grep -E "^host|FAILED|wrote" | tail -n 5 | tee -a "$LOG"
fi

if want sweep; then
echo "== layer sweep" | tee -a "$LOG"
# GDN first: Mamba-3's prefill autotunes its chunk kernel (27 configs) on the first point (cached on disk
# by TRITON_CACHE_AUTOTUNING when `host` ran first).
# PREFILL_B: the prefill batches (4 x 7 points; Mamba-3's B=16 L>=16K are recorded skips, kernel_limit);
# SWEEP_DECODE=0 leaves the decode grid out (a prefill-only re-sweep).
PB=${PREFILL_B:-1,2,4,16}
STAGE_S=${GDN_PREFILL_S:-150} run --layer gdn --phase prefill --batch $PB --seqlen 512,1k,2k,4k,8k,16k,32k
STAGE_S=${MAMBA3_PREFILL_S:-200} run --layer mamba3 --phase prefill --batch $PB --seqlen 512,1k,2k,4k,8k,16k,32k
[ "${SWEEP_DECODE:-1}" = 1 ] && STAGE_S=90 run --layer mamba3,gdn --phase decode --batch 1,2,4,8,16,32,64,128 --seqlen 1k,8k,32k
# The sweep's first points again, last, in their own directory: does their time depend on the order?
echo "== recheck: gdn and mamba3 prefill B=1 after the sweep" | tee -a "$LOG"
timeout 40 python3 -m perfbench run --out "$OUT/recheck-$gpu" --target-ms 100 --rest-ms 200 --layer gdn,mamba3 \
    --phase prefill --batch 1 --seqlen 512,1k,2k,4k 2>&1 | tail -n 12 | tee -a "$LOG"
tar czf "$OUT/recheck-$gpu.tgz" -C "$OUT" "recheck-$gpu" 2>/dev/null

fi

if want l2; then
echo "== L2-resident GEMVs (small decode steps)" | tee -a "$LOG"
timeout 60 python3 -m perfbench calibrate --refit analytic/calibrations/$gpu.json.gz --out "$OUT/l2-cal-$gpu.json" \
    --remeasure l2_resident 2>&1 | tee "$OUT/l2.log" | grep -E "FAILED|l2|wrote" | tail -n 6 | tee -a "$LOG"

fi
if want trace; then  # per-kernel times of both layers' long prefill against the model's ops (GDN runs 3-7 % slow)
# (`perfbench trace --torch-profiler` needs the nvtx wheel, which the lean kit leaves out, and wrote a 30 MB
# archive, over what a call returns: lost on 2026-12-07 22:08Z; this prints a few lines instead)
for layer in gdn mamba3; do
  echo "== kernels: $layer prefill B=1 L=32K (torch profiler)" | tee -a "$LOG"
  timeout ${TRACE_S:-120} python3 scripts/layer_kernels.py $layer --batch 1 --seqlen 32768 2>&1 | tail -n 40 | tee -a "$LOG"
done
fi

if want models; then
echo "== models" | tee -a "$LOG"
STAGE_S=100 run --model mamba3-hybrid-8b,gdn-hybrid-8b --phase decode --batch 1,16,64 --seqlen 2k,4k,16k
STAGE_S=120 run --model mamba3-hybrid-8b,gdn-hybrid-8b --phase prefill --batch 1,2 --seqlen 1k,2k,4k,8k --repeats 3 --warmup 1

fi
if want tests; then
echo "== GPU tests" | tee -a "$LOG"
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_new_mixers_gpu.py \
    tests/test_layers_gpu.py > "$OUT/pytest.log" 2>&1
tail -n 3 "$OUT/pytest.log" | tee -a "$LOG"
timeout 40 python3 -m pytest -q -p no:cacheprovider tests/test_calibrate_gpu.py -k "l2_resident or host_probe" > "$OUT/pytest-cal.log" 2>&1
tail -n 2 "$OUT/pytest-cal.log" | tee -a "$LOG"

fi
echo "== compare (bundled calibration)" | tee -a "$LOG"
python3 -m perfbench compare "$RESULTS" 2>&1 | tail -n 12 | tee -a "$LOG"
if [ -f "$OUT/host-cal-$gpu.json" ]; then
  echo "== compare (with this lease's mamba3/gdn host chains)" | tee -a "$LOG"
  python3 -m perfbench compare "$RESULTS" --calibration "$OUT/host-cal-$gpu.json" 2>&1 | tail -n 12 | tee -a "$LOG"
fi
tar czf "$OUT/new-mixers-$gpu.tgz" -C "$OUT" "new-mixers-$gpu" 2>/dev/null
