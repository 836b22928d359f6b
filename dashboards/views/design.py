"""Design space: the Pareto front of decode throughput against memory per sequence over hybrid mixes and
mixers around a base model (analytic.design; the paper's 43/7/50 hybrid starred when it is the base)."""

import streamlit as st

from analytic.design import SSM_KINDS, design_models, design_sweep, pareto_front
from analytic.hardware import GPUS, get_gpu
from dashboards import data
from models.registry import BUILTIN_MODELS, PAPER_MODELS
from perfbench.report import figures
from perfbench.errors import USER_ERRORS
from perfbench.sizes import format_size

CONTEXTS = [1024, 4096, 16384, 32768, 131072]

st.title("Design space: what another mix or mixer costs at inference")
top = st.columns([2, 1, 2, 2])
base_name = top[0].selectbox("Base model", list(PAPER_MODELS) + ["mamba3-hybrid-8b", "gdn-hybrid-8b"],
                             index=PAPER_MODELS.index("mamba2-hybrid-8b"), key="design_base")
gpu = top[1].selectbox("GPU", list(GPUS), format_func=str.upper, key="design_gpu")
ssm = top[2].multiselect("SSM kinds", list(SSM_KINDS), default=["mamba2", "mamba3", "gdn"], key="design_ssm")
attention = top[3].multiselect("Attention layers", [0, 1, 2, 4, 6, 8, 12, 16], default=[0, 2, 4, 8],
                               key="design_attention")
context = st.select_slider("Context length", CONTEXTS, value=4096, format_func=format_size, key="design_context")

try:
    designs = design_models(BUILTIN_MODELS[base_name], attention or [0], ssm or ["mamba2"])
    frame = design_sweep(designs, [context], [1], gpu=gpu, calibration=data.settings().calibration)
except USER_ERRORS as exc:
    st.error(str(exc))
    st.stop()

at_max = frame[frame["at_max_batch"]]
front = pareto_front(frame)
st.caption(f"{get_gpu(gpu).name} · {'calibrated' if frame['calibrated'].iloc[0] else 'datasheet roofline'} "
           f"prediction · each design keeps {base_name}'s {len(BUILTIN_MODELS[base_name].pattern)} blocks, width and "
           f"MLPs; mix = SSM / attention / MLP blocks in %; decode at the largest batch that fits")
data.plot(figures.design_space_figure(at_max, front, f"{base_name} designs at {format_size(context)} context"),
          key="design_space")
st.markdown("**Pareto front** — no other design decodes faster with less memory per sequence")
st.dataframe(front[["design", "mix", "params", "memory_per_seq_bytes", "max_batch", "decode_tokens_per_s"]],
             hide_index=True)
with st.expander("Every design"):
    st.dataframe(at_max.drop(columns=["at_max_batch"]), hide_index=True)
