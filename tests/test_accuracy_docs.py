"""docs/accuracy.md, the README's accuracy block and the accuracy gate, from results/index.toml.

The committed files must be what `perfbench accuracy` writes now, and every never-fitted set's
median |err| per target x phase must stay within one point of tests/data/accuracy_snapshot.json.gz:
a change to the model that moves one fails here until `perfbench accuracy` is re-run and committed.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from perfbench.report import accuracy as report
from perfbench.measure.result_sets import bundled_root, read_index

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "tests" / "data" / "accuracy_snapshot.json.gz"


@pytest.fixture(scope="module")
def accuracy():
    return report.compute(bundled_root())


def test_committed_accuracy_doc_is_what_the_command_writes(accuracy):
    assert (ROOT / "docs" / "accuracy.md").read_text() == report.render(accuracy), \
        "docs/accuracy.md is stale: run `perfbench accuracy` and commit"


def test_readme_accuracy_block_is_what_the_command_writes(accuracy):
    readme = (ROOT / "README.md").read_text()
    assert report.replace_block(readme, report.readme_block(accuracy), "README.md") == readme, \
        "README.md's accuracy block is stale: run `perfbench accuracy` and commit"


def test_never_fitted_set_medians_hold_the_recorded_snapshot(accuracy):
    failures = report.gate_failures(report.snapshot(accuracy), report.load_snapshot(gzip.decompress(SNAPSHOT.read_bytes()).decode()))
    assert not failures, "accuracy moved (re-run `perfbench accuracy` if intended):\n" + "\n".join(failures)


def test_snapshot_holds_only_never_fitted_sets():
    fitted = {s.name for s in read_index(bundled_root()) if s.fitted}
    recorded = set(report.load_snapshot(gzip.decompress(SNAPSHOT.read_bytes()).decode()))
    assert recorded and not recorded & fitted


def test_snapshot_file_round_trips(accuracy):
    assert report.load_snapshot(report.snapshot_json(accuracy)) == report.snapshot(accuracy)


def test_gate_fails_on_a_median_moved_by_more_than_a_point():
    then = {"s": {"layer:mlp:decode:graph": {"n": 4, "median_abs_err": 0.020, "p90_abs_err": 0.03}}}
    now = {"s": {"layer:mlp:decode:graph": {"n": 4, "median_abs_err": 0.031, "p90_abs_err": 0.03}}}
    assert report.gate_failures(now, then) == ["s layer:mlp:decode:graph: median |err| 2.0 -> 3.1 %"]


def test_gate_allows_a_move_within_a_point():
    then = {"s": {"k": {"n": 4, "median_abs_err": 0.020, "p90_abs_err": 0.03}}}
    now = {"s": {"k": {"n": 4, "median_abs_err": 0.029, "p90_abs_err": 0.09}}}
    assert report.gate_failures(now, then) == []


def test_gate_fails_when_a_group_disappears():
    then = {"s": {"k": {"n": 4, "median_abs_err": 0.02, "p90_abs_err": 0.03}}}
    assert report.gate_failures({"s": {}}, then) == ["s k: gone"]


def test_replacing_the_block_keeps_the_text_around_it():
    text = f"before\n{report.README_BEGIN}\nold\n{report.README_END}\nafter\n"
    assert report.replace_block(text, "NEW", "x") == "before\nNEW\nafter\n"


def test_a_readme_without_markers_is_a_one_line_error():
    from perfbench.errors import PerfbenchError

    with pytest.raises(PerfbenchError, match="no accuracy markers"):
        report.replace_block("no markers here", "NEW", "README.md")


def test_command_writes_a_gzipped_snapshot_that_loads_back(accuracy, tmp_path):
    from perfbench.commands.accuracy import accuracy_command

    path = tmp_path / "snapshot.json.gz"
    accuracy_command(out=tmp_path / "accuracy.md", readme=None, snapshot=path, results_root=bundled_root())
    assert report.load_snapshot(gzip.decompress(path.read_bytes()).decode()) == report.snapshot(accuracy)
