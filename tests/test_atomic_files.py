"""Outputs are written whole or not at all (vbpi_mix.io.atomic_files)."""

from __future__ import annotations

import os
import stat

import pytest

from vbpi_mix.io.atomic_files import atomic_path
from vbpi_mix.io.text_files import write_text_atomic


def test_an_interrupted_write_leaves_the_old_file_and_nothing_else(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temporary:
        temporary.write_text("half of the ne")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["summary.json"]


def test_a_finished_write_replaces_the_file_with_permissions_from_the_umask(tmp_path):
    """Written through a temporary file in a new folder; the result readable by group and
    others under umask 022, as a plain write would be (a mkstemp file would be 0600)."""
    target = tmp_path / "new" / "trees.nex"
    previous = os.umask(0o022)
    try:
        write_text_atomic(target, "#NEXUS\n")
    finally:
        os.umask(previous)
    assert target.read_text() == "#NEXUS\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [path.name for path in target.parent.iterdir()] == ["trees.nex"]
