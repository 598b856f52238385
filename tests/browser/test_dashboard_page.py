"""`dm-tune dashboard`, seen in a real browser: a real study's page, as a user gets it."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import optuna
import pytest
from chromium import WAIT_S, Browser

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
STUDY_DB = ROOT / "docs" / "benchmarks" / "data" / "cpu-demo-3.db"  # a real 50-trial CPU run


@pytest.fixture
def storage(tmp_path: Path) -> str:
    """A copy of the study database (the one under docs/ is never opened)."""
    db = tmp_path / "study.db"
    shutil.copyfile(STUDY_DB, db)
    return f"sqlite:///{db}"


@contextmanager
def dashboard(*args: str) -> Iterator[str]:
    """`dm-tune dashboard ARGS --port 0` in its own process group; yields the URL it prints."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "dashboard", *args, "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert server.stdout is not None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(server.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout=WAIT_S)
        line = server.stdout.readline() if ready else ""
        assert line.startswith("Serving "), f"dm-tune dashboard printed {line!r}"
        url = line.split(" at ")[1].split()[0]
        yield url
    finally:
        _stop(server)


def _stop(server: subprocess.Popen[str]) -> None:
    """SIGTERM to the process group, wait, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(timeout=30)
            break
        except subprocess.TimeoutExpired:
            continue
    server.wait()
    if server.stdout is not None:
        server.stdout.close()


def _expected(storage: str) -> tuple[int, optuna.Study]:
    studies = optuna.get_all_study_summaries(storage)
    assert len(studies) == 1
    study = optuna.load_study(study_name=studies[0].study_name, storage=storage)
    return studies[0]._study_id, study


# The plotly figures of the page, as plotted: {container id: [(trace name, #points, colour)]}.
PLOTS_JS = """
const out = {};
for (const el of document.querySelectorAll('.js-plotly-plot')) {
  if (!el.querySelector('svg.main-svg') || !el.data) continue;
  out[el.id] = el.data.map(t => {
    const colour = (t.marker || {}).color;
    return [t.name || '', (t.x || []).length, typeof colour === 'string' ? colour : ''];
  });
}
return Object.keys(out).length >= 3 ? out : null;
"""


def test_dashboard_shows_the_study(storage: str, browser: Browser) -> None:
    """Plots drawn, every trial counted, metrics named, infeasible trials greyed, nothing
    fetched from anywhere but the dashboard itself."""
    study_id, study = _expected(storage)
    trials = study.get_trials(deepcopy=False)
    infeasible = [
        t
        for t in trials
        if t.state == optuna.trial.TrialState.COMPLETE
        and any(c > 0 for c in t.system_attrs.get("constraints", []))
    ]
    assert study.metric_names == ["gen_tok_s", "cold_ttft_ms"]
    assert infeasible, "the study should hold infeasible trials (the app's profiles below floor)"
    with dashboard("--storage", storage) as url:
        assert urlsplit(url).hostname == "127.0.0.1"
        browser.driver.get(f"{url}dashboard/studies/{study_id}")
        plots = browser.until(PLOTS_JS, "its plots")
        # Drawn: each plot's SVG holds its points or bars.
        for plot in ("graph-pareto-front", "plot-history", "graph-timeline"):
            assert plot in plots
            drawn = browser.driver.execute_script(
                "return document.querySelectorAll(arguments[0]).length",
                f"#{plot} svg.main-svg .point",
            )
            assert drawn > 0, f"{plot} has no point drawn"
        # The timeline has a bar per trial, by state; infeasible ones apart.
        timeline = {name: n for name, n, _ in plots["graph-timeline"]}
        assert sum(timeline.values()) == len(trials)
        assert timeline["Infeasible"] == len(infeasible)
        # The Pareto front greys infeasible trials (optuna-dashboard reads the legacy list).
        grey = [n for _, n, colour in plots["graph-pareto-front"] if colour == "#cccccc"]
        assert grey == [len(infeasible)]
        text = browser.driver.find_element("tag name", "body").text
        for name in study.metric_names:
            assert name in text  # the axis pickers name the metrics, not "Objective 0"
        assert "Objective 0" not in text
        assert "Infeasible" in text  # the timeline's legend
        browser.screenshot("dashboard")
        # The trial list counts them all.
        browser.driver.get(f"{url}dashboard/studies/{study_id}/trials")
        browser.until(f"return document.body.innerText.includes('{len(trials)} Trials')", "")
        requests = browser.requests()
    network = [u for u in requests if urlsplit(u).scheme in ("http", "https", "ws", "wss")]
    assert network and all(u.startswith(url) for u in network), network


def test_a_trial_page_shows_its_user_attributes(storage: str, browser: Browser) -> None:
    """What dm-tune stores per trial is readable on the trial's page: here the app's profile
    below the context floor (infeasible), why, its status, settings and the whole metrics."""
    study_id, study = _expected(storage)
    trial = next(t for t in study.get_trials(deepcopy=False) if "below_floor" in t.user_attrs)
    with dashboard("--storage", storage) as url:
        browser.driver.get(f"{url}dashboard/studies/{study_id}/trials?numbers={trial.number}")
        rows = browser.until(ATTRS_JS, "the user attribute rows")
    assert rows["status"] == trial.user_attrs["status"]
    assert rows["baseline"] == trial.user_attrs["baseline"]
    assert rows["below_floor"] == trial.user_attrs["below_floor"]
    metrics = json.loads(rows["metrics"])  # whole, not cut
    assert metrics["gen_tok_s"] == trial.values[0]
    assert json.loads(rows["llama_kwargs"]) == trial.user_attrs["llama_kwargs"]


# optuna-dashboard 0.21 shows each user attribute as a paragraph "key value" under a
# "User Attributes" title: {key: value as shown}.
ATTRS_JS = """
const title = [...document.querySelectorAll('p')]
  .find(e => e.textContent.trim() === 'User Attributes');
if (!title) return null;
const rows = {};
for (const p of title.parentElement.querySelectorAll('p')) {
  if (p === title) continue;
  const text = p.textContent;
  const space = text.indexOf(' ');
  rows[text.slice(0, space)] = text.slice(space + 1);
}
return Object.keys(rows).length ? rows : null;
"""
