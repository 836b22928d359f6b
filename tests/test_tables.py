"""The one terminal-table renderer: names never cut, tables that fit 80 columns by leaving out
lesser columns (and saying which), every column at 250; and compare's other outputs telling the
whole truth (the points of the other decode mode, the same fields in JSON and CSV)."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from models.registry import all_models
from perfbench.cli import app
from perfbench.output import fit_columns, print_table

NAMES = ["attention", "attention-mha", "mamba2-hybrid-8b-16k", "mamba2-hybrid-8b-128k"]


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"name": NAMES, "phase": ["decode"] * 4, "median error": [0.1, 0.2, 0.3, 0.4],
                         "a long lesser column": ["x" * 30] * 4, "another lesser one": ["y" * 30] * 4})


def _render(frame: pd.DataFrame, width: int, **kwargs) -> str:
    stream = io.StringIO()
    print_table(frame, stream=stream, width=width, **kwargs)
    return stream.getvalue()


def _cli(monkeypatch, width: int, *args) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in "┏┃┡│└┌"]


def test_a_table_at_80_columns_fits_in_80():
    text = _render(_frame(), 80, keep=["name"])
    assert max(len(line) for line in _table_lines(text)) <= 80


def test_a_table_at_80_columns_keeps_every_name_whole():
    text = _render(_frame(), 80, keep=["name"])
    assert all(name in text for name in NAMES) and "…" not in text


def test_a_table_at_80_columns_names_the_columns_it_left_out():
    text = _render(_frame(), 80, keep=["name"])
    assert "left out to fit 80 columns: a long lesser column" in text


def test_a_table_at_250_columns_shows_every_column():
    text = _render(_frame(), 250, keep=["name"])
    assert all(column in text for column in _frame().columns) and "left out" not in text


def test_a_folding_column_breaks_its_lines_instead_of_being_left_out():
    frame = pd.DataFrame({"key": ["kernel"], "value": ["a sentence long enough to need folding " * 3]})
    text = _render(frame, 60, fold=["value"])
    assert "left out" not in text and max(len(line) for line in _table_lines(text)) <= 60


def test_columns_are_left_out_lowest_priority_first():
    shown, left_out = fit_columns({"name": 10, "a": 10, "b": 10, "c": 10}, 45, keep=["name"],
                                  priority=["c", "a", "b"])
    assert shown == ["name", "a", "c"] and left_out == ["b"]


@pytest.mark.parametrize("width", [80, 250])
def test_compare_keeps_target_names_whole(monkeypatch, width):
    text = _cli(monkeypatch, width, "compare")
    assert "attention-mha" in text and "…" not in text
    assert max(len(line) for line in _table_lines(text)) <= width


@pytest.mark.parametrize("width", [80, 250])
def test_models_keeps_model_names_whole(monkeypatch, width):
    text = _cli(monkeypatch, width, "models")
    assert all(f"│ {name} " in text for name in all_models()) and "…" not in text
    assert max(len(line) for line in _table_lines(text)) <= width


def test_compare_at_250_columns_shows_every_column(monkeypatch):
    text = _cli(monkeypatch, 250, "compare")
    assert "datasheet p90" in text and "worst point" in text and "left out" not in text


def test_compare_says_how_many_eager_decode_points_it_left_out():
    from perfbench.report.compare import compare
    from results_factory import synthetic_sweep

    frame = pd.DataFrame(synthetic_sweep())
    eager = frame[(frame["status"] == "ok") & (frame["phase"] == "decode") & (frame["mode"] == "eager")]
    notes = compare(frame, calibration="none").notes
    assert any(note.startswith(f"{len(eager)} ok decode points timed eager") for note in notes)


def test_compare_json_and_csv_carry_the_same_fields(monkeypatch):
    records = json.loads(_cli(monkeypatch, 80, "compare", "--format", "json"))
    csv = pd.read_csv(io.StringIO(_cli(monkeypatch, 80, "compare", "--format", "csv")))
    assert set().union(*records) == set(csv.columns)
    for record, (_, line) in zip(records, csv.iterrows()):
        assert record["name"] == line["name"] and record["median_abs_err"] == pytest.approx(line["median_abs_err"])


def test_a_name_with_brackets_is_printed_whole_not_read_as_markup():
    frame = pd.DataFrame({"name": ["mamba2[d_state=64,headdim=128]"], "time_ms": [0.19]})
    assert "mamba2[d_state=64,headdim=128]" in _render(frame, 250)
