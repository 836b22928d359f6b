"""The README stays a true user's page: at most 250 lines; every `perfbench` command in its bash blocks
runs as written (a GPU-only one, on a machine without CUDA, ends in one line and exit code 2); and the
outputs it shows are what their commands print now (trimmed to the columns and rows shown).

Commands run in-process (`perfbench.cli.main`, as the console script, through `run_cli`) from a scratch directory that
sees the repository's `results/`, `tests/` and `examples/`, so files they write land there."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.test_cli_predict import run_cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 250
# Not run here: `dashboard` serves until stopped (tests/test_dashboard*.py, tests/test_browser.py), and
# `accuracy` rewrites the repository's accuracy files (tests/test_accuracy_docs.py checks what it writes).
NOT_RUN = ("dashboard", "accuracy")
GPU_ONLY = ("calibrate", "run", "trace")


def _blocks(language: str) -> list[list[str]]:
    blocks, current = [], None
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if current is None and line.strip() == f"```{language}":
                current = []
            elif current is not None:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def readme_commands() -> list[str]:
    """Each `perfbench ...` command line of the README's bash blocks (after `&&`, before a comment)."""
    commands = []
    for block in _blocks("bash"):
        for line in block:
            for part in line.split("  #")[0].split("&&"):
                if part.strip().startswith("perfbench "):
                    commands.append(part.strip())
    return commands


def shown_outputs() -> list[tuple[str, list[str]]]:
    """(command, table lines) of each text block that shows a `$ perfbench ...` command's output."""
    return [(block[0].removeprefix("$ "), block[1:]) for block in _blocks("text")
            if block and block[0].startswith("$ perfbench ")]


def _cells(line: str) -> list[str]:
    return [cell.strip().replace("\\|", "|") for cell in line.strip().strip("|").split(" | ")]


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    """Runs one README command line in a scratch directory: (exit code, stdout, stderr)."""
    for name in ("results", "tests", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)

    def run(command: str) -> tuple[int, str, str]:
        return run_cli(monkeypatch, capsys, *shlex.split(command)[1:])

    return run


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_readme_is_at_most_250_lines():
    assert len(README.read_text().splitlines()) <= MAX_LINES


def test_readme_lists_commands_and_shown_outputs():
    assert len(readme_commands()) >= 10
    assert len(shown_outputs()) >= 3


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.split()[1] not in NOT_RUN + GPU_ONLY])
def test_readme_command_runs_as_written(cli, command):
    code, out, err = cli(command)
    assert code == 0, err
    assert out.strip() or "wrote" in err


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.split()[1] in GPU_ONLY])
def test_readme_gpu_command_without_cuda_is_one_line_and_exit_2(cli, command):
    if _has_cuda():
        pytest.skip("a CUDA GPU is here: the command would measure for real")
    code, _out, err = cli(command)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("command,shown", shown_outputs(), ids=[c for c, _ in shown_outputs()])
def test_readme_shows_what_the_command_prints(cli, command, shown):
    code, out, err = cli(command)
    assert code == 0, err
    printed = [line for line in out.splitlines() if line.startswith("|")]
    header, rows = _cells(printed[0]), [_cells(line) for line in printed[2:]]
    columns = _cells(shown[0])
    at = [header.index(column) for column in columns]
    expected = [[row[i] for i in at] for row in rows[:len(shown) - 1]]
    assert [_cells(line) for line in shown[1:]] == expected, (
        "the README shows other output than the command prints now: paste its rows (the columns shown)")
