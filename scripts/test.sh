#!/usr/bin/env bash
# The test command (README, .ci/run): install perfbench with a CPU torch and the test/dashboard
# extras, a headless Chromium for the browser test when apt can install it, then run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check "torch==2.13.0" -e ".[test,dashboard]" "nvidia-ml-py>=12" "nvtx>=0.2.10"
if [ -x scripts/install_browser.sh ] && ! command -v chromium >/dev/null 2>&1; then
  scripts/install_browser.sh || echo "test.sh: could not install chromium; the browser test will be skipped"
fi
set +e
python3 -m pytest -q "$@"
status=$?
# pytest exits 5 when no test was collected: that is a failure of the suite, not a pass.
exit $status
