"""`dm-tune run --gpus 0,1` on a machine without NVIDIA GPUs: issue 14's fallback measurement
(two workers on separate cores, docs/scaling.md). The real spawner, core split, measurement
locks and `dm-tune run` workers; only NVML's list of GPUs is given (0 and 1), since `dm-tune run
--gpus` refuses to start where NVML lists none. Each worker's CUDA_VISIBLE_DEVICES then names a
GPU that is not there, and its trials run on the CPU, on its share of the cores.

    python3 scripts/cpu_workers.py --model M.gguf --storage URL --study NAME --trials 30 ...
    (the options of `dm-tune run`, without --gpus)
"""

from __future__ import annotations

import sys

from tuner.study import run_on_gpus

if __name__ == "__main__":
    sys.exit(run_on_gpus("0,1", sys.argv[1:], present=[0, 1]))
