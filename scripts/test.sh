#!/usr/bin/env bash
# The test command (README, .ci/run). What it installs, into the Python that `python3` runs (use a
# virtual environment to keep it apart: python3 -m venv .venv && . .venv/bin/activate):
#   1. PyTorch in pyproject's `torch` extra range, unless one in that range already imports. Without an
#      NVIDIA GPU, the CPU build from PyTorch's CPU wheel index (about 200 MB instead of several GB of
#      CUDA packages); if that index cannot be reached, the newest CPU build (`+cpu`) in range that pip's
#      own index offers, and only failing that the plain range (which may pull the CUDA build).
#   2. perfbench itself, editable, with the `test` and `dashboard` extras, nvidia-ml-py and nvtx.
#   3. Debian's chromium (apt-get, as root or through sudo) and Playwright, for the dashboard's
#      browser test (scripts/install_browser.sh); PERFBENCH_NO_BROWSER=1 skips it and that test.
# Then it runs pytest with the arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=(python3 -m pip install -q --disable-pip-version-check)
CPU_INDEX="${PERFBENCH_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

if python3 -c 'import sys; sys.exit(sys.prefix != sys.base_prefix)'; then
  echo "test.sh: installing into $(python3 -c 'import sys; print(sys.prefix)') (no virtual environment active)"
fi

# The torch requirement, from pyproject.toml's `torch` extra (one place for the range).
TORCH_SPEC=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["torch"][0])')

torch_in_range() {
  python3 - "$TORCH_SPEC" <<'PY' >/dev/null 2>&1
import sys
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
import torch  # importable, not only installed
sys.exit(0 if Requirement(sys.argv[1]).specifier.contains(torch.__version__.split("+")[0], prereleases=True) else 1)
PY
}

has_nvidia_gpu() {
  { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; } \
    || [ -n "$(ls -A /proc/driver/nvidia/gpus 2>/dev/null)" ]
}

index_reachable() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=5)' "$1" \
    >/dev/null 2>&1
}

# The newest `+cpu` torch in range that pip's configured index and find-links offer ("" if none).
cpu_build_on_pip_index() {
  python3 -m pip index versions torch 2>/dev/null | python3 -c '
import re, sys
try:
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version
spec = Requirement(sys.argv[1]).specifier
found = [v.strip() for line in sys.stdin if line.startswith("Available versions:")
         for v in line.split(":", 1)[1].split(",")]
cpu = [v for v in found if v.endswith("+cpu") and spec.contains(v.split("+")[0], prereleases=False)]
print(max(cpu, key=Version) if cpu else "")' "$TORCH_SPEC" 2>/dev/null || true
}

if torch_in_range; then
  echo "test.sh: torch $(python3 -c 'import torch; print(torch.__version__)') already satisfies $TORCH_SPEC"
elif has_nvidia_gpu; then
  echo "test.sh: NVIDIA GPU found: installing $TORCH_SPEC (CUDA build)"
  "${PIP[@]}" "$TORCH_SPEC"
elif index_reachable "$CPU_INDEX" && "${PIP[@]}" --index-url "$CPU_INDEX" "$TORCH_SPEC"; then
  echo "test.sh: no NVIDIA GPU: installed the CPU build of $TORCH_SPEC from $CPU_INDEX"
else
  CPU_BUILD=$(cpu_build_on_pip_index)
  if [ -n "$CPU_BUILD" ]; then
    echo "test.sh: no NVIDIA GPU, $CPU_INDEX not reachable: installing torch==$CPU_BUILD from pip's index"
    "${PIP[@]}" "torch==$CPU_BUILD"
  else
    echo "test.sh: no NVIDIA GPU, $CPU_INDEX not reachable and no CPU build on pip's index:" \
         "installing $TORCH_SPEC (may be the CUDA build)"
    "${PIP[@]}" "$TORCH_SPEC"
  fi
fi

"${PIP[@]}" -e ".[test,dashboard]" "nvidia-ml-py>=12" "nvtx>=0.2.10"
if [ "${PERFBENCH_NO_BROWSER:-0}" != "1" ] && [ -x scripts/install_browser.sh ] && ! command -v chromium >/dev/null 2>&1; then
  scripts/install_browser.sh || echo "test.sh: could not install chromium; the browser test will be skipped"
fi
set +e
python3 -m pytest -q "$@"
status=$?
# pytest exits 5 when no test was collected: that is a failure of the suite, not a pass.
exit $status
