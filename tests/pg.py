"""The `pg_url` fixture: a fresh database per test on the PostgreSQL server named by
DM_TUNE_TEST_PG_URL (scripts/pg_test_server.sh starts one; .ci/run does). Skipped without it,
failed under DM_TUNE_CI=1, where the PostgreSQL tests must run."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL, make_url


def _unavailable(reason: str) -> None:
    if os.environ.get("DM_TUNE_CI") == "1":
        pytest.fail(f"DM_TUNE_CI is set and {reason}", pytrace=False)
    pytest.skip(reason)


def libpq_conninfo(url: URL) -> str:
    """The URL as libpq takes it (no SQLAlchemy driver suffix); the password, if any, stays out."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL (`postgresql+psycopg://`, no password: PGPASSWORD holds it) of a database made for
    this test and dropped after, so tests never see each other's studies."""
    base = os.environ.get("DM_TUNE_TEST_PG_URL")
    if not base:
        _unavailable("DM_TUNE_TEST_PG_URL is not set (bash scripts/pg_test_server.sh start DIR)")
    try:
        import psycopg
    except ModuleNotFoundError:
        _unavailable('psycopg is not installed (pip install -e ".[postgres]")')
    url = make_url(str(base))
    name = f"dm_tune_test_{secrets.token_hex(6)}"
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield url.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
