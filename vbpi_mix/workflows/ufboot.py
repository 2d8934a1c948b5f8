"""Make SBN support files for a user's alignment with IQ-TREE's ultrafast bootstrap.

One IQ-TREE run per replicate (JC, `-B BOOTSTRAP --boot-trees`, its own seed), as the DS1-DS8
support was made; each replicate's trees are kept as `rep_k.ufboot.gz`, written atomically.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.io.atomic_files import atomic_path

MIN_BOOTSTRAP = 1000  # IQ-TREE's lower limit for -B
EXECUTABLES = ("iqtree2", "iqtree")


def find_iqtree() -> str:
    """Path of the IQ-TREE 2 executable, or a one-line error saying how to install it."""
    for name in EXECUTABLES:
        path = shutil.which(name)
        if path:
            return path
    raise VbpiMixError(
        "IQ-TREE (iqtree2) not found on PATH; install it with `apt-get install iqtree` "
        "(Debian/Ubuntu) or pass existing support trees with --support"
    )


def run_ufboot(
    records: Sequence[tuple[str, str]],
    out_dir: str | os.PathLike[str],
    replicates: int = 10,
    bootstrap: int = 10000,
    seed: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Write `out_dir/rep_k.ufboot.gz`, k = 1..replicates, from validated (name, sequence)
    records; replicate k uses seed `seed + k - 1`. Returns the paths in order."""
    if replicates < 1:
        raise VbpiMixError(f"--replicates must be at least 1; got {replicates}")
    if bootstrap < MIN_BOOTSTRAP:
        raise VbpiMixError(
            f"IQ-TREE needs --bootstrap of at least {MIN_BOOTSTRAP}; got {bootstrap}"
        )
    executable = find_iqtree()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory(prefix="vbpi-mix-ufboot-") as work:
        fasta = Path(work) / "alignment.fasta"
        fasta.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in records))
        for k in tqdm(
            range(1, replicates + 1), desc="UFBoot replicates", disable=not progress or None
        ):
            prefix = Path(work) / f"rep_{k}"
            command = [
                executable, "-s", str(fasta), "-m", "JC", "-B", str(bootstrap), "--boot-trees",
                "-T", "1", "--seed", str(seed + k - 1), "--prefix", str(prefix), "--quiet", "-redo",
            ]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True)
            trees = prefix.with_suffix(".ufboot")
            if result.returncode != 0 or not trees.is_file():
                reason = (result.stderr or result.stdout).strip().splitlines()
                raise VbpiMixError(
                    f"IQ-TREE failed on replicate {k}: {reason[-1] if reason else 'no output'}"
                )
            target = out / f"rep_{k}.ufboot.gz"
            with (
                atomic_path(target) as staged,
                open(trees, "rb") as source,
                gzip.open(staged, "wb") as sink,
            ):
                shutil.copyfileobj(source, sink)
            paths.append(target)
    return paths
