"""`perfbench design`: what other layer mixes and other mixers around a base model cost at inference."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from analytic.design import design_models, design_sweep
from analytic.predict import describe_calibration
from models.registry import get_model
from perfbench.errors import PerfbenchError
from perfbench.output import emit
from perfbench.sizes import parse_names, parse_sizes

TABLE_COLUMNS = ["design", "mix", "params", "seqlen", "memory_per_seq_bytes", "max_batch", "batch",
                 "decode_tokens_per_s", "ttft_ms", "is_base"]


def _counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in parse_names(text)]
    except ValueError:
        raise PerfbenchError(f"--attention takes whole layer counts, e.g. 0,2,4,8 (got {text!r})") from None
    return list(dict.fromkeys(values))


def _shares(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in parse_names(text)]
    except ValueError:
        raise PerfbenchError(f"--mlp-ratio takes shares of the blocks, e.g. 0.5,0.33 (got {text!r})") from None


def design_command(
    base: str = typer.Option("mamba2-hybrid-8b", "--base", help="the model whose blocks, width and layers designs keep"),
    attention: str = typer.Option("0,2,4,8", "--attention", help="attention layers among the mixers, e.g. 0,2,4,8"),
    ssm: str = typer.Option("mamba2,mamba3,gdn", "--ssm", help="SSM kinds for the other mixers: mamba2, mamba3, gdn, mamba"),
    mlp_ratio: Optional[str] = typer.Option(None, "--mlp-ratio", help="MLP share of all blocks, e.g. 0.5 (default: the base's)"),
    seqlen: str = typer.Option("4k", "--seqlen", help="context lengths (prompt for the time to first token), e.g. 1k,4k,32k"),
    batch: str = typer.Option("1", "--batch", help="decode batches besides the largest that fits, e.g. 1,64"),
    gpu: str = typer.Option("h100", "--gpu", help="h100 | h200 | a100"),
    tp: int = typer.Option(1, "--tp", help="tensor-parallel degree"),
    calibration: str = typer.Option("default", "--calibration", help="calibration JSON, 'default' (bundled) or 'none' (datasheet)"),
    format: str = typer.Option("table", "--format", help="table | csv | json | markdown"),
    models_file: Optional[Path] = typer.Option(None, "--models-file", help="TOML file with more models (for --base)"),
) -> None:
    """Parameters, KV + state bytes per sequence, largest batch, decode tokens/s and time to first token
    of each design (SSM kind x attention count x MLP share) around --base."""
    if tp < 1:
        raise PerfbenchError(f"--tp must be >= 1, got {tp}")
    designs = design_models(get_model(base, models_file), _counts(attention), parse_names(ssm), _shares(mlp_ratio))
    frame = design_sweep(designs, parse_sizes(seqlen), parse_sizes(batch), gpu, calibration, tp)
    if format == "table":
        title = (f"perfbench design around {base} on {gpu} (tp {tp}): {describe_calibration(gpu, calibration)}; "
                 f"the base design is_base")
        emit(frame[TABLE_COLUMNS], "table", title=title)
    else:
        emit(frame, format)
