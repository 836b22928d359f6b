"""Runs: pick runs and GPUs, see their provenance (clocks, versions, backends), download CSV."""

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboards import data
from perfbench.measure.results import run_manifests

st.title("Runs and provenance")
frame = data.results_or_stop()

PROVENANCE = ["gpu_name", "driver", "torch_version", "cuda_version", "mamba_ssm_version",
              "causal_conv1d_version", "flash_attn_version", "attn_backend", "conv_backend", "l2_flush",
              "nvtx"]
CLOCKS = ["sm_clock_mhz_before", "sm_clock_mhz_after", "mem_clock_mhz_before", "mem_clock_mhz_after",
          "power_w", "temperature_c"]


def _values(series: pd.Series) -> str:
    values = sorted({str(v) for v in series.dropna() if str(v) != ""})
    return ", ".join(values) if values else "–"


@st.cache_data(show_spinner=False)
def run_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for run_id, group in frame.groupby("run_id", sort=False):
        status = group["status"].value_counts()
        row = {"run_id": run_id, "started": group["timestamp"].min() if "timestamp" in group else "",
               "gpu": _values(group["gpu"]), "points": len(group),
               **{s: int(status.get(s, 0)) for s in ("ok", "oom", "skipped", "error")},
               "targets": _values(group["name"]), "phases": _values(group["phase"])}
        row.update({c: _values(group[c]) for c in PROVENANCE if c in group})
        row.update({c: float(group[c].median()) for c in CLOCKS if c in group})
        if "throttle_reasons" in group:
            row["throttle_reasons"] = _values(group["throttle_reasons"])
        rows.append(row)
    return pd.DataFrame(rows).sort_values("started", ascending=False).reset_index(drop=True)


def manifests(results_dir: str, run_ids: list[str]) -> dict[str, dict]:
    """The chosen runs' manifests (a packed set's from results/manifests.json.gz, else run-<id>.json)."""
    wanted = set(run_ids)
    return {m["run_id"]: m for m in run_manifests(results_dir) if m.get("run_id") in wanted}


runs = run_table(frame)
left, right = st.columns([3, 1])
gpus = sorted(set(frame["gpu"].dropna()))
chosen_gpus = right.multiselect("GPUs", gpus, default=gpus, key="runs_gpus")
candidates = runs[runs["gpu"].apply(lambda g: any(x in chosen_gpus for x in g.split(", ")))]["run_id"].tolist()
chosen = left.multiselect("Runs", candidates, default=candidates, key="runs_ids")

SUMMARY = ["run_id", "started", "gpu", "points", "ok", "oom", "skipped", "error", "targets", "phases"]
picked = runs[runs["run_id"].isin(chosen)]
st.subheader("Runs")
data.table(picked[[c for c in SUMMARY if c in picked]], hide_index=True)
st.subheader("Provenance, side by side")
st.caption("Clocks, power and temperature are medians over each run's points; a run whose SM clock "
           "after differs from before was throttling or boosting during the sweep.")
provenance = picked.set_index("run_id").drop(columns=[c for c in SUMMARY if c != "run_id"], errors="ignore").T
data.table(provenance.astype(str), height=36 * (len(provenance) + 1) + 4)

selected = frame[frame["run_id"].isin(chosen) & frame["gpu"].isin(chosen_gpus)]
st.subheader(f"Points ({len(selected)})")
status = st.multiselect("Status", sorted(set(frame["status"])), default=sorted(set(frame["status"])),
                        key="runs_status")
selected = selected[selected["status"].isin(status)]
show = [c for c in ("run_id", "gpu", "target_kind", "name", "phase", "mode", "batch", "seqlen", "status",
                    "reason", "time_ms", "p10_ms", "p90_ms", "tokens_per_s", "peak_mem_bytes",
                    "attn_backend", "conv_backend") if c in selected.columns]
data.table(selected[show], hide_index=True)
st.download_button("Download CSV (all columns)", selected.to_csv(index=False).encode(),
                   file_name="perfbench-results.csv", mime="text/csv", key="runs_download")

found = manifests(data.settings().results_dir, chosen)
if found:
    with st.expander("Run manifests (command line, sweep, environment)"):
        for run_id, manifest in found.items():
            st.markdown(f"**{run_id}**")
            st.json(manifest, expanded=False)
