"""Stand-in: crashes with SIGSEGV at its first decode, the probe included (a broken build)."""

import faulthandler
import sys

print("dm-tune-phase: smoke decode", file=sys.stderr, flush=True)
faulthandler._sigsegv()
