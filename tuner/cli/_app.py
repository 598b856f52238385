"""The `dm-tune` command line: a thin layer over the library functions in tuner/."""

from __future__ import annotations

import warnings
from typing import Any

import typer
from typer.core import TyperGroup

from tuner.errors import UserError
from tuner.profile import ProfileWarning


class _Group(TyperGroup):
    """Turns a UserError from any command into `error: ...` on stderr and exit code 2, and a
    warning into one `warning: ...` line on stderr (not Python's file:line and source)."""

    def invoke(self, ctx: Any) -> Any:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line
            warnings.simplefilter("default", ProfileWarning)  # a message to the user, not a bug
            try:
                return super().invoke(ctx)
            except UserError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(exc.exit_code) from None


def _one_line(message: Warning | str, *_: Any, **__: Any) -> None:
    typer.echo(f"warning: {message}", err=True)


app = typer.Typer(
    cls=_Group,
    help="Measure llama-cpp-python settings on this machine and export the fastest profile "
    "that fits the VRAM budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """dm-tune: an auto-tuner for local LLM inference settings (llama-cpp-python)."""


def _register() -> None:
    from tuner.cli import run_cmd

    app.command("run")(run_cmd.run)

    from tuner.cli import profile_cmd

    app.add_typer(profile_cmd.app, name="profile")

    from tuner.cli import doctor_cmd

    app.command("doctor")(doctor_cmd.doctor)

    from tuner.cli import export_cmd

    app.command("export")(export_cmd.export)

    from tuner.cli import dashboard_cmd

    app.command("dashboard")(dashboard_cmd.dashboard)

    from tuner.cli import verify_cmd

    app.command("verify")(verify_cmd.verify)

    from tuner.cli import soak_cmd

    app.command("soak")(soak_cmd.soak)

    from tuner.cli import report_cmd

    app.command("report")(report_cmd.report)

    from tuner.cli import trials_cmd

    app.command("trials")(trials_cmd.trials)


_register()


def main() -> None:
    app()
