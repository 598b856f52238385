"""The heartbeat timings (tuner/study/_heartbeat.py): Optuna's defaults for dm-tune, or whole
seconds from DM_TUNE_HEARTBEAT_S / DM_TUNE_HEARTBEAT_GRACE_S; a bad value says what to set."""

from __future__ import annotations

import pytest

from tuner.errors import UserError
from tuner.study._heartbeat import GRACE_ENV, HEARTBEAT_ENV, Heartbeat, heartbeat


@pytest.fixture(autouse=True)
def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HEARTBEAT_ENV, raising=False)
    monkeypatch.delenv(GRACE_ENV, raising=False)


def test_the_defaults_are_30_s_and_120_s() -> None:
    assert heartbeat() == Heartbeat(interval_s=30, grace_s=120)


def test_the_environment_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HEARTBEAT_ENV, "1")
    monkeypatch.setenv(GRACE_ENV, " 3 ")
    assert heartbeat() == Heartbeat(interval_s=1, grace_s=3)
    monkeypatch.setenv(HEARTBEAT_ENV, "")  # set but empty: the default
    monkeypatch.setenv(GRACE_ENV, "600")
    assert heartbeat() == Heartbeat(interval_s=30, grace_s=600)


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "abc", "30s"])
@pytest.mark.parametrize("name", [HEARTBEAT_ENV, GRACE_ENV])
def test_a_value_that_is_not_whole_seconds_is_refused(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(UserError) as err:
        heartbeat()
    assert str(err.value).startswith(f"{name}={value!r} is not a number of seconds; set it to")


@pytest.mark.parametrize(("beat", "grace"), [("120", None), ("5", "5"), ("5", "4")])
def test_a_grace_period_not_longer_than_the_heartbeat_is_refused(
    beat: str, grace: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HEARTBEAT_ENV, beat)
    if grace is not None:
        monkeypatch.setenv(GRACE_ENV, grace)
    with pytest.raises(UserError, match=f"{GRACE_ENV} .* must be longer than {HEARTBEAT_ENV}"):
        heartbeat()
