"""Thin wrapper: the command is tuner/bench/anchors.py (run it with --help)."""

from tuner.bench.anchors import main

raise SystemExit(main())
