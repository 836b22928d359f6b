"""scripts/samples_from_log.py: bad input is one line on stderr and exit 2."""

import runpy
from pathlib import Path


SCRIPT = Path(__file__).parent.parent / "scripts" / "samples_from_log.py"


def _main():
    return runpy.run_path(str(SCRIPT), run_name="samples_from_log")["main"]


def test_a_log_line_unlike_its_plan_exits_2_with_one_line(tmp_path, capsys):
    log = tmp_path / "run.log"
    log.write_text("kernels: gdn\n  chunk_gated_delta_rule b=2 L=384: 0.540 ms\n")
    rc = _main()([str(log), "--into", "missing.json.gz", "--out", str(tmp_path / "o.json.gz"), "--created", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "does not match its plan entry" in err and err.count("\n") == 1


def test_a_log_without_families_exits_2(tmp_path, capsys):
    log = tmp_path / "run.log"
    log.write_text("== families 12:52:41Z\n")
    rc = _main()([str(log), "--into", "missing.json.gz", "--out", str(tmp_path / "o.json.gz"), "--created", "x"])
    assert rc == 2 and "no kernel family" in capsys.readouterr().err
