"""Command-line options that the `vbpi-mix` commands and the benchmark scripts share (argparse
only: nothing heavy is imported, so that `--help` starts at once)."""

from __future__ import annotations

import argparse

from vbpi_mix.choices import LIKELIHOOD_DEVICES


def add_likelihood_device(parser: argparse.ArgumentParser) -> None:
    """--likelihood-device cpu|cuda (TreeLikelihood's device); the benchmarks use it too."""
    parser.add_argument(
        "--likelihood-device",
        choices=LIKELIHOOD_DEVICES,
        default="cpu",
        help="where the Felsenstein pruning runs: cpu (default) or cuda, an NVIDIA GPU through "
        "numba.cuda (everything else stays on the CPU; pays off for large batches of trees, "
        "such as A2A with many components, since a call has a fixed cost whatever its size)",
    )
