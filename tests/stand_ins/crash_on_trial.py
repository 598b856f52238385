"""Stand-in: the real child for the probe, a native-style crash (SIGSEGV) at the first decode."""

import faulthandler
import json
import sys

from objectives import phases

spec = json.load(open(sys.argv[1], encoding="utf-8"))
if spec.get("probe"):
    from objectives.child import main

    sys.exit(main(sys.argv[1:]))
phases.phase(phases.LOAD)
phases.phase(phases.repeat(1))
faulthandler._sigsegv()  # a real segmentation fault, as from a bad llama.cpp build
