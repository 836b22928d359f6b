"""Command registry: name -> typer command function, in the order `perfbench --help` lists them."""

from __future__ import annotations

import importlib

# (command name, module under perfbench.commands, function name)
_TABLE = (
    ("models", "models", "models_command"),
    ("predict", "predict", "predict_command"),
    ("run", "run", "run_command"),
    ("calibrate", "calibrate", "calibrate_command"),
    ("env", "env", "env_command"),
    ("compare", "compare", "compare_command"),
    ("trace", "trace", "trace_command"),
    ("dashboard", "dashboard", "dashboard_command"),
)


def _load() -> dict:
    commands = {}
    for name, module, func in _TABLE:
        try:
            mod = importlib.import_module(f"perfbench.commands.{module}")
        except ModuleNotFoundError as exc:  # a command still being written
            if exc.name == f"perfbench.commands.{module}":
                continue
            raise
        commands[name] = getattr(mod, func)
    return commands


COMMANDS = _load()
