"""The three-worker study of test_workers_share.py on PostgreSQL: the `pg_url` fixture (a fresh
database on the CI's server) skips where there is no server, and fails under DM_TUNE_CI=1."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_workers_share import three_workers

pytestmark = [pytest.mark.postgres]


def test_three_workers_on_one_postgres_study_run_the_total_once(
    pg_url: str, tmp_path: Path, quick_workload: Path
) -> None:
    three_workers(pg_url, tmp_path, quick_workload)
