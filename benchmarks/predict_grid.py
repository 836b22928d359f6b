"""Benchmark: predict a 100 x 100 (batch x seqlen) grid for the paper's four 8B models, both phases.

Run: python benchmarks/predict_grid.py   (CPU only; prints the median of several warm repeats)
The issue's budget is < 100 ms for all eight predictions together.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from analytic.predict import predict
from models.registry import PAPER_MODELS


def predict_all(calibration: str) -> int:
    batches = np.arange(1, 101)
    seqlens = np.arange(1, 101) * 512
    points = 0
    for model in PAPER_MODELS:
        for phase in ("prefill", "decode"):
            points += len(predict(model, phase, batches, seqlens, "h100", calibration))
    return points


def main() -> None:
    for calibration in ("none", "default"):
        predict_all(calibration)  # warm-up: imports, calibration file parse
        runs = []
        for _ in range(7):
            start = time.perf_counter()
            points = predict_all(calibration)
            runs.append(time.perf_counter() - start)
        print(f"calibration={calibration:8s} {points} points (4 models x 2 phases x 100 x 100): "
              f"median {statistics.median(runs) * 1e3:.1f} ms, min {min(runs) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
