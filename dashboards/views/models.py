"""Models: the paper's four 8B models composed from layers, and the hybrid's "up to 8x" claim."""

import pandas as pd
import streamlit as st

from analytic.hardware import get_gpu
from dashboards import data
from models.registry import PAPER_MODELS
from perfbench.report import figures
from perfbench.report import model_views as mv
from perfbench.sizes import format_size

st.title("Whole 8B models")
s = data.settings()
gpu = data.current_gpu()
graphs = s.mode == "graph"


@st.cache_data(show_spinner=False)
def predicted(phase: str, batches: tuple, gpu: str, calibration: str, graphs: bool) -> pd.DataFrame:
    return mv.predict_models(PAPER_MODELS, phase, batches, mv.CONTEXTS, gpu, calibration, graphs)


@st.cache_data(show_spinner=False)
def capacity(gpu: str, calibration: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return mv.capacity_speedup(mv.CONTEXTS, gpu, calibration), mv.max_batch_frame(PAPER_MODELS, mv.CONTEXTS, gpu)


result, error = data.try_comparison()
measured = result.joined if result is not None else pd.DataFrame()
if error:
    st.info(f"Predictions only — no measured points: {error}")
elif mv.measured_models(measured, "decode").empty:
    st.info("No measured whole-model points in these results yet (`perfbench run --model …`); "
            "showing predictions.")
st.caption(f"GPU {gpu.upper()} · prediction: {'datasheet roofline' if s.calibration == 'none' else 'calibrated if a calibration is bundled'}"
           f" · decode {'with CUDA graphs' if graphs else 'eager'} · lines predicted, open markers measured")

batch = st.radio("Batch", mv.BATCHES, index=0, horizontal=True, key="models_batch")
decode = predicted("decode", mv.BATCHES, gpu, s.calibration, graphs)
prefill = predicted("prefill", (batch,), gpu, s.calibration, graphs)
meas_decode = mv.measured_models(measured, "decode")
meas_prefill = mv.measured_models(measured, "prefill")
at_batch = decode[decode["batch"] == batch]
meas_at_batch = meas_decode[meas_decode["batch"] == batch] if not meas_decode.empty else meas_decode

left, right = st.columns(2)
with left:
    data.plot(figures.model_curves_figure(at_batch, meas_at_batch, "time_ms", "decode step (ms)",
                                          f"Decode step, B={batch}"), key="models_step")
with right:
    data.plot(figures.model_curves_figure(at_batch, meas_at_batch, "tokens_per_s", "tokens / s",
                                          f"Decode throughput, B={batch}"), key="models_tps")
cap, max_batches = capacity(gpu, s.calibration)
left, right = st.columns(2)
with left:
    meas_pf = meas_prefill[meas_prefill["batch"] == batch] if not meas_prefill.empty else meas_prefill
    data.plot(figures.model_curves_figure(prefill, meas_pf, "time_ms", "time to first token (ms)",
                                          f"Prefill (time to first token), B={batch}"), key="models_ttft")
with right:
    st.markdown(f"**Largest decode batch that fits ({gpu.upper()}, predicted)**")
    data.table(max_batches)
    measured_fit = mv.measured_max_batch(data.try_results()[0] if not error else pd.DataFrame())
    st.markdown("**Largest batch measured ok**")
    if measured_fit.empty:
        st.caption("no measured whole-model points")
    else:
        data.table(measured_fit)

memory = mv.memory_frame(PAPER_MODELS, batch, mv.CONTEXTS)
data.plot(figures.memory_figure(memory, f"Memory at B={batch}: the KV cache grows with context, the SSM state does not",
                                get_gpu(gpu).mem_bytes), key="models_memory")

st.subheader("Mamba-2-Hybrid vs Transformer decode speedup")
data.plot(figures.speedup_figure(mv.decode_speedup(decode), mv.decode_speedup(meas_decode),
                                 "Hybrid ÷ Transformer decode speedup", cap), key="models_speedup")
st.caption(figures.SPEEDUP_CAPTION + ".")

st.subheader("Sum of layers vs whole model (measured)")
checks = []
for name in PAPER_MODELS:
    table = mv.sum_of_layers(measured, name) if not measured.empty else pd.DataFrame()
    if not table.empty:
        checks.append(table.assign(model=name, point=[f"B={b} L={format_size(l)}" for b, l in
                                                        zip(table["batch"], table["seqlen"])]))
if checks:
    data.table(pd.concat(checks)[["model", "point", "model_ms", "layers_ms", "model_over_layers"]],
                 hide_index=True)
else:
    st.caption("needs measured whole-model points and every one of their layers at the same points")
