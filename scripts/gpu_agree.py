"""Thin wrapper: the command is tuner/bench/gpu_agree.py (run it with --help)."""

from tuner.bench.gpu_agree import main

raise SystemExit(main())
