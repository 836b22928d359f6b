"""Size lists the CLI takes: `--batch 1,8,64`, `--seqlen 1k,4k,128K`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfbench.errors import PerfbenchError
from perfbench.sizes import format_size, parse_names, parse_size, parse_sizes


@pytest.mark.parametrize("text,value", [
    ("512", 512), ("4k", 4096), ("4K", 4096), ("128K", 131072), ("128k", 131072), ("1m", 1048576),
    (" 16k ", 16384), ("1", 1),
])
def test_sizes_accept_plain_and_k_suffixed_numbers(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["0", "0k", "-1", "-4k", "1.5k", "", "k", "4kb", "four", "4 k 2"])
def test_zero_negative_and_junk_sizes_are_one_line_errors(text):
    with pytest.raises(PerfbenchError) as info:
        parse_size(text)
    assert "\n" not in str(info.value)


def test_size_list_keeps_order_and_drops_duplicates():
    assert parse_sizes("4k,1k,4096,128K") == [4096, 1024, 131072]


@pytest.mark.parametrize("text", ["", "  ", "1,,2", "1,0"])
def test_empty_or_bad_size_lists_are_errors(text):
    with pytest.raises(PerfbenchError):
        parse_sizes(text)


@given(st.integers(min_value=1, max_value=1 << 24))
def test_format_size_round_trips(value):
    assert parse_size(format_size(value)) == value


def test_format_size_labels():
    assert format_size(4096) == "4K" and format_size(512) == "512" and format_size(1536) == "1536"


def test_names_are_split_and_stripped():
    assert parse_names(" mamba2, attention ,") == ["mamba2", "attention"]
    with pytest.raises(PerfbenchError):
        parse_names(" , ")
