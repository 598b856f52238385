"""Thin wrapper: the command is tuner/bench/replay_vram.py (run it with --help)."""

from tuner.bench.replay_vram import main

raise SystemExit(main())
