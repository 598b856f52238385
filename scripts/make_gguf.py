"""Thin wrapper: the command is tuner/bench/make_gguf.py (run it with --help)."""

from tuner.bench.make_gguf import main

raise SystemExit(main())
