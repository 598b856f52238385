from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tuner.errors import UserError
from tuner.study import check_storage, storage_failure
from tuner.units import parse_size_mb


@pytest.mark.parametrize(
    ("text", "mb"), [("6GB", 6144.0), ("5.5 GiB", 5632.0), ("5000MB", 5000.0), ("6", 6144.0)]
)
def test_sizes(text: str, mb: float) -> None:
    assert parse_size_mb(text) == mb


@pytest.mark.parametrize("text", ["six", "6TB", "-1GB", "0GB", ""])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(UserError):
        parse_size_mb(text)


def test_sqlite_storage_is_checked_without_creating_the_file(tmp_path: Path) -> None:
    db = tmp_path / "studies" / "x.db"
    checked = check_storage(f"sqlite:///{db}")
    assert checked.sqlite_path == db and not db.exists()


@pytest.mark.parametrize("url", ["not a url", "sqlite://", "sqlite:///:memory:"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(UserError):
        check_storage(url)


NOBODY = 65534


@contextmanager
def _as_nobody_when_root() -> Iterator[None]:
    """Root passes every permission check (CI runs as root): become `nobody` for the block. The
    saved user id stays 0, so the process can come back."""
    if os.geteuid() != 0:
        yield
        return
    os.setresuid(NOBODY, NOBODY, 0)
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_studies_directory_without_write_permission_is_refused() -> None:
    """A real directory the user may read but not write, as a user and as root."""
    shared = Path(tempfile.mkdtemp(prefix="dm-tune-ro-"))  # tmp_path's parents are 0700
    d = shared / "ro"
    try:
        shared.chmod(0o755)
        d.mkdir(mode=0o555)
        check_storage(f"sqlite:///{shared}/x.db")  # as ourselves: every import done, fine
        where = re.escape(str(d))
        with _as_nobody_when_root(), pytest.raises(UserError, match=f"cannot write to .* {where};"):
            check_storage(f"sqlite:///{d}/x.db")
        with _as_nobody_when_root(), pytest.raises(UserError, match=f"to .* {where}/sub;"):
            check_storage(f"sqlite:///{d}/sub/x.db")  # the folder would be made inside it
        check_storage(f"sqlite:///{d}/x.db", read_only=True)  # export only reads: fine
    finally:
        if d.exists():
            d.chmod(0o755)
        shutil.rmtree(shared)


def test_unwritable_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="cannot write to the studies directory"):
        check_storage(f"sqlite:///{blocker}/studies/x.db")


def test_unreachable_server_is_one_line() -> None:
    with pytest.raises(UserError, match="cannot connect to storage") as err:
        check_storage("postgresql+psycopg2://u:p@127.0.0.1:1/db")
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and "postgresql+psycopg2://u:***@127.0.0.1:1/db" in msg
    assert "port 1 failed" in msg  # a one-letter password is cut only as a whole word
    assert msg.endswith(
        "no database server answers at 127.0.0.1:1; start it, or fix the host and port"
    )


def test_a_storage_failure_mid_run_masks_the_password() -> None:
    err = storage_failure(
        RuntimeError("server closed the connection"), "postgresql://u:s3cr3t@h/db"
    )
    assert "s3cr3t" not in str(err) and "postgresql://u:***@h/db" in str(err)
