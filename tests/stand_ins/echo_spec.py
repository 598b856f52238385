"""Stand-in trial child: its result is the spec it read (what the child sees, for the tests of
the launchers and the specs). Both ways of starting: `SPEC.json RESULT.json`, or `--wait`
(pre-warmed: ready, the paths on stdin, loaded, then `go`), as objectives.child does."""

import json
import sys
from pathlib import Path

from objectives import phases

if sys.argv[1:] == ["--wait"]:
    phases.phase(phases.READY)
    line = sys.stdin.readline().strip()
    if not line:
        sys.exit(0)
    paths = json.loads(line)
    spec_path, result_path = Path(paths["spec"]), Path(paths["result"])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    phases.phase(phases.LOADED)
    sys.stdin.readline()  # "go"
    prewarmed = True
else:
    spec_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    prewarmed = False
phases.phase(phases.DONE)
result_path.write_text(json.dumps({"ok": True, "spec": spec, "prewarmed": prewarmed}), "utf-8")
