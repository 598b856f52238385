"""`dm-tune dashboard`: optuna-dashboard on the study database, with dm-tune's defaults."""

from __future__ import annotations

import errno
from socketserver import ThreadingMixIn
from typing import Annotated, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import typer

from tuner.cli._options import StorageOption
from tuner.study import DEFAULT_STORAGE, display_url

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8080
MAX_PORT = 65535


def dashboard(
    storage: StorageOption = DEFAULT_STORAGE,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface)")
    ] = LOOPBACK,
    port: Annotated[
        int, typer.Option("--port", min=0, max=MAX_PORT, help="Port (0: any free one)")
    ] = DEFAULT_PORT,
) -> None:
    """Inspect the trials in a browser (optuna-dashboard): parameters, Pareto front, and each
    trial's samples, VRAM, llama.cpp buffers and failure reasons under its user attributes."""
    from tuner.errors import UserError

    _check(storage)
    try:
        from optuna_dashboard import wsgi
    except ModuleNotFoundError:
        raise UserError(
            "optuna-dashboard is not installed; pip install optuna-dashboard "
            '(or pip install -e ".[dashboard]")'
        ) from None
    try:
        app = wsgi(storage)
    except Exception as exc:  # optuna-dashboard's own storage check: one line, no password
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        first = first.replace(storage, display_url(storage))
        raise UserError(f"cannot open {display_url(storage)} for the dashboard: {first}") from None
    server = _bind(host, port, app)
    url = f"http://{_url_host(host)}:{server.server_address[1]}/"
    typer.echo(f"Serving {display_url(storage)} at {url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("Dashboard stopped.")
    finally:
        server.server_close()


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per request, as optuna-dashboard's own wsgiref server: the page's API calls
    run side by side."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No line per request on the terminal (the page makes dozens)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _bind(host: str, port: int, app: Any) -> _Server:
    """Listen before printing the URL, so a port in use is a one-line error, not a traceback."""
    from tuner.errors import UserError

    try:
        server: _Server = make_server(
            host, port, app, server_class=_Server, handler_class=_QuietHandler
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is in use; pass another with --port (0: any free one)"
            ) from None
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return server


def _url_host(host: str) -> str:
    """The address to put in the printed URL (every interface: this machine's loopback)."""
    return LOOPBACK if host in ("", "0.0.0.0") else host


def _check(storage: str) -> None:
    """Refuse a database that does not exist instead of creating an empty one."""
    from tuner.errors import UserError
    from tuner.study import check_storage

    checked = check_storage(storage)
    if checked.sqlite_path is not None and not checked.sqlite_path.exists():
        raise UserError(
            f"no study database at {checked.sqlite_path}; run `dm-tune run` first "
            "or pass --storage URL"
        )
