"""The shape that tunes kernels whose autotuning forgets the shape (perfbench/measure/autotune.py)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest

from perfbench.calibration.kernels.common import PREFILL_SIZES
from perfbench.measure import autotune


@dataclass(frozen=True)
class _Spec:
    kind: str
    d_model: int = 8


class _Mixer:
    def __init__(self, kind):
        self.spec, self.calls = _Spec(kind), []

    def __call__(self, x):
        self.calls.append(x)


class _Torch:
    bfloat16 = "bf16"
    cuda = type("cuda", (), {"synchronize": staticmethod(lambda: None)})

    @staticmethod
    def randn(*shape, device=None, dtype=None):
        return shape

    @staticmethod
    def inference_mode():
        return contextlib.nullcontext()


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(autotune, "_primed", set())


def test_only_shapeless_autotuners_run_once_on_the_prompt():
    mamba3, gdn, mamba2 = _Mixer("mamba3"), _Mixer("gdn"), _Mixer("mamba2")
    assert autotune.prime_autotuners([mamba3, gdn, mamba2], _Torch) == ["mamba3", "gdn"]
    assert mamba3.calls == [(1, autotune.AUTOTUNE_PROMPT_TOKENS, 8)] and len(gdn.calls) == 1 and not mamba2.calls


def test_a_spec_is_primed_once_per_process():
    first, again = _Mixer("mamba3"), _Mixer("mamba3")  # equal specs: the same autotuning key
    autotune.prime_autotuners([first], _Torch)
    assert autotune.prime_autotuners([again], _Torch) == [] and not again.calls


def test_the_prompt_is_the_one_the_calibrations_families_tuned_on():
    assert PREFILL_SIZES[0] == (1, autotune.AUTOTUNE_PROMPT_TOKENS)
