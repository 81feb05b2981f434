"""Ctrl-C and SIGTERM for long commands: the first asks the work to stop at the next
safe point, a second Ctrl-C stops at once. Only the command line owns signals; the
library takes a stop callback."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading


@contextlib.contextmanager
def signals_stop(stop: threading.Event, say=None, what: str = "the current step"):
    """Inside the block, SIGTERM and a first Ctrl-C set `stop` (the work ends after `what`);
    a second Ctrl-C raises KeyboardInterrupt (stop at once). The previous handlers come
    back on exit. A SIGINT the shell ignores (a background job) stays ignored; outside the
    main thread, where no handler can be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    say = say or (lambda message: print(message, file=sys.stderr, flush=True))

    def interrupt(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        say(f"stopping after {what} (press Ctrl-C again to stop at once)")

    previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)
