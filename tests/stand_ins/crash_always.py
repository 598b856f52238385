"""Stand-in: crashes with SIGSEGV at its first decode, the probe included (a broken build)."""

import faulthandler

from objectives import phases

phases.phase(phases.SMOKE_DECODE)
faulthandler._sigsegv()
