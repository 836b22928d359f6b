"""The dashboard's one number format and table widths: unit checks, then every table of every page
under AppTest (the headless-browser look at a table is in tests/test_browser.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboards.data import _MAX_PX, column_widths, round_number, rounded  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboards" / "app.py"
PAGES = ["views/overview.py", "views/curves.py", "views/roofline.py", "views/models.py", "views/runs.py",
         "views/tp.py"]


@pytest.mark.parametrize("raw,shown", [(255.30599999999998, 255.3), (19153.88, 19154.0), (0.0123456, 0.01235),
                                       (-32.35294117647059, -32.35), (0.0, 0.0), (7, 7)])
def test_a_number_is_shown_to_four_significant_digits_with_its_integer_part_whole(raw, shown):
    assert round_number(raw) == shown and str(round_number(raw)) == str(shown)


def test_nan_and_text_pass_through_the_number_format():
    assert round_number("B=1 L=4K") == "B=1 L=4K" and round_number(float("nan")) != round_number(float("nan"))


def test_rounded_leaves_integer_columns_alone():
    frame = rounded(pd.DataFrame({"batch": [1, 2], "time_ms": [1.23456, 2.0]}))
    assert frame["batch"].tolist() == [1, 2] and frame["time_ms"].tolist() == [1.235, 2.0]


def test_a_column_is_wide_enough_for_its_label_and_widest_cell():
    frame = pd.DataFrame({"a": ["x" * 40], "a much longer label than its cells": [1.0]})
    widths = column_widths(frame, {"a": "short"})
    assert widths["a"]["width"] > widths["a much longer label than its cells"]["width"] > 8 * len("a much longer")
    assert widths["a"]["label"] == "short"


def test_a_given_width_is_kept_and_no_column_grows_past_the_limit():
    frame = pd.DataFrame({"kept": [1.0], "huge": ["y" * 500]})
    widths = column_widths(frame, {"kept": {"width": "large"}})
    assert widths["kept"]["width"] == "large" and widths["huge"]["width"] == _MAX_PX


def _floats_shown(at: AppTest) -> list[float]:
    values = []
    for element in at.dataframe:
        frame = element.value
        for column in frame.columns:
            if pd.api.types.is_float_dtype(frame[column]):
                values += [v for v in frame[column] if v == v]
    return values


def _widths(at: AppTest) -> list[dict]:
    return [json.loads(element.proto.columns) for element in at.dataframe]


@pytest.mark.parametrize("page", PAGES)
def test_every_table_shows_numbers_in_the_one_format(page, synthetic_results_dir, monkeypatch):
    monkeypatch.setenv("PERFBENCH_RESULTS", str(synthetic_results_dir))
    at = AppTest.from_file(str(APP), default_timeout=60).run().switch_page(page).run()
    assert not at.exception
    assert all(round_number(v) == v for v in _floats_shown(at))


def test_every_column_of_the_runs_tables_has_a_width(synthetic_results_dir, monkeypatch):
    monkeypatch.setenv("PERFBENCH_RESULTS", str(synthetic_results_dir))
    at = AppTest.from_file(str(APP), default_timeout=60).run().switch_page("views/runs.py").run()
    for element, config in zip(at.dataframe, _widths(at)):
        assert all(str(c) in config and config[str(c)].get("width") for c in element.value.columns)
