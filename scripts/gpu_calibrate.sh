#!/usr/bin/env bash
# On the device: calibrate this GPU into $OUT/<gpu>.json (and a log). Carry .gpu.
set -o pipefail
source .gpu/activate.sh
export PYTHONPATH=$PWD:$PYTHONPATH PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv | tee $OUT/nvidia-smi.txt
python3 -c "import torch, mamba_ssm, causal_conv1d; print('torch', torch.__version__, 'mamba_ssm', mamba_ssm.__version__)" 2>&1 | tee $OUT/env.txt
python3 -m perfbench.cli calibrate --out $OUT/calibration.json "$@" 2>&1 | tee $OUT/calibrate.log
