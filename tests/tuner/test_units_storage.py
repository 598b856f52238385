from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuner.errors import UserError
from tuner.study import check_storage
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


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_dir_non_root(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir(mode=0o500)
    with pytest.raises(UserError, match="cannot write"):
        check_storage(f"sqlite:///{d}/x.db")


def test_unwritable_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="cannot write to the studies directory"):
        check_storage(f"sqlite:///{blocker}/studies/x.db")


def test_unreachable_server_is_one_line() -> None:
    with pytest.raises(UserError, match="cannot connect to storage"):
        check_storage("postgresql+psycopg2://u:p@127.0.0.1:1/db")
