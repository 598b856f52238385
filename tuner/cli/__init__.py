"""The `dm-tune` command line: `app` (typer) and `main`, one module per command (`run_cmd`,
`export_cmd`, ...), each parsing arguments and calling one library function.

`python -m tuner.cli` runs it too (`__main__.py`)."""

from tuner.cli._app import app, main
from tuner.cli._inspect_hint import inspect_commands

__all__ = [
    "app",
    "inspect_commands",
    "main",
]
