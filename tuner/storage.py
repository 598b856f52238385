"""Study storage: check a SQLAlchemy URL before anything is written, then open it for Optuna."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from tuner.errors import UserError

DEFAULT_STORAGE = "sqlite:///studies/dm-tune.db"


@dataclass(frozen=True)
class CheckedStorage:
    url: str
    sqlite_path: Path | None  # the database file for SQLite URLs, else None
    existed: bool  # the SQLite file was already there (so we must never delete it)


def _writable_dir(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=d):
            pass
        return True
    except OSError:
        return False


def check_storage(url: str) -> CheckedStorage:
    """Validate `url` without creating a database; raise UserError naming the fix."""
    try:
        parsed: URL = make_url(url)
    except ArgumentError:
        raise UserError(
            f"bad storage URL {url!r}; use a SQLAlchemy URL such as "
            "sqlite:///studies/dm-tune.db or postgresql://user:pass@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if not db or db == ":memory:":
            raise UserError(
                f"storage URL {url!r} has no database file; use sqlite:///path/to/file.db "
                "(an in-memory database would lose the study)"
            )
        path = Path(db)
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise UserError(f"study database {path} is not writable; fix its permissions")
        if not path.exists() and not _writable_dir(path.parent):
            raise UserError(
                f"cannot write to the studies directory {path.parent}; make it writable or "
                "choose another place with --storage sqlite:///PATH/dm-tune.db"
            )
        return CheckedStorage(url, path, path.exists())
    try:
        from sqlalchemy import create_engine

        engine = create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except ModuleNotFoundError as exc:
        raise UserError(
            f"the database driver for {parsed.drivername} is not installed ({exc.name}); "
            "install it, e.g. pip install psycopg2-binary for PostgreSQL"
        ) from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot connect to storage {parsed.render_as_string()}: {first}") from None
    return CheckedStorage(url, None, True)


HEARTBEAT_S = 30  # a running trial's run writes a heartbeat this often
GRACE_S = 120  # no heartbeat for this long: that run is gone (another host's, on shared storage)

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


def open_storage(
    checked: CheckedStorage, on_stale: StaleCallback | None = None
) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage with heartbeats. A trial whose run stopped writing them for
    GRACE_S is failed by the next run that starts a trial (whichever host it is on), and
    `on_stale` is called for it. A run on this host that was killed is recognised at once
    from the trial's owner instead (tuner.study)."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RDBStorage(
            checked.url,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=on_stale,
        )
