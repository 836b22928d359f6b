"""`perfbench compare --html`: one self-contained HTML file (Plotly inlined, no network needed).

Sections: the accuracy table, a bar chart of |error| per target x phase (datasheet beside
calibrated), measured-vs-predicted curves per target and phase, a roofline per GPU, and, when
whole-model points exist, the hybrid-vs-Transformer decode speedup beside the paper's claim.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from perfbench.errors import file_errors
from perfbench.report import figures
from perfbench.report.compare import display_table, roofline_ceilings
from perfbench.report.model_views import decode_speedup, measured_models
from perfbench.tp.compare import display_tp_table, tp_summary

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.meta{color:#555;margin-bottom:1.2rem}
table{border-collapse:collapse;font-size:.92rem;margin:.8rem 0}
th,td{padding:.3rem .7rem;border-bottom:1px solid #e5e5e5;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
th{background:#f6f6f6}
.note{color:#8a6d3b}
"""


def metrics_html(metrics: pd.DataFrame) -> str:
    return display_table(metrics).to_html(index=False, border=0, escape=True)


def build_sections(comparison) -> list[tuple[str, list]]:
    """(heading, [figure or html string, ...]) in report order."""
    joined, metrics = comparison.joined, comparison.metrics
    sections: list[tuple[str, list]] = [
        ("Accuracy per target and phase", [metrics_html(metrics),
                                           figures.metrics_figure(metrics)])]
    curves = []
    for (gpu, kind, name, phase), group in joined.groupby(
            ["gpu", "target_kind", "name", "phase"], sort=False):
        decode = " (CUDA graphs)" if phase == "decode" and comparison.mode == "graph" else ""
        title = f"{name} · {phase}{decode} · {gpu.upper()} · {comparison.prediction} prediction"
        curves.append(figures.curves_figure(group, title))
    sections.append(("Measured vs predicted", curves))
    roofs = []
    layers = joined[joined["target_kind"] == "layer"]
    for gpu, group in layers.groupby("gpu", sort=False):
        if not {"flops_pred", "bytes_pred"} <= set(group.columns):
            continue
        ceilings = roofline_ceilings(gpu)
        _, peak, bw = ceilings[0]
        roofs.append(figures.roofline_figure(figures.roofline_points(group, peak, bw), ceilings,
                                             f"Roofline · {gpu.upper()}"))
    if roofs:
        sections.append(("Roofline", roofs))
    decode_models = measured_models(joined, "decode")
    if not decode_models.empty:
        measured = decode_speedup(decode_models)
        predicted = decode_speedup(decode_models.assign(
            tokens_per_s=decode_models["batch"] / (decode_models["time_ms_pred"] / 1e3)))
        if not predicted.empty:
            sections.append(("Mamba-2-Hybrid vs Transformer decode", [figures.speedup_figure(
                predicted, measured, "Decode speedup, measured (markers) and predicted (lines)")]))
    tp_table = getattr(comparison, "tensor_parallel", pd.DataFrame())
    if not tp_table.empty:
        sections.append(("Tensor parallelism (per rank, analytic model)", [
            f"<p>{html.escape(tp_summary(tp_table))}</p>",
            display_tp_table(tp_table).to_html(index=False, border=0, escape=True),
            figures.tp_points_figure(tp_table, "Measured vs predicted per TP degree")]))
    return sections


def write_report(comparison, path: Path, source: str = "") -> Path:
    """Write the report; plotly.js is inlined once so the file opens offline."""
    path = Path(path)
    parts = []
    first = True
    for heading, items in build_sections(comparison):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for item in items:
            if isinstance(item, str):
                parts.append(item)
                continue
            parts.append(item.to_html(full_html=False, include_plotlyjs=True if first else False,
                                      config={"displaylogo": False}))
            first = False
    notes = "".join(f"<p class='note'>note: {html.escape(n)}</p>" for n in comparison.notes)
    decode = "CUDA graphs" if comparison.mode == "graph" else "eager"
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = (f"results: {html.escape(source)} · prediction: {comparison.prediction} · decode timed with "
            f"{decode} · error = (predicted − measured) / measured · generated {created}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>perfbench compare</title>"
            f"<style>{_CSS}</style></head><body><h1>perfbench: measured vs predicted</h1>"
            f"<div class='meta'>{meta}</div>{notes}{''.join(parts)}</body></html>")
    with file_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    return path
