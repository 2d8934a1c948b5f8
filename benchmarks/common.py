"""What the benchmark scripts share: the data folder, threads, and the table header line."""

from __future__ import annotations

import argparse
import platform
from datetime import date
from pathlib import Path

import torch

from vbpi_mix.bench.datasets import find_data_dir


def benchmark_arguments(description: str) -> argparse.ArgumentParser:
    """A parser with --data, --threads and --datasets (DS1 and DS8 by default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", help="folder holding DS1..DS8")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--datasets", nargs="+", default=["DS1", "DS8"])
    return parser


def start(args: argparse.Namespace, title: str) -> Path:
    """Find the data (or exit with the fix), set the threads, print the run's header line."""
    data_dir = find_data_dir(args.data)
    if data_dir is None:
        raise SystemExit("DS1-DS8 data not found: pass --data DIR or set VBPI_MIX_DATA")
    torch.set_num_threads(args.threads)
    print(
        f"# {title}, {date.today()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} threads"
    )
    print()
    return data_dir
