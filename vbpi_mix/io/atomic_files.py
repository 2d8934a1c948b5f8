"""Write files whole or not at all: the contract every output of the package keeps."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path` (same folder, so the rename is atomic) for the block
    to write; renamed over `path` when the block ends, deleted when it raises (an error,
    Ctrl-C, or SIGTERM, which the command line turns into Ctrl-C). Readers never see a
    half-written file, and an interrupted write leaves nothing behind. The temporary file is
    created with the usual permissions (umask), which the final file keeps."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
