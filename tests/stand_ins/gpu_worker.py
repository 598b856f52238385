"""Stands for one `dm-tune run` worker of `--gpus` (no GPU here): prints what it was given,
then does what argv[1] says for its GPU ("0=ok,1=fail"; a bare word: every GPU): `ok`, `fail`
(an error line, exit 2), or `wait` (until SIGTERM or SIGINT, then exit 128 + the signal, as a
run does). With argv[2] (a folder) and argv[3] (a count), a waiting worker leaves a file there
once its handlers are in place, and a failing one first waits for that many files: a SIGTERM
must find the others ready, however slowly a loaded machine starts them."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil


def main() -> int:
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    modes = dict(p.split("=") for p in sys.argv[1].split(",") if "=" in p)
    what = modes.get(gpu, sys.argv[1])
    affinity = psutil.Process().cpu_affinity() if hasattr(psutil.Process, "cpu_affinity") else []
    print(
        f"visible={os.environ.get('CUDA_VISIBLE_DEVICES')} "
        f"order={os.environ.get('CUDA_DEVICE_ORDER')} "
        f"cores={os.environ.get('DM_TUNE_WORKER_CORES')} "
        f"affinity={','.join(str(c) for c in affinity)}",
        flush=True,
    )
    ready = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    if what == "fail":
        while ready is not None and len(list(ready.iterdir())) < int(sys.argv[3]):
            time.sleep(0.05)
        print("error: no such model", file=sys.stderr, flush=True)
        return 2
    if what == "wait":
        got: list[int] = []
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, lambda sig, _f: got.append(sig))
        print("waiting", flush=True)
        if ready is not None:
            (ready / gpu).write_text("ready")
        while not got:
            time.sleep(0.05)
        print(f"stopped by {signal.Signals(got[0]).name}", flush=True)
        return 128 + got[0]
    return 0


if __name__ == "__main__":
    sys.exit(main())
