"""Interrupted runs end cleanly: no temporary output left, no worker left, no traceback.

``SIGTERM`` (a batch system's ``scancel``, ``kill``) would end the process at once,
leaving the temporary outputs and, when only the main process got it, the worker
processes; here it raises ``SystemExit`` instead, so that every ``finally`` of the run
removes and stops them. ``Ctrl-C`` (``KeyboardInterrupt``) ends with one line on stderr.
The exit statuses are the shell's: 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from typing import Iterator


@contextlib.contextmanager
def interrupts_end_the_run(program: str) -> Iterator[None]:
    """Within the block, ``SIGTERM`` raises ``SystemExit(143)`` and a
    ``KeyboardInterrupt`` becomes ``program: interrupted`` and ``SystemExit(130)``."""
    previous = None
    _RECEIVED[0] = None
    hook = sys.unraisablehook
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated)
        sys.unraisablehook = functools.partial(_unraisable, hook)
    try:
        yield
    except KeyboardInterrupt:
        sys.stderr.write(f"{program}: interrupted\n")
        raise SystemExit(128 + signal.SIGINT) from None
    finally:
        _RECEIVED[0] = None  # a later run (in this process) starts afresh
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
            sys.unraisablehook = hook


def _unraisable(hook, unraisable) -> None:
    """Python's report of an exception it could not raise, until a ``SIGTERM`` ends the
    run: its ``SystemExit`` may arrive in a garbage-collector callback (it is raised
    again by :func:`stop_if_terminated`), and Dask's callback then fails its checks."""
    if _RECEIVED[0] is None:
        hook(unraisable)


#: The signal that ended the run, once one has (``None`` before).
_RECEIVED: list = [None]


def _terminated(signum: int, frame) -> None:
    _RECEIVED[0] = signum
    raise SystemExit(128 + signum)


def stop_if_terminated() -> None:
    """Raise the ``SystemExit`` of a ``SIGTERM`` received earlier, for code that may have
    swallowed it (a garbage-collector callback of Dask's, an event loop): called where a
    run waits for its workers and before its outputs are renamed into place."""
    if _RECEIVED[0] is not None:
        raise SystemExit(128 + _RECEIVED[0])


def ignore_interrupts() -> None:
    """For worker processes: ``Ctrl-C`` reaches the whole process group, and the main
    process alone stops the run (and its workers); ``SIGTERM`` (the main process stops
    them with it) ends a worker at once, not through the handler it was forked with."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """``Ctrl-C`` ignored while the block starts worker processes (a local Dask cluster):
    they inherit it, so that the main process alone handles it and stops them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
