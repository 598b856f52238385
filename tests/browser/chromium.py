"""A real browser for the pages dm-tune shows: headless Chromium driven by Selenium (the
`browser` fixture is in conftest.py; this module is what the tests import).

Chromium and its driver come from the system (Debian: `apt-get install chromium
chromium-driver`; `.ci/run` installs them), at /usr/bin/chromium and /usr/bin/chromedriver
unless DM_TUNE_CHROMIUM / DM_TUNE_CHROMEDRIVER say otherwise. Selenium is pointed at both
explicitly, so its Selenium Manager never runs and nothing is downloaded; as a guard,
SE_OFFLINE is set and SE_MANAGER_PATH points at a program that fails, so a call to it would be
an error, not a download.

Without a browser the tests skip with the reason, except under CI: `.ci/run` sets
DM_TUNE_CI=1, and then a missing browser (or selenium) is a failure.

Every request the page makes is read from Chrome's performance log (`Network.requestWillBeSent`),
so a test can assert that a page made no network request.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("DM_TUNE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DM_TUNE_CHROMEDRIVER", "/usr/bin/chromedriver")
IN_CI = os.environ.get("DM_TUNE_CI", "") not in ("", "0")
# Where `DM_TUNE_SCREENSHOTS=1` writes the README's pictures (never in a normal run).
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
WAIT_S = 120.0  # generous: the machine running the tests may be busy


def unavailable(reason: str) -> None:
    """Skip locally; fail under CI, where the browser tests must run."""
    if IN_CI:
        pytest.fail(f"DM_TUNE_CI is set and {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Browser:
    """A WebDriver and the requests its pages made."""

    driver: Any  # selenium.webdriver.Chrome (selenium is imported only when present)

    def requests(self) -> list[str]:
        """URLs requested since the last call (the performance log is drained on read)."""
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def until(self, script: str, what: str) -> Any:
        """Poll a script in the page until it returns something truthy (generous deadline)."""
        deadline = time.monotonic() + WAIT_S
        while True:
            value = self.driver.execute_script(script)
            if value:
                return value
            assert time.monotonic() < deadline, f"the page never showed {what}"
            time.sleep(0.5)

    def screenshot(self, name: str) -> Path | None:
        """Save the page as docs/images/<name>.png when DM_TUNE_SCREENSHOTS=1, else nothing."""
        if os.environ.get("DM_TUNE_SCREENSHOTS", "") in ("", "0"):
            return None
        IMAGES.mkdir(parents=True, exist_ok=True)
        path = IMAGES / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), f"could not write {path}"
        return path


def browser_options(profile: Path) -> Any:
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        # Chromium's own background traffic (updates, sync, safe browsing): none of it.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-proxy-server",  # the pages are local: nothing goes through a proxy
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return options
