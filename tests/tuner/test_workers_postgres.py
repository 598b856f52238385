"""The three-worker study of test_study_workers.py on PostgreSQL: the `pg_url` fixture (a fresh
database on the CI's server) skips where there is no server, and this test skips where the
fixture itself is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_study_workers import three_workers


def test_three_workers_on_one_postgres_study_run_the_total_once(
    request: pytest.FixtureRequest, tmp_path: Path, quick_workload: Path
) -> None:
    try:
        pg_url = request.getfixturevalue("pg_url")
    except pytest.FixtureLookupError:
        pytest.skip("no pg_url fixture (PostgreSQL in CI: issue 14)")
    three_workers(str(pg_url), tmp_path, quick_workload)
