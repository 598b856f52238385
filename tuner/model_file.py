"""The model file a study is about: which one, and its identity (sha256, cached)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tuner.paths import cache_dir
from tuner.yaml_io import write_atomic


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_cached(path: Path) -> str:
    """sha256 of a model file, remembered by (path, size, mtime): a 4 GB GGUF hashes once."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    store = cache_dir() / "sha256.json"
    try:
        known: dict[str, str] = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    digest = sha256_file(path)
    known[key] = digest
    try:
        write_atomic(store, json.dumps(known, indent=0))
    except OSError:
        pass  # a read-only cache only costs a re-hash next time
    return digest
