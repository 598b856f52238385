"""Stand-in: a decode whose CUDA allocation fails: llama.cpp logs the error through its log
callback, then ggml aborts the process before any result can be written (seen on the H200 at
a 6 GB card, 13B-class model, n_gpu_layers 19)."""

import os
import sys

from objectives import phases
from objectives.llama_log import LogCapture

phases.phase(phases.repeat(1))
log = LogCapture(echo=sys.stderr)
log.feed("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 370.00 MiB on device 0: ")
log.feed("cudaMalloc failed: out of memory\n")
log.feed("ggml_gallocr_reserve_n: failed to allocate CUDA0 buffer\n")
print("ggml/src/ggml-cuda/ggml-cuda.cu:88: CUDA error", file=sys.stderr)
for i in range(40):  # the backtrace that follows: more than the stored tail keeps
    print(f"/lib/x86_64-linux-gnu/libfoo.so(+0x{i:x})[0x7f42b9c2a1ca]", file=sys.stderr)
sys.stderr.flush()
os.abort()
