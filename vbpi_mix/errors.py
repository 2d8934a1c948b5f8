"""The exceptions users see: VbpiMixError, a one-line reason naming the file and the
problem, and Stopped, work ended early at its caller's request."""

from __future__ import annotations

import threading


class VbpiMixError(Exception):
    """Bad input or an invalid configuration; the CLI prints it as one line and exits non-zero."""


class Stopped(Exception):
    """Long work ended early at a safe point because its caller's stop event was set (the
    command line sets it on Ctrl-C or SIGTERM); what it had written stays whole."""


def stop_if_asked(stop: threading.Event | None) -> None:
    """A safe point of long work (after a training iteration, or a chunk of particles or
    trees): raise Stopped when the caller's stop event is set.

    Library code never handles signals itself: a KeyboardInterrupt raised by a handler at an
    arbitrary point can land in numba's finalizers, which lose it, or in a numba dispatcher,
    which turns it into a SystemError; a stop event is only read between units of work."""
    if stop is not None and stop.is_set():
        raise Stopped
