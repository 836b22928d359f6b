"""`perfbench calibrate`: measure this GPU's ceilings into a calibration file (or refit one)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from analytic.calibration import bundled_path, from_dict, read_calibration_data, write_calibration_data
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.estimate import estimate_lines
from perfbench.calibration.host import pooled_host_figures
from perfbench.calibration.kernels import FAMILIES
from perfbench.calibration.pooling import pooled_gemm_grid, pooled_kernel_samples, pooled_power
from perfbench.calibration.run import calibrate, check_kernel_families, fit_calibration
from perfbench.calibration.run import remeasure as remeasure_families
from perfbench.calibration.transfer import transferred_classes
from perfbench.calibration.uncertainty import with_uncertainty
from perfbench.commands.selection import (HfConfigOption, LayerOption, ModelOption, ModelsFileOption, NameOption,
                                          SetOption, resolve_targets)
from perfbench.errors import PerfbenchError, file_errors, writable_directory
from perfbench.measure.results import utc_now


def calibrate_command(
    out: Optional[Path] = typer.Option(None, "--out", help="where to write the calibration JSON "
                                       "(default: calibrations/<gpu>.json in the current directory)"),
    refit: Optional[Path] = typer.Option(None, "--refit", help="refit the op-class model of an existing "
                                         "calibration file from its stored samples (no GPU needed)"),
    skip_kernels: bool = typer.Option(False, "--skip-kernels", help="only copy, GEMM and launch ceilings"),
    install: bool = typer.Option(False, "--install", help="also write it as perfbench's bundled default for this GPU"),
    remeasure: Optional[list[str]] = typer.Option(None, "--remeasure", help="with --refit: first re-measure these "
                                                  "kernel families on this GPU (e.g. attention_decode, or gemm: the GEMM grid, writeback: "
                                                  "the L2 write-back pairs, step: the decode-step graph chains, gemm_unaligned: GEMMs "
                                                  "with an unaligned leading dimension, gemm_relu_input: GEMMs fed a ReLU's output, sustained: the clock a long point loses, host: the "
                                                  "layers' host launch chains; "
                                                  "comma-separated or repeated) and replace their samples"),
    host_from: Optional[list[Path]] = typer.Option(None, "--host-from", help="earlier calibration files of the same "
                                                   "GPU kind: each host figure becomes the median over their samples and this file's "
                                                   "(the host is shared and its speed drifts)"),
    gemm_from: Optional[list[Path]] = typer.Option(None, "--gemm-from", help="earlier calibration files of the same "
                                                   "GPU kind: each GEMM grid time becomes the median over their leases' "
                                                   "and this file's (a GEMM's power-capped rate differs from board to board)"),
    power_from: Optional[list[Path]] = typer.Option(None, "--power-from", help="earlier calibration files of the same "
                                                    "GPU kind: each power figure becomes the median over their runs and "
                                                    "this file's"),
    uncertainty_from: Optional[list[Path]] = typer.Option(None, "--uncertainty-from", help="result set directories "
                                                          "never fitted to (held out): write the uncertainty section, the "
                                                          "quantiles of log(measured / predicted) per term class, from their "
                                                          "points on this GPU, predicted with this file (repeatable)"),
    families_from: Optional[Path] = typer.Option(None, "--families-from", help="a calibration file of another GPU "
                                                 "with the same SMs (H100 <-> H200): carry over the kernel families it "
                                                 "fitted and this file has no samples of (its byte ceilings scaled by "
                                                 "the copy bandwidths)"),
    samples_from: Optional[list[Path]] = typer.Option(None, "--samples-from", help="earlier calibration files of the "
                                                      "same GPU kind: each kernel family sample becomes the median over "
                                                      "the runs of its family in them and this file"),
    model: ModelOption = None,
    layer: LayerOption = None,
    models_file: ModelsFileOption = None,
    hf_config: HfConfigOption = None,
    name: NameOption = None,
    sets: SetOption = None,
    dry_run: bool = typer.Option(False, "--dry-run", help="print the estimated GPU time and exit (no GPU needed): of "
                                 "re-measuring --remeasure's kernel families into --refit FILE, else of a whole "
                                 "calibration like FILE or like each bundled one"),
) -> None:
    """Microbenchmark copy bandwidth, the bf16 GEMM grid, SSM/attention kernels and launch cost."""
    families = [f.strip() for item in remeasure or [] for f in item.split(",") if f.strip()]
    if families and refit is None and not dry_run:
        raise PerfbenchError("--remeasure needs --refit FILE: the calibration whose samples it replaces")
    check_kernel_families(families)  # before reading the file or looking for a GPU
    if dry_run:
        sources = [refit] if refit is not None else [bundled_path(gpu) for gpu in ("h100", "h200")]
        for source in sources:
            for line in estimate_lines(read_calibration_data(source), families or None):
                typer.echo(line)
        return
    targets = (resolve_targets(model, layer, models_file, hf_config, sets, name)
               if (model, layer, hf_config) != (None, None, None) else None)
    host_layers = None
    if targets and refit is not None and families == ["host"] and layer is not None and model is None:
        host_layers, targets = [t.name for t in targets], None  # only these layers' host chains
        unknown = [n for n in host_layers if n not in BUILTIN_LAYERS]
        if unknown:
            raise PerfbenchError(f"--remeasure host --layer takes built-in layers, not {', '.join(unknown)}")
    if targets and refit is not None:
        raise PerfbenchError("--refit refits the whole file: it takes no --model/--layer/--hf-config "
                             "(except --remeasure host --layer NAMES: those layers' host chains)")
    if out is not None:  # minutes of GPU work must not end in an unwritable path
        writable_directory(out.parent)
    if install:
        writable_directory(bundled_path("h100").parent)
    if refit is not None and families:
        data = remeasure_families(read_calibration_data(refit), families, log=typer.echo, host_layers=host_layers)
    elif refit is not None:
        data = fit_calibration(read_calibration_data(refit), log=typer.echo)
    else:
        data = calibrate(log=typer.echo, skip_kernels=skip_kernels, targets=targets)
    if gemm_from:
        data = fit_calibration(pooled_gemm_grid(data, {str(p): read_calibration_data(p) for p in gemm_from}),
                               log=typer.echo)
    if samples_from:
        others = {str(p): read_calibration_data(p) for p in samples_from}
        data = fit_calibration(pooled_kernel_samples(data, others, {n: f.CLASSES for n, f in FAMILIES.items()}),
                               log=typer.echo)
    if families_from:
        data = fit_calibration(transferred_classes(data, read_calibration_data(families_from), str(families_from)),
                               log=typer.echo)
    if power_from:
        data = pooled_power(data, {str(p): read_calibration_data(p) for p in power_from})
    if host_from:
        data = pooled_host_figures(data, {str(p): read_calibration_data(p) for p in host_from})
    if uncertainty_from:
        data = with_uncertainty(data, list(uncertainty_from), created=utc_now())
        rows = data["uncertainty"]["classes"]
        typer.echo(f"uncertainty: {len(rows)} term classes from {len(uncertainty_from)} sets "
                   f"({sum(int(v['n']) for k, v in rows.items() if k.startswith('all/'))} points)")
    target = out or Path("calibrations") / f"{data['gpu']}.json"
    cal = from_dict(data, str(target))  # validate what we are about to write
    written = [target] + ([bundled_path(cal.gpu)] if install else [])
    for path in written:
        with file_errors(path):
            write_calibration_data(path, data)
    typer.echo(f"wrote {', '.join(str(p) for p in written)}")
