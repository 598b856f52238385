"""Stand-in: a load that fails with llama.cpp's CUDA out-of-memory text."""

import json
import sys

print(
    "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4096.00 MiB on device 0: "
    "cudaMalloc failed: out of memory",
    file=sys.stderr,
)
json.dump(
    {"ok": False, "kind": "oom", "error": "Failed to load model from file"},
    open(sys.argv[2], "w", encoding="utf-8"),
)
sys.exit(1)
