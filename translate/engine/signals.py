"""Stopping on SIGTERM/SIGINT the way schedulers expect: finish the step, save a checkpoint, exit 75."""

from __future__ import annotations

import signal

INTERRUPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later", what a preempted job should report


class StopSignal:
    """First SIGTERM/SIGINT: finish the step, save, exit. Second: the default action, at once."""

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler)
        print(f"\n{signal.Signals(signum).name} received: saving a checkpoint after this step "
              "(send it again to stop at once)", flush=True)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
