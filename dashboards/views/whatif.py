"""What-if: edit a model's config, pick a GPU or calibration file, see predicted curves at once."""

import hashlib
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from analytic.hardware import GPUS, get_gpu
from analytic.memory import max_batch
from analytic.predict import breakdown, predict
from dashboards import data
from dashboards.whatif_spec import Edits, apply_edits, attention_count, hf_base
from models.registry import PAPER_MODELS, get_model
from perfbench.report import figures
from perfbench.errors import USER_ERRORS
from perfbench.sizes import format_size

CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]

st.title("What-if: edit a config, see the prediction")

top = st.columns([2, 1, 2])
source = top[0].radio("Base model from", ["built in", "Hugging Face config"], horizontal=True,
                      key="whatif_source")
gpu = top[1].selectbox("GPU", list(GPUS), format_func=str.upper, key="whatif_gpu")
upload = top[2].file_uploader("Calibration file (optional, JSON)", type=["json"], key="whatif_cal")
if source == "built in":
    base_name = top[0].selectbox("Base model", PAPER_MODELS, index=PAPER_MODELS.index("mamba2-hybrid-8b"),
                                 key="whatif_base")
    base = get_model(base_name)
else:
    hf_cols = st.columns([2, 2, 1])
    hf_path = hf_cols[0].text_input("config.json or model directory", key="whatif_hf_path",
                                    placeholder="tests/data/hf/Qwen3-8B")
    hf_upload = hf_cols[1].file_uploader("or upload a config.json", type=["json"], key="whatif_hf_upload")
    hf_name = hf_cols[2].text_input("name", value="uploaded-model", key="whatif_hf_name")
    try:
        base = hf_base(hf_path, hf_upload.getvalue() if hf_upload is not None else None, hf_name.strip() or "uploaded")
    except USER_ERRORS as exc:
        st.error(str(exc))
        st.stop()
    base_name = base.name


def calibration_arg() -> str:
    """'default' / 'none' from the sidebar, or the uploaded file saved under a content-hash name."""
    if upload is None:
        return data.settings().calibration
    payload = upload.getvalue()
    path = Path(tempfile.gettempdir()) / f"perfbench-cal-{hashlib.sha256(payload).hexdigest()[:16]}.json"
    if not path.exists():
        path.write_bytes(payload)
    return str(path)


EDIT_KEYS = ("whatif_d_state", "whatif_expand", "whatif_headdim", "whatif_n_attention", "whatif_n_kv",
             "whatif_ffn", "whatif_pattern")
if st.session_state.get("whatif_base_seen") != (base.name, base.source):
    for key in EDIT_KEYS:  # a new base: its own values, not the last model's edits
        st.session_state.pop(key, None)
    st.session_state["whatif_base_seen"] = (base.name, base.source)

st.markdown("**Config** — starts at the base model's values")
cols = st.columns(7)
m2 = base.mamba2 or base.mamba
att = base.attention
d_state = cols[0].number_input("SSM d_state", 1, 1024, value=(m2.d_state if m2 else 128), step=16,
                               key="whatif_d_state", disabled=m2 is None and "M" not in base.pattern)
expand = cols[1].number_input("expand", 1, 8, value=(m2.expand if m2 else 2), key="whatif_expand")
headdim = cols[2].number_input("Mamba-2 head dim", 8, 512, value=(base.mamba2.headdim if base.mamba2 else 64),
                               step=8, key="whatif_headdim")
n_attention = cols[3].number_input("attention layers", 0, sum(c != "-" for c in base.pattern),
                                   value=attention_count(base.pattern), key="whatif_n_attention")
n_kv = cols[4].number_input("KV heads (GQA groups)", 1, 128, value=(att.n_kv_heads if att else 8),
                            key="whatif_n_kv")
ffn = cols[5].number_input("FFN size", 256, 131072, value=(base.mlp.ffn_hidden if base.mlp else 16384),
                           step=1024, key="whatif_ffn")
batches = cols[6].multiselect("Batches", [1, 8, 32, 64, 128, 256], default=[1, 64], key="whatif_batches")
with st.expander("Layer pattern (M Mamba-2, m Mamba-1, * attention, - MLP)"):
    pattern = st.text_input("pattern", value="", placeholder=base.pattern, key="whatif_pattern").strip()

try:
    edited = apply_edits(base, Edits(d_state=int(d_state), expand=int(expand), headdim=int(headdim),
                                     n_attention=int(n_attention), n_kv_heads=int(n_kv),
                                     ffn_hidden=int(ffn), pattern=pattern or None),
                         name=f"{base_name}-edited")
    cal = calibration_arg()
    batches = batches or [1]
    graphs = data.settings().mode == "graph"
    frames = {}
    for label, spec in (("base", base), ("edited", edited)):
        frames[label] = {phase: predict(spec, phase, batches, CONTEXTS if phase == "decode" else CONTEXTS[:6],
                                        gpu=gpu, calibration=cal, graphs=graphs)
                         for phase in ("decode", "prefill")}
    calibrated = bool(frames["edited"]["decode"]["calibrated"].iloc[0])
except USER_ERRORS as exc:
    st.error(str(exc))
    st.stop()

st.caption(f"{get_gpu(gpu).name} · {'calibrated' if calibrated else 'datasheet roofline'} prediction · "
           f"decode {'with CUDA graphs' if graphs else 'eager'} · pattern `{edited.pattern}`")


def facts(spec) -> dict[str, str]:
    out = {"parameters": f"{spec.params / 1e9:.2f} B",
           "KV cache per token": f"{spec.kv_bytes_per_token() / 1024:,.0f} KiB",
           "SSM + conv state per sequence": f"{spec.state_bytes_per_sequence() / 2**20:,.1f} MiB"}
    for context in (4096, 32768, 131072):
        out[f"max decode batch @ {format_size(context)}"] = f"{max_batch(spec, context, get_gpu(gpu)):,}"
    return out


summary = pd.DataFrame({"base": facts(base), "edited": facts(edited)})
left, right = st.columns([1, 2])
left.dataframe(summary)
with right:
    point_b, point_l = max(batches), 32768
    parts = {label: breakdown(spec, "decode", point_b, point_l, gpu=gpu, calibration=cal)
             for label, spec in (("base", base), ("edited", edited))}
    data.plot(figures.breakdown_figure(parts, f"Decode step by op class, B={point_b} L=32K"),
              key="whatif_breakdown")

left, right = st.columns(2)
with left:
    data.plot(figures.whatif_figure(frames["base"]["decode"], frames["edited"]["decode"], "time_ms",
                                    "decode step (ms)", "Decode step"), key="whatif_decode")
with right:
    data.plot(figures.whatif_figure(frames["base"]["decode"], frames["edited"]["decode"], "tokens_per_s",
                                    "tokens / s", "Decode throughput"), key="whatif_tps")
data.plot(figures.whatif_figure(frames["base"]["prefill"], frames["edited"]["prefill"], "time_ms",
                                "time to first token (ms)", "Prefill (time to first token)").update_xaxes(
    title_text="prompt length (tokens)"), key="whatif_prefill")
