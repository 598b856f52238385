"""Thin wrapper: the command is tuner/bench/cpu_tier.py (run it with --help)."""

from tuner.bench.cpu_tier import main

raise SystemExit(main())
