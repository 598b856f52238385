"""Stand-in: mid-trial, its run gets SIGTERM (as from `kill` or a logout), then it waits to be
ended with the trial (the run's interruption path)."""

import os
import signal
import time

from objectives import phases

phases.phase(phases.repeat(1))
os.kill(os.getppid(), signal.SIGTERM)
time.sleep(60)
