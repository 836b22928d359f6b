"""Command registry: name -> typer command function, in the order `perfbench --help` lists them."""

from __future__ import annotations

import importlib

# (command name, module under perfbench.commands, function name)
_TABLE = (
    ("models", "models", "models_command"),
    ("import-hf", "import_hf", "import_hf_command"),
    ("predict", "predict", "predict_command"),
    ("run", "run", "run_command"),
    ("calibrate", "calibrate", "calibrate_command"),
    ("env", "env", "env_command"),
    ("compare", "compare", "compare_command"),
    ("accuracy", "accuracy", "accuracy_command"),
    ("trace", "trace", "trace_command"),
    ("dashboard", "dashboard", "dashboard_command"),
)


def _load() -> dict:
    return {name: getattr(importlib.import_module(f"perfbench.commands.{module}"), func)
            for name, module, func in _TABLE}


COMMANDS = _load()
