"""Stopping on SIGTERM/SIGINT the way schedulers expect: finish the step, save a checkpoint, exit 75."""

from __future__ import annotations

import os
import signal
import time

INTERRUPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later", what a preempted job should report
REPEAT_GRACE = 0.25  # seconds: torchrun forwards a group signal about 1 ms after it arrives


class StopSignal:
    """First SIGTERM/SIGINT: finish the step, save, exit. Again, later than REPEAT_GRACE seconds: the default action,
    at once. A repeat within the grace is the same stop delivered twice (a process group signal that torchrun also
    forwards to its ranks a moment later) and is ignored."""

    def __init__(self):
        self.requested = False
        self.previous = {}
        self.first: float | None = None

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        now = time.monotonic()
        if self.first is None:
            self.requested, self.first = True, now
            print(f"\n{signal.Signals(signum).name} received: saving a checkpoint after this step "
                  "(send it again to stop at once)", flush=True)
        elif now - self.first > REPEAT_GRACE:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
