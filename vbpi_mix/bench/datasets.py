"""Find the DS1-DS8 benchmark data: `--data DIR`, else $VBPI_MIX_DATA, else ../shared/datasets.

The data are read in place and never copied into the project.
"""

from __future__ import annotations

import os
from pathlib import Path

from vbpi_mix.errors import VbpiMixError

DATASET_NAMES = tuple(f"DS{i}" for i in range(1, 9))
ENVIRONMENT_VARIABLE = "VBPI_MIX_DATA"
_CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


def find_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The first existing candidate folder holding DS1-DS8, or None when there is none."""
    if explicit and not Path(explicit).is_dir():
        raise VbpiMixError(f"{explicit}: no such data folder")
    candidates = [explicit, os.environ.get(ENVIRONMENT_VARIABLE)]
    candidates += [
        _CHECKOUT_ROOT.parent / "shared" / "datasets",
        Path.cwd().parent / "shared" / "datasets",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def alignment_path(data_dir: Path, name: str) -> Path:
    """Path of `DSn/DSn.fasta`, with a one-line error when it is absent."""
    if name not in DATASET_NAMES:
        raise VbpiMixError(f"unknown data set {name!r}; choose from {', '.join(DATASET_NAMES)}")
    path = data_dir / name / f"{name}.fasta"
    if not path.is_file():
        raise VbpiMixError(f"{path}: data set file missing")
    return path


def _replicates(folder: Path, suffix: str) -> list[Path]:
    paths = sorted(folder.glob(f"rep_*{suffix}"), key=lambda p: int(p.name[4:].split(".")[0]))
    if not paths:
        raise VbpiMixError(f"{folder}: no rep_*{suffix} files")
    return paths


def ufboot_paths(data_dir: Path, name: str) -> list[Path]:
    """The UFBoot replicate files `DSn/ufboot/rep_k.ufboot.gz`, k = 1..10, in order."""
    return _replicates(data_dir / name / "ufboot", ".ufboot.gz")


def golden_paths(data_dir: Path, name: str) -> list[Path]:
    """The MrBayes golden-run files `DSn/golden/rep_k.trprobs.gz` (DS1-DS4), in order."""
    return _replicates(data_dir / name / "golden", ".trprobs.gz")
