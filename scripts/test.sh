#!/usr/bin/env bash
# Set up, then run the linters, the type checker and the whole test suite (real llama.cpp runs
# on the demo model included). Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check tuner objectives tests scripts
ruff format --check tuner objectives tests scripts
mypy
python -m pytest "$@"
