"""Thin wrapper: the command is tuner/bench/record_grid.py (run it with --help)."""

from tuner.bench.record_grid import main

raise SystemExit(main())
