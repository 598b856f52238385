"""Stand-in: the real child for the probe, then hangs forever in a trial, with a grandchild."""

import json
import subprocess
import sys
import time

from objectives import phases

spec = json.load(open(sys.argv[1], encoding="utf-8"))
if spec.get("probe"):
    from objectives.child import main

    sys.exit(main(sys.argv[1:]))
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[2] + ".grandchild", "w").write(str(grandchild.pid))
phases.phase(phases.repeat(1))
time.sleep(600)
