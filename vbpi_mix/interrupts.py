"""A stop asked for by a signal (Ctrl-C, SIGTERM), and where code may be stopped by it.

The command line's handler records the request and, outside `interrupts_deferred()` blocks,
raises KeyboardInterrupt wherever Python happens to be. Raised at an arbitrary point it can
land in numba's finalizers (`__del__`, ctypes callbacks), which lose it, or crash the process
after a half-run clean-up, or in a numba dispatcher, which turns it into a SystemError (seen
with fits killed under load). The training loop therefore runs deferred: a request is only
recorded, and the loop stops at its next safe point (`raise_if_stop_requested`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_REQUESTED = threading.Event()
_deferring = [0]  # nesting depth of interrupts_deferred() blocks


def request_stop() -> None:
    _REQUESTED.set()


def stop_requested() -> bool:
    return _REQUESTED.is_set()


def clear_stop_request() -> None:
    _REQUESTED.clear()


def interrupts_are_deferred() -> bool:
    return _deferring[0] > 0


def raise_if_stop_requested() -> None:
    """A safe point: KeyboardInterrupt if a stop was requested."""
    if stop_requested():
        raise KeyboardInterrupt


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Within the block a signal only records the request; the block's code stops at its own
    safe points, and at the latest when the block ends."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1
    raise_if_stop_requested()
