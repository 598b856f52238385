"""Options that several commands share, declared once (Typer's `Annotated` style).

Where two commands word an option's help differently, each keeps its own declaration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tuner.errors import UserError
from tuner.profile import Prefer
from tuner.study import PREFER_CHOICES, RunSettings

RUN_DEFAULTS = RunSettings()  # `dm-tune run`'s defaults are the library's
DEFAULT_WORKLOAD = RUN_DEFAULTS.workload


def _prefer(value: str | Prefer) -> Prefer:
    """A bad word is a one-line `error: ...` (exit 2), as every other bad option is."""
    if value not in PREFER_CHOICES:
        raise UserError(f"--prefer must be one of {', '.join(PREFER_CHOICES)} (got {value!r})")
    return Prefer(value)


def prefer_option(help: str) -> Any:
    """`--prefer throughput|latency|balanced`, read into a Prefer."""
    # metavar: the help shows it as before, when the option was a plain string
    return typer.Option("--prefer", help=help, parser=_prefer, metavar="<str>")


StorageOption = Annotated[str, typer.Option("--storage", help="SQLAlchemy URL of the study")]
StudyOption = Annotated[
    str | None, typer.Option("--study", help="Study name (default: the only one)")
]
ProfileDirOption = Annotated[Path, typer.Option("--profile-dir")]
ConfirmRunsOption = Annotated[
    int, typer.Option("--confirm-runs", help="Fresh processes per candidate")
]
# verify and soak: a profile, the model it was measured with, and the measurement lock
ProfileArgument = Annotated[Path, typer.Argument(help="Profile YAML written by `dm-tune export`")]
ProfileModelOption = Annotated[
    Path | None,
    typer.Option("--model", "-m", help="GGUF the profile was measured with (default: demo)"),
]
NoWaitOption = Annotated[
    bool,
    typer.Option("--no-wait", help="Exit (code 2) instead of waiting for another measurement"),
]
