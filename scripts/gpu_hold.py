"""Thin wrapper: the command is tuner/bench/gpu_hold.py (run it with --help)."""

from tuner.bench.gpu_hold import main

raise SystemExit(main())
