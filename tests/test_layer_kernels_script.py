"""scripts/layer_kernels.py: the model's side lists the layer's prefill ops; without a GPU one line, exit 2."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from analytic.predict import breakdown
from models.registry import BUILTIN_LAYERS

SCRIPT = Path(__file__).parent.parent / "scripts" / "layer_kernels.py"


def test_lists_the_model_ops_then_says_in_one_line_that_it_needs_a_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the measured side would run")
    done = subprocess.run([sys.executable, str(SCRIPT), "gdn", "--batch", "2", "--seqlen", "4096"],
                          capture_output=True, text=True, timeout=300)
    ops = breakdown(BUILTIN_LAYERS["gdn"], "prefill", 2, 4096)
    listed = re.findall(r"^\s+([\d.]+) ms\s+\d+ kernels\s+(\S+)", done.stdout, re.M)
    assert [name for _, name in listed] == list(ops["op"])
    total = float(re.search(r"model: ([\d.]+) ms", done.stdout).group(1))
    assert total == pytest.approx(ops["time_ms"].sum(), abs=1e-3)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "CUDA GPU" in done.stderr
