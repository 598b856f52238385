"""Only the record modules read or write Optuna's trial and study attributes or reach into its
internals: everything else goes through TrialRecord / StudyRecord and their writers, so what a
study stores is written and read in one place."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORD_MODULES = {
    "tuner/study/_trial_record.py",
    "tuner/study/_study_record.py",
    "tuner/study/_constraints.py",
}
# Attributes, their writers, Optuna's constraint keys, and its storage behind a study or trial.
FORBIDDEN = re.compile(
    r"user_attrs|system_attrs|set_user_attr|set_system_attr|_trial_id|constraints:"
    r"|set_trial_|enqueue_trial|[a-z]\._storage\b(?! import)"
)


def offences() -> list[str]:
    out = []
    for package in ("tuner", "objectives"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name in RECORD_MODULES:
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if FORBIDDEN.search(line):
                    out.append(f"{name}:{n}: {line.strip()}")
    return out


def test_only_the_record_modules_touch_optuna_attributes() -> None:
    found = offences()
    assert not found, "use tuner.study's TrialRecord / StudyRecord instead:\n" + "\n".join(found)


def test_the_check_finds_an_offence() -> None:
    assert FORBIDDEN.search('x = t.user_attrs.get("status")')
    assert FORBIDDEN.search("storage = study._storage")
    assert not FORBIDDEN.search("from tuner.study._storage import GRACE_S, open_storage")
