"""Stand-in trial child: writes a fixed successful result (tests the parent's plumbing).
With DM_TUNE_STAND_IN_SLEEP_S it measures that long first, and dies with its run as the real
child does (a worker killed mid-trial)."""

import json
import os
import sys
import time

from objectives import phases
from objectives.lifeline import die_with_parent

spec = json.load(open(sys.argv[1], encoding="utf-8"))
if spec.get("probe"):  # the real child answers the probe (tokenizer, build abilities)
    from objectives.child import main

    sys.exit(main(sys.argv[1:]))
sleep_s = float(os.environ.get("DM_TUNE_STAND_IN_SLEEP_S", "0"))
if sleep_s:
    die_with_parent()
    time.sleep(sleep_s)
metrics = {
    "gen_tok_s": 50.0 + spec.get("params", {}).get("n_threads", 1),
    "ttft_ms": 100.0,
    "prompt_tok_s": 500.0,
    "warm_ttft_ms": 20.0,
    "load_s": 0.1,
    "peak_rss_mb": 10.0,
    "n_prompt_tokens": 50,
    "n_generated": 8,
    "gen_tok_s_cv": 0.0,
    "ttft_ms_cv": 0.0,
    "samples": [{"gen_tok_s": 51.0, "ttft_ms": 100.0, "prompt_tok_s": 500.0, "warm_ttft_ms": 20.0}],
    "vram_mb": None,
    "vram_source": None,
    "extra": {},
}
phases.phase(phases.repeat(1))
result = {"ok": True, "metrics": metrics}
log = os.environ.get("DM_TUNE_STAND_IN_LLAMA_LOG")  # a recorded llama.cpp log, as the child's
if log:
    result["llama_log"] = open(log, encoding="utf-8").read()
json.dump(result, open(sys.argv[2], "w", encoding="utf-8"))
