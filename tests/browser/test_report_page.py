"""`dm-tune report`, seen in a real browser: the HTML file opened from disk, offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import optuna
import pytest
from chromium import Browser

ROOT = Path(__file__).resolve().parents[2]
STUDY_DB = ROOT / "docs" / "benchmarks" / "data" / "cpu-demo-3.db"  # a real 50-trial CPU run

pytestmark = pytest.mark.browser

# The tok/s against latency scatter, as plotted: the trial numbers of its points (the traces
# that carry them: one per category; the Pareto line and the chosen star repeat trials).
TRADEOFF_JS = """
const axis = (el, a) => {
  const title = ((el.layout || {})[a] || {}).title;
  return String(title?.text ?? title ?? '');
};
const plots = [...document.querySelectorAll('.js-plotly-plot')];
if (!plots.length || plots.some(el => !el.querySelector('svg.main-svg'))) return null;
const el = plots.find(
  el => axis(el, 'yaxis').includes('tok/s') && axis(el, 'xaxis').includes('latency'));
if (!el) return null;
const numbers = [];
for (const t of el.data) if (t.customdata) numbers.push(...t.customdata);
const drawn = el.querySelectorAll('.scatterlayer .point').length;
return {plots: plots.length, numbers: numbers, drawn: drawn};
"""


def _measured_trials(storage: str) -> set[int]:
    """The trials that measured something: completed ones, except those that reused an earlier
    trial's figures, and pruned ones whose first answer was seen before they were stopped."""
    (name,) = optuna.get_all_study_names(storage)
    out = set()
    for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
        complete = t.state == optuna.trial.TrialState.COMPLETE
        if complete and t.user_attrs.get("status") != "reused":
            out.add(t.number)
        watch = t.user_attrs.get("watch") or {}
        if t.state == optuna.trial.TrialState.PRUNED and watch.get("tokens"):
            out.add(t.number)
    return out


def test_report_shows_every_measured_trial_offline(tmp_path: Path, browser: Browser) -> None:
    """Plots drawn from the file alone, one point per measured trial, no network request."""
    db = tmp_path / "study.db"
    shutil.copyfile(STUDY_DB, db)
    storage = f"sqlite:///{db}"
    html = tmp_path / "r.html"
    r = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "report", "--storage", storage, "-o", str(html)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    expected = _measured_trials(storage)
    browser.driver.get(html.as_uri())
    page = browser.until(TRADEOFF_JS, "the tok/s against latency plot")
    assert sorted(page["numbers"]) == sorted(expected)  # each measured trial once
    assert page["drawn"] >= len(expected)  # drawn in the SVG, not only in the data
    browser.screenshot("report")
    requested = browser.requests()
    assert requested, "the performance log saw nothing: it would see a request either"
    schemes = {urlsplit(u).scheme for u in requested}
    assert schemes <= {"file", "data", "blob", "about"}, requested
