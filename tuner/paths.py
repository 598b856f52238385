"""Where dm-tune finds its default configs and keeps its caches."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGED_CONFIGS = "_configs"  # in the wheel, under tuner/: copied from configs/ (setup.py)
DEFAULT_PROFILE_DIR = Path("configs") / "profiles"  # where export writes, under the working dir


def config_dir() -> Path:
    """configs/ of the source checkout (a checkout or an editable install reads it in place),
    else the copy a wheel carries inside the package (a non-editable install)."""
    checkout = ROOT / "configs"
    if (ROOT / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    return Path(str(files("tuner") / PACKAGED_CONFIGS))  # wheels install unzipped: a folder


def default_config(name: str) -> Path:
    return config_dir() / name


def cache_dir() -> Path:
    """dm-tune's own cache (demo model, file hashes); DM_TUNE_CACHE overrides."""
    env = os.environ.get("DM_TUNE_CACHE")
    if env:
        return Path(env).expanduser()
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "dm-tune"
