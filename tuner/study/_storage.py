"""Study storage: check a SQLAlchemy URL before anything is written, then open it for Optuna."""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from tuner.errors import UserError
from tuner.study._heartbeat import Heartbeat

DEFAULT_STORAGE = "sqlite:///studies/dm-tune.db"


@dataclass(frozen=True)
class CheckedStorage:
    url: str
    sqlite_path: Path | None  # the database file for SQLite URLs, else None


SQLITE_MAGIC = b"SQLite format 3\x00"
# the module a dialect's driver imports -> what to pip install
DRIVER_PACKAGES = {
    "psycopg2": "psycopg2-binary",
    "psycopg": "'psycopg[binary]'",
    "asyncpg": "asyncpg",
    "pg8000": "pg8000",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
    "mysql": "mysql-connector-python",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}


def display_url(url: str) -> str:
    """The storage URL as it may be printed or written: the password masked (`***`)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url  # not a URL at all, so it holds no parsable password either


def _nearest_existing(d: Path) -> Path:
    d = d.absolute()
    while not d.exists() and d != d.parent:
        d = d.parent
    return d


def _check_sqlite_file(url: str, path: Path, *, read_only: bool) -> None:
    """The file is a SQLite database we may use, or its folder can be made; creates nothing."""
    if path.is_dir():
        raise UserError(
            f"storage {url!r} points at the directory {path}; name a database file inside it, "
            f"e.g. --storage sqlite:///{path.as_posix().rstrip('/')}/dm-tune.db"
        )
    if path.exists():
        try:
            with path.open("rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise UserError(f"cannot read the study database {path}: {exc.strerror}") from None
        if head and head != SQLITE_MAGIC:
            raise UserError(
                f"{path} is not a SQLite database; pass another file with "
                "--storage sqlite:///PATH/dm-tune.db"
            )
        if not read_only and not os.access(path, os.R_OK | os.W_OK):
            raise UserError(f"study database {path} is not writable; fix its permissions")
        return
    if read_only:
        return
    parent = _nearest_existing(path.parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write to the studies directory {path.parent}; make it writable or "
            "choose another place with --storage sqlite:///PATH/dm-tune.db"
        )


def check_storage(url: str, *, read_only: bool = False) -> CheckedStorage:
    """Validate `url` without creating anything (no database, no folder); raise UserError
    naming the fix. `read_only`: the caller only reads (export), a read-only file is fine."""
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
        _check_sqlite_file(url, path, read_only=read_only)
        return CheckedStorage(url, path)
    try:
        from sqlalchemy import create_engine

        engine = create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except ModuleNotFoundError as exc:
        module = (exc.name or "").split(".")[0]
        package = DRIVER_PACKAGES.get(module, module or "its driver")
        raise UserError(
            f"the database driver for {parsed.drivername} is not installed ({module}); "
            f"install it: pip install {package}"
        ) from None
    except Exception as exc:
        raise _unreachable(exc, parsed) from None
    return CheckedStorage(url, None)


def _unreachable(exc: Exception, parsed: URL) -> UserError:
    """A database server we could not connect to, as one line: the driver's reason, then what
    to fix. The password appears nowhere: masked in the URL, and cut from the reason."""
    cause = getattr(exc, "orig", None) or exc  # the driver's error, without SQLAlchemy's frame
    text = str(cause).strip()
    reason = " ".join(text.splitlines()[0].split()) if text else type(cause).__name__
    if parsed.password:  # drivers don't echo it; where one would, it is cut (as a whole word)
        pw = re.escape(str(parsed.password))
        reason = re.sub(rf"(?<!\w){pw}(?!\w)", "***", reason)
    low = reason.lower()
    if "password" in low or "authentication failed" in low or "access denied" in low:
        where = f"the URL ({parsed.drivername}://USER:PASSWORD@HOST/DB)"
        if parsed.get_backend_name() == "postgresql":
            where += ", PGPASSWORD or ~/.pgpass"
        fix = f"check the user name and the password given in {where}"
    elif "does not exist" in low and parsed.database and parsed.database in reason:
        fix = f"create the database {parsed.database} or name an existing one in --storage"
    elif any(w in low for w in ("refused", "could not translate", "not known", "timeout")):
        server = (parsed.host or "localhost") + (f":{parsed.port}" if parsed.port else "")
        fix = f"no database server answers at {server}; start it, or fix the host and port"
    else:
        fix = "check the URL given with --storage and that its database server is running"
    return UserError(f"cannot connect to storage {parsed.render_as_string()}: {reason}; {fix}")


def storage_failure(exc: Exception, url: str) -> UserError:
    """A storage error in the middle of a run (disk full, database locked or gone) as one line."""
    cause = exc.__cause__ or exc.__context__ or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    first = first.removeprefix("(sqlite3.OperationalError) ")
    return UserError(
        f"the study database {display_url(url)} could not be written ({first}); free disk space "
        "or fix the database, then run the same command again: finished trials are kept"
    )


StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


def _serialize_sqlite(storage: optuna.storages.RDBStorage) -> None:
    """Every transaction takes SQLite's write lock when it begins (BEGIN IMMEDIATE). Optuna
    hands a waiting (enqueued) trial to a worker with SELECT ... FOR UPDATE, which SQLite
    ignores: two workers on one machine could both run the same enqueued trial. (SQLAlchemy's
    pysqlite recipe; a PostgreSQL server locks the row itself.)"""
    from sqlalchemy import event

    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite then leaves BEGIN to SQLAlchemy

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners are not reused


SCHEMA_ATTEMPTS = 5  # tries to open a database whose tables another worker is creating


def open_storage(
    checked: CheckedStorage, beat: Heartbeat, on_stale: StaleCallback | None = None
) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage with heartbeats every `beat.interval_s`. A trial whose run stopped
    writing them for `beat.grace_s` is failed by the next run that starts a trial (whichever
    host it is on), and `on_stale` is called for it. A run on this host that was killed is
    recognised at once from the trial's owner instead (tuner.study)."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage

    if checked.sqlite_path is not None:  # checked writable; made only now the study starts
        checked.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                storage = RDBStorage(
                    checked.url,
                    heartbeat_interval=beat.interval_s,
                    grace_period=beat.grace_s,
                    heartbeat_stale_trial_callback=on_stale,
                )
            path = checked.sqlite_path
            if path is not None and os.access(path if path.exists() else path.parent, os.W_OK):
                _serialize_sqlite(storage)  # a read-only file is only read (export, report)
            return storage
        except (IntegrityError, OperationalError):
            # workers starting together on a new database all create its tables: the ones
            # that lose the race find them made when they try again
            if attempt == SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
