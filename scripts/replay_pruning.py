"""What another first-token pruning factor would have saved and lost on recorded studies
(tuner/bench/replay_pruning.py)."""

from tuner.bench.replay_pruning import main

raise SystemExit(main())
