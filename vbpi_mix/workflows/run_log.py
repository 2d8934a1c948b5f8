"""A run folder's run.log: what was done to the run, when, appended by every workflow that
trains, evaluates or summarises it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vbpi_mix.inference.runs import LOG_FILE


@contextmanager
def run_log(folder: Path) -> Iterator[None]:
    """While the block runs, the package's log records (INFO and above) are appended to
    RUN_DIR/run.log; afterwards the package logger has its former handlers and level again,
    so that a program using the package keeps its own logging set-up."""
    package = logging.getLogger("vbpi_mix")
    handler = logging.FileHandler(Path(folder) / LOG_FILE, delay=True)  # opened on first line
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    level = package.level
    package.addHandler(handler)
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)
        handler.close()
        package.setLevel(level)
