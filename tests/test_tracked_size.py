"""Issue 27's compact-results target: the tracked tree (code, tests, data, results, docs) stays
within 2.5 MiB, the sum of apparent file sizes as `git ls-files -z | xargs -0 du -cb` counts it.
Captured test data is stored gzipped (tests/data/*.gz) to stay under it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT_BYTES = int(2.5 * 2**20)


def _tracked_files() -> list[Path]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
        pytest.skip("not a git checkout of this repository")
    done = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [ROOT / name for name in done.stdout.decode().split("\0") if name]


def test_tracked_tree_is_at_most_two_and_a_half_mib():
    sizes = {path: path.stat().st_size for path in _tracked_files() if path.is_file()}
    total = sum(sizes.values())
    biggest = sorted(sizes, key=sizes.get, reverse=True)[:8]
    assert total <= LIMIT_BYTES, (
        f"tracked tree is {total:,} bytes > {LIMIT_BYTES:,} (2.5 MiB); biggest: "
        + ", ".join(f"{p.relative_to(ROOT)} ({sizes[p]:,})" for p in biggest))
