"""The one exception type users see: a one-line reason, naming the file and the problem."""

from __future__ import annotations


class VbpiMixError(Exception):
    """Bad input or an invalid configuration; the CLI prints it as one line and exits non-zero."""
