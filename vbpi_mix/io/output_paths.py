"""Output paths checked before any work starts, so that a long fit never ends in a traceback
because its folder cannot be written, and nothing is created when the check fails.

A path is usable when it (or, if it does not exist yet, its nearest existing ancestor) is a
folder in which a file can be created: the check creates and removes an empty temporary
file there, which also catches read-only file systems and pseudo-file systems (/proc, /sys)
where permission bits say yes and writes fail. Errors name the path and the fix.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from vbpi_mix.errors import VbpiMixError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path.cwd()


def _check_writable_folder(path: Path, folder: Path, option: str) -> None:
    """A file can be created in `folder` (an existing ancestor of, or, `path`)."""
    if not folder.is_dir():
        raise VbpiMixError(f"{path}: {folder} is a file, not a folder; choose another {option}")
    try:
        descriptor, probe = tempfile.mkstemp(dir=folder, prefix=".vbpi-mix-write-test-")
    except OSError as error:
        reason = "read-only" if error.errno == errno.EROFS else error.strerror.lower()
        raise VbpiMixError(
            f"{path}: cannot write in {folder} ({reason}); choose another {option}"
        ) from None
    os.close(descriptor)
    os.unlink(probe)


def check_output_folder(path: str | os.PathLike[str], option: str) -> None:
    """`path` is, or can be made, a folder this process writes in (`option` names the
    command-line option, for the fix)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VbpiMixError(f"{path}: is a file, not a folder; choose another {option}")
    _check_writable_folder(path, _nearest_existing(path), option)


def check_output_file(path: str | os.PathLike[str], option: str) -> None:
    """`path` names a file this process can create or replace: not a folder, in a folder
    that exists or can be made and is writable."""
    path = Path(path)
    if path.is_dir():
        raise VbpiMixError(f"{path}: is a folder; give a file name to {option}")
    _check_writable_folder(path, _nearest_existing(path.parent), option)
