#!/usr/bin/env bash
# Headless Chromium and Playwright's Python package for the dashboard's browser test
# (tests/test_browser.py, marker `browser`). Debian's `chromium` package provides the browser:
# `playwright install` is not used, it downloads its own browser builds, which this project's
# machines cannot reach. Idempotent; needs root (or sudo) for apt-get.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

if ! command -v chromium >/dev/null 2>&1; then
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi

if ! python -c "import playwright" >/dev/null 2>&1; then
    python -m pip install -q "playwright>=1.44,<2"
fi

chromium --version 2>/dev/null || true
python -c "import playwright, importlib.metadata as m; print('playwright', m.version('playwright'))"
