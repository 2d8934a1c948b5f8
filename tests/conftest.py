"""Shared fixtures: the DS1-DS8 data (skipped cleanly when absent), a stand-in DS5 made from
the bundled example for the bench, and small helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Without an NVIDIA GPU the GPU kernel's tests run in numba's CUDA simulator; numba reads the
# switch when it is first imported, so it is set before anything imports it.
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest

from vbpi_mix.bench.datasets import find_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_FASTA = REPO_ROOT / "data" / "example.fasta"
EXAMPLE_TREE = REPO_ROOT / "data" / "example_true_tree.nwk"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = find_data_dir()
    if found is None:
        pytest.skip("DS1-DS8 data not found: set VBPI_MIX_DATA or place ../shared/datasets")
    return found


@pytest.fixture(scope="session")
def reference_dir(data_dir: Path) -> Path:
    folder = data_dir.parent / "reference"
    if not (folder / "iqtree_loglik.tsv").is_file():
        pytest.skip(f"reference values not found next to the data ({folder})")
    return folder


@pytest.fixture
def stand_in_data(tmp_path):
    """DS5 = the bundled example alignment with two of its support files (no golden run)."""
    folder = tmp_path / "data" / "DS5"
    (folder / "ufboot").mkdir(parents=True)
    shutil.copy(EXAMPLE_FASTA, folder / "DS5.fasta")
    for k in (1, 2):
        source = REPO_ROOT / "data" / "example_support" / f"rep_{k}.trees.gz"
        shutil.copy(source, folder / "ufboot" / f"rep_{k}.ufboot.gz")
    return tmp_path / "data"


@pytest.fixture
def restore_threads():
    """The thread counts of numba and torch put back after a test that changes them."""
    import numba
    import torch

    before = numba.get_num_threads(), torch.get_num_threads()
    yield
    numba.set_num_threads(before[0])
    torch.set_num_threads(before[1])
