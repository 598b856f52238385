"""Load a GGUF with given settings in a child process and print llama.cpp's buffer sizes.

Why: calibrating and checking tuner/vram/_predict.py needs llama.cpp's own numbers for many
settings; a child per load keeps each measurement clean (no memory shared between loads).
Only the model load and the graph reservation run, no generation, so it is cheap.

    python scripts/measure_buffers.py MODEL.gguf '{"n_ctx": 2048, "n_gpu_layers": -1}'
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuner.paths import ROOT

_CHILD = """
import json, sys
from objectives.llama_log import LogCapture
from objectives.llama_params import to_llama_kwargs
cap = LogCapture()
cap.install()
import llama_cpp
kw = to_llama_kwargs(json.loads(sys.argv[2]))
kw.setdefault("n_threads", 1)
m = llama_cpp.Llama(model_path=sys.argv[1], verbose=True, **kw)
del m
sys.stdout.write(cap.text())
"""


def measure_log(model: Path | str, params: dict[str, Any], timeout_s: float = 120) -> str:
    """llama.cpp's log text for one load of `model` with dm-tune `params`."""
    root = ROOT  # the checkout: the child imports objectives from there
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(model), json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=root,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def measure(model: Path | str, params: dict[str, Any]) -> dict[str, dict[str, float]]:
    from objectives.llama_buffers import parse_buffers

    return parse_buffers(measure_log(model, params))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(measure(args[0], json.loads(args[1])), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
