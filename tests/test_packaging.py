"""A non-editable install (`pip install .`) carries the default configs and finds them.

A real wheel is built (setuptools from PyPI, or pip's cache, in pip's isolated build
environment) from a copy of the source tree, so the checkout gets no build/ folder, and it is
installed without its dependencies into a fresh virtual environment that sees neither the
system's packages nor this repository: what tuner.paths finds there is what a user gets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = ("workload.yaml", "search_space.yaml", "baselines.yaml")
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
PACKAGES = ("tuner", "objectives", "configs")
# tuner.paths imports nothing outside the standard library: no dependency is needed for it.
SHOW = """
import json, tuner, tuner.paths
names = ("workload.yaml", "search_space.yaml", "baselines.yaml")
print(json.dumps({
    "tuner": tuner.__file__,
    "configs": {n: str(tuner.paths.default_config(n)) for n in names},
}))
"""


def _run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd, env=env)
    assert res.returncode == 0, f"{argv[:4]} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "profiles")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in SOURCES:
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)])
    (wheel,) = out.glob("dm_tune-*.whl")
    return wheel


@pytest.mark.slow
def test_the_wheel_carries_the_default_configs_and_an_install_finds_them(
    tmp_path: Path,
) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        for name in DEFAULTS:
            packaged = zf.read(f"tuner/_configs/{name}")
            assert packaged == (ROOT / "configs" / name).read_bytes(), name
        assert not [n for n in zf.namelist() if n.startswith("configs/")]  # one place only

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    _run([*pip, "install", "--no-deps", "--no-index", "-q", str(wheel)])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    shown = json.loads(_run([str(python), "-c", SHOW], cwd=elsewhere, env=env))
    package = Path(shown["tuner"]).resolve().parent
    assert package.is_relative_to(venv.resolve())  # the installed wheel, not this checkout
    for name in DEFAULTS:
        path = Path(shown["configs"][name]).resolve()
        assert path == package / "_configs" / name
        assert path.read_bytes() == (ROOT / "configs" / name).read_bytes()


def test_a_checkout_reads_its_own_configs() -> None:
    """The repository (and an editable install of it) keeps using the top-level configs/."""
    from tuner.paths import default_config

    for name in DEFAULTS:
        assert default_config(name) == ROOT / "configs" / name
        assert default_config(name).is_file()
