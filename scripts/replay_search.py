"""Thin wrapper: the command is tuner/bench/replay_search.py (run it with --help)."""

from tuner.bench.replay_search import main

raise SystemExit(main())
