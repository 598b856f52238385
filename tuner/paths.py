"""Where dm-tune finds its default configs and keeps its caches."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def config_dir() -> Path:
    """configs/ of the source checkout (the project is installed editable from it)."""
    return ROOT / "configs"


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
