"""Stand-in: a native-style crash (SIGSEGV) in the trials with n_batch 32; the canned result
otherwise (one bad setting in a study that goes on)."""

import faulthandler
import json
import runpy
import sys
from pathlib import Path

from objectives import phases

spec = json.load(open(sys.argv[1], encoding="utf-8"))
if spec.get("params", {}).get("n_batch") == 32:
    phases.phase(phases.LOAD)
    faulthandler._sigsegv()
runpy.run_path(str(Path(__file__).with_name("canned.py")), run_name="__main__")
