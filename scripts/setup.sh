#!/usr/bin/env bash
# Create .venv and install dm-tune with its dependencies (idempotent; safe to re-run).
# llama-cpp-python is compiled from source. A "native" build can crash on machines whose CPU
# advertises instructions the OS/VM does not allow (AMX, some AVX-512), so unless you set
# CMAKE_ARGS yourself we build a portable x86-64 (AVX2/FMA/F16C) variant, plus CUDA when an
# NVIDIA toolkit (nvcc) is found.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "dm-tune needs Python >= 3.10")'
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c 'import llama_cpp' 2>/dev/null; then
  if [ -z "${CMAKE_ARGS:-}" ]; then
    case "$(uname -m)" in
      x86_64|amd64) CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" ;;
      *) CMAKE_ARGS="-DGGML_NATIVE=OFF" ;;
    esac
    if command -v nvcc >/dev/null 2>&1 && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      CMAKE_ARGS="$CMAKE_ARGS -DGGML_CUDA=on"
    fi
  fi
  echo "setup: building llama-cpp-python (CMAKE_ARGS=$CMAKE_ARGS); the first build takes ~5 minutes"
  CMAKE_ARGS="$CMAKE_ARGS" python -m pip install -q "llama-cpp-python>=0.3,<0.4"
fi
python -m pip install -q -e ".[dev,dashboard,postgres]"
echo "setup: ready ($(python -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__, "gpu offload:", llama_cpp.llama_supports_gpu_offload())'))"
