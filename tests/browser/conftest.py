"""The `browser` fixture: headless Chromium with a fresh profile (see chromium.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium import CHROMEDRIVER, CHROMIUM, Browser, browser_options, unavailable


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    """Headless Chromium with a fresh profile in tmp_path, offline as far as Selenium goes."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ModuleNotFoundError:
        unavailable('selenium is not installed (pip install -e ".[dev]")')
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            unavailable(f"no {path} (apt-get install {package})")
    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setenv("SE_MANAGER_PATH", shutil.which("false") or "/bin/false")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    service = Service(
        executable_path=CHROMEDRIVER,
        log_output=subprocess.DEVNULL,
    )
    driver = webdriver.Chrome(service=service, options=browser_options(profile))
    try:
        browser = Browser(driver)
        driver.get("about:blank")
        browser.requests()  # the start page's own loads (chrome://) are not the test's
        yield browser
    finally:
        driver.quit()
