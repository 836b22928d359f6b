"""`perfbench design`: the design space around a base model, its sweep against single predictions,
the Pareto front, and the command's output and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analytic.design import design_models, design_pattern, design_sweep, max_decode_batch, pareto_front
from analytic.hardware import get_gpu
from analytic.memory import max_batch
from analytic.predict import predict
from models.registry import get_model
from models.specs import SpecError
from tests.test_cli_predict import assert_user_error, run_cli

BASE = get_model("mamba2-hybrid-8b")


@pytest.fixture(scope="module")
def sweep():
    designs = design_models(BASE, [0, 4, 8], ["mamba2", "mamba3", "gdn"])
    return designs, design_sweep(designs, [1024, 32768], [1, 48])


def test_the_paper_mix_is_the_base_model_itself():
    designs = design_models(BASE, [0, 4, 8], ["mamba2", "mamba3"])
    base = [d for d in designs if d.is_base]
    assert [d.name for d in base] == ["mamba2-a4-m28"] and base[0].model is BASE
    assert base[0].mix == "43/7/50"


def test_designs_keep_the_base_block_count_and_mlps():
    for design in design_models(BASE, [0, 2, 8], ["mamba3", "gdn"]):
        mix = design.model.layer_mix
        assert len(design.model.pattern) == 56 and mix.get("mlp") == 28
        assert mix.get("attention", 0) == design.attention and mix[design.ssm] == 28 - design.attention


def test_mlp_share_sets_the_mlp_block_count():
    design = design_models(BASE, [4], ["gdn"], [0.25])[0]
    assert design.model.layer_mix == {"gdn": 38, "attention": 4, "mlp": 14}


def test_attention_sits_evenly_among_the_mixers():
    pattern = design_pattern(6, 2, 0, "G")
    assert pattern == "GG*GGG*G"


def test_too_many_attention_layers_is_a_spec_error():
    with pytest.raises(SpecError, match="do not fit"):
        design_models(BASE, [29], ["mamba2"])


@pytest.mark.parametrize("row_index", [0, 3, 5, 20, 37, 50, 53])
def test_sweep_rows_equal_single_predict_calls(sweep, row_index):
    designs, frame = sweep
    row = frame.iloc[row_index]
    model = next(d for d in designs if d.name == row["design"]).model
    decode = predict(model, "decode", [int(row["batch"])], [int(row["seqlen"])]).iloc[0]
    prefill = predict(model, "prefill", [int(row["batch"])], [int(row["seqlen"])]).iloc[0]
    assert row["decode_ms"] == pytest.approx(decode["time_ms"], rel=1e-9)
    assert row["decode_tokens_per_s"] == pytest.approx(decode["tokens_per_s"], rel=1e-9)
    assert row["ttft_ms"] == pytest.approx(prefill["time_ms"], rel=1e-9)


def test_sweep_max_batch_equals_the_memory_model(sweep):
    designs, frame = sweep
    gpu = get_gpu("h100")
    for design in designs[::3]:
        rows = frame[(frame["design"] == design.name) & frame["at_max_batch"]]
        for _, row in rows.iterrows():
            assert row["max_batch"] == max_batch(design.model, int(row["seqlen"]), gpu)


def test_closed_form_max_batch_is_zero_when_weights_do_not_fit():
    big = get_model("transformer-8b")
    assert max_decode_batch(big, np.array([4096.0]), get_gpu("h100"), tp=1)[0] > 0
    tiny_gpu = type(get_gpu("h100"))(**{**get_gpu("h100").__dict__, "mem_bytes": 1e9})
    assert max_decode_batch(big, np.array([4096.0]), tiny_gpu)[0] == 0


def test_memory_per_sequence_is_kv_plus_state(sweep):
    _, frame = sweep
    assert (frame["memory_per_seq_bytes"] == frame["kv_bytes_per_seq"] + frame["state_bytes_per_seq"]).all()


def test_pareto_front_keeps_no_dominated_design(sweep):
    _, frame = sweep
    front = pareto_front(frame)
    candidates = frame[frame["at_max_batch"]]
    for _, row in front.iterrows():
        same = candidates[candidates["seqlen"] == row["seqlen"]]
        better = same[(same["decode_tokens_per_s"] > row["decode_tokens_per_s"])
                      & (same["memory_per_seq_bytes"] <= row["memory_per_seq_bytes"])]
        assert better.empty


def test_sweep_at_tp2_equals_predict_tp():
    from analytic.predict import predict_tp

    design = design_models(BASE, [2], ["gdn"])[0]
    row = design_sweep([design], [4096], [8], tp=2).iloc[1]
    expected = predict_tp(design.model, "decode", [8], [4096], "h100", "default", 2).iloc[0]
    assert row["decode_ms"] == pytest.approx(expected["time_ms"], rel=1e-9)
    assert row["max_batch"] == max_batch(design.model, 4096, get_gpu("h100"), tp=2)


def test_design_command_json_has_one_row_per_design_length_and_batch(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "design", "--base", "mamba2-hybrid-8b", "--attention", "0,4",
                           "--ssm", "mamba2,gdn", "--seqlen", "4k,16k", "--batch", "1,8", "--calibration", "none",
                           "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 4 * 2 * 3
    assert {"design", "params", "kv_bytes_per_seq", "state_bytes_per_seq", "max_batch", "decode_tokens_per_s",
            "ttft_ms"} <= set(rows[0])


@pytest.mark.parametrize("args", [["--ssm", "rwkv"], ["--attention", "two"], ["--base", "nope"],
                                  ["--mlp-ratio", "1.5"], ["--seqlen", "0"], ["--format", "yaml"]])
def test_design_command_bad_input_is_one_line(monkeypatch, capsys, args):
    assert_user_error(run_cli(monkeypatch, capsys, "design", "--calibration", "none", *args))


def test_rows_equal_predict_across_mlp_shares_and_mixers():
    designs = design_models(BASE, [0, 3], ["mamba", "gdn"], [0.5, 0.25])
    frame = design_sweep(designs, [2048], [4])
    for _, row in frame[~frame["at_max_batch"]].iterrows():
        model = next(d for d in designs if d.name == row["design"]).model
        assert row["decode_ms"] == pytest.approx(predict(model, "decode", [4], [2048])["time_ms"].iloc[0], rel=1e-9)
        assert row["ttft_ms"] == pytest.approx(predict(model, "prefill", [4], [2048])["time_ms"].iloc[0], rel=1e-9)
