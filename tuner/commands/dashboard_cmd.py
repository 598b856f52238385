"""`dm-tune dashboard`: optuna-dashboard on the study database, with dm-tune's defaults."""

from __future__ import annotations

import typer

from tuner.storage import DEFAULT_STORAGE


def dashboard(
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help="SQLAlchemy URL of the study"),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on"),
    port: int = typer.Option(8080, "--port", help="Port to listen on"),
) -> None:
    """Inspect the trials in a browser (optuna-dashboard): parameters, Pareto front, and each
    trial's samples, VRAM, llama.cpp buffers and failure reasons under its user attributes."""
    from tuner.errors import UserError

    _check(storage)
    try:
        from optuna_dashboard import run_server
    except ModuleNotFoundError:
        raise UserError(
            "optuna-dashboard is not installed; pip install optuna-dashboard "
            '(or pip install -e ".[dashboard]")'
        ) from None
    typer.echo(f"Serving {storage} at http://{host}:{port}/ (Ctrl-C to stop)")
    run_server(storage, host=host, port=port)


def _check(storage: str) -> None:
    """Refuse a database that does not exist instead of creating an empty one."""
    from tuner.errors import UserError
    from tuner.storage import check_storage

    checked = check_storage(storage)
    if checked.sqlite_path is not None and not checked.sqlite_path.exists():
        raise UserError(
            f"no study database at {checked.sqlite_path}; run `dm-tune run` first "
            "or pass --storage URL"
        )
