"""Interrupted runs end cleanly: no temporary output left, no worker left, no traceback.

``SIGTERM`` (a batch system's ``scancel``, ``kill``) would end the process at once,
leaving the temporary outputs and, when only the main process got it, the worker
processes; here it raises ``SystemExit`` instead, so that every ``finally`` of the run
removes and stops them. ``Ctrl-C`` (``KeyboardInterrupt``) ends with one line on stderr.
The exit statuses are the shell's: 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator


@contextlib.contextmanager
def interrupts_end_the_run(program: str) -> Iterator[None]:
    """Within the block, ``SIGTERM`` raises ``SystemExit(143)`` and a
    ``KeyboardInterrupt`` becomes ``program: interrupted`` and ``SystemExit(130)``."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    except KeyboardInterrupt:
        sys.stderr.write(f"{program}: interrupted\n")
        raise SystemExit(128 + signal.SIGINT) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminated(signum: int, frame) -> None:
    raise SystemExit(128 + signum)


def ignore_interrupts() -> None:
    """For worker processes: ``Ctrl-C`` reaches the whole process group, and the main
    process alone stops the run (and its workers); ``SIGTERM`` (the main process stops
    them with it) ends a worker at once, not through the handler it was forked with."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
