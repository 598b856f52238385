"""Thin wrapper: the command is tuner/bench/measure_buffers.py (run it with --help)."""

from tuner.bench.measure_buffers import main

raise SystemExit(main())
