#!/usr/bin/env bash
# On the lent GPU machine, from the repo root: build llama-cpp-python with CUDA into /tmp/site
# (as .devcarry/build_cuda.sh does) AND llama.cpp's own fitter `llama-fit-params` from the same
# vendored tree and the same CMake build, so the CUDA kernels are compiled once (~4.5 min
# instead of two ~4.5 min builds). Skips what is already built (a warm machine).
#   bash scripts/gpu_build.sh  ->  /tmp/site (Python), /tmp/lcp-build/bin/llama-fit-params
set -euo pipefail
SRC=/tmp/lcp-src BUILD=/tmp/lcp-build SITE=/tmp/site
carry="$(cd "$(dirname "$0")/.." && pwd)/.devcarry"
export PYTHONPATH=$SITE
ok() { python3 -c 'import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)' 2>/dev/null; }
t0=$(date +%s)
if ! ok; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$carry"/wheels/*.whl
  rm -rf "$SRC"; mkdir -p "$SRC"
  tar xzf "$carry"/llama_cpp_python-*-slim.tar.gz -C "$SRC" --strip-components=1
  cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)"
  # build-dir keeps the CMake tree (scikit-build-core), so the fitter can be built from it below
  CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${cap:-90} -DLLAVA_BUILD=off" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target "$SITE" \
      --config-settings=build-dir="$BUILD" "$SRC"
  echo "gpu_build: llama-cpp-python built in $(( $(date +%s) - t0 )) s"
fi
if [ ! -x "$BUILD/bin/llama-fit-params" ]; then
  t1=$(date +%s)
  cmake -S "$SRC" -B "$BUILD" -DLLAMA_BUILD_TOOLS=ON > /tmp/lcp-tools-configure.log 2>&1
  cmake --build "$BUILD" --target llama-fit-params -j "$(nproc)" > /tmp/lcp-fit-build.log 2>&1 \
    || { tail -20 /tmp/lcp-fit-build.log; exit 1; }
  echo "gpu_build: llama-fit-params built in $(( $(date +%s) - t1 )) s"
fi
python3 -c 'import llama_cpp, optuna; print("gpu_build: llama_cpp", llama_cpp.__version__, "gpu_offload", llama_cpp.llama_supports_gpu_offload(), "optuna", optuna.__version__)'
