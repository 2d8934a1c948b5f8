"""Read a whole text file, gzip or not, with one-line errors for the ways files go wrong."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.io.atomic_files import atomic_path

GZIP_MAGIC = b"\x1f\x8b"


def read_text(path: str | os.PathLike[str]) -> str:
    """Return the decoded text of `path`, transparently gunzipping.

    Raises VbpiMixError (naming the file) when it is missing, unreadable, empty,
    a corrupt gzip stream, or binary data rather than text.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise VbpiMixError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise VbpiMixError(f"{path}: is a directory, expected a file") from None
    except OSError as error:
        raise VbpiMixError(f"{path}: cannot read ({error.strerror})") from None
    if raw.startswith(GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            raise VbpiMixError(f"{path}: corrupt gzip data") from None
    if not raw.strip():
        raise VbpiMixError(f"{path}: file is empty")
    if b"\x00" in raw:
        raise VbpiMixError(f"{path}: binary data, not a text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return raw.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise VbpiMixError(f"{path}: not a text file") from None


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `path` whole or not at all (`atomic_path`)."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
