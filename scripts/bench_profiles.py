"""Thin wrapper: the command is tuner/bench/bench_profiles.py (run it with --help)."""

from tuner.bench.bench_profiles import main

raise SystemExit(main())
