"""`vbpi-mix bench`: fits and evaluations (the fit workflow) over data sets x estimators x A
x S x seeds.

Every setting is a run folder OUT/DSn/<estimator>-A<A>[-S<S>]-seed<k>; it holds the fit
(resumable) and, once training and evaluation are both done, result.json. Only settings with
a result.json are reported as finished, so an interrupted bench resumes where it stopped and
never reports a half-finished run.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from vbpi_mix.bench.datasets import alignment_path, golden_paths, ufboot_paths
from vbpi_mix.bench.protocols import Protocol
from vbpi_mix.choices import LikelihoodDevice
from vbpi_mix.errors import VbpiMixError
from vbpi_mix.inference.estimators import ESTIMATORS, make_estimator
from vbpi_mix.inference.runs import ModelConfig
from vbpi_mix.io.text_files import read_text, write_text_atomic
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.threads import ThreadTuner, usable_cores
from vbpi_mix.trees.support import Support, build_support
from vbpi_mix.variational.branch_lengths import default_max_std
from vbpi_mix.workflows.fitting import fit

RESULT = "result.json"
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    """One cell of the grid."""

    dataset: str
    estimator: str
    components: int
    subset: int | None
    seed: int

    @property
    def name(self) -> str:
        subset = f"-S{self.subset}" if self.subset is not None else ""
        return f"{self.estimator}-A{self.components}{subset}-seed{self.seed}"


def grid(
    datasets: list[str], estimators: list[str], components: list[int], subsets: list[int],
    seeds: int,
) -> list[Setting]:  # fmt: skip
    """Every combination the estimators accept (their constructors hold the rules: A2A takes
    no S; S2A and S2S need S < A, since with S = A they are A2A)."""
    settings = []
    for dataset in datasets:
        for a in components:
            for estimator in estimators:
                choices = subsets if ESTIMATORS[estimator].takes_subset else [None]
                settings += [
                    Setting(dataset, estimator, a, s, seed)
                    for s in choices
                    if _accepted(estimator, a, s)
                    for seed in range(seeds)
                ]
    return settings


def _accepted(estimator: str, components: int, subset: int | None) -> bool:
    try:
        make_estimator(estimator, components, subset)
    except VbpiMixError:
        return False
    return True


def finished_result(folder: Path, protocol: Protocol) -> dict | None:
    """The result of a finished run under this protocol, else None."""
    path = folder / RESULT
    if not path.is_file():
        return None
    result = json.loads(read_text(path))
    return result if result["protocol"] == asdict(protocol) else None


@functools.lru_cache(maxsize=1)  # the grid runs a data set's settings one after another
def _dataset_inputs(data_dir: Path, dataset: str) -> tuple[Path, Support]:
    """The alignment and the UFBoot support of a data set, built once for all its settings."""
    alignment = alignment_path(data_dir, dataset)
    taxa = load_alignment(alignment).taxa
    return alignment, build_support(ufboot_paths(data_dir, dataset), taxa, progress=False)


def run_setting(
    setting: Setting,
    protocol: Protocol,
    data_dir: Path,
    out: Path,
    progress: bool,
    likelihood_device: LikelihoodDevice = "cpu",
    tune_threads: bool = False,
    stop: threading.Event | None = None,
) -> None:
    """Fit (or resume) one setting, evaluate it and write its result.json atomically; a
    setting already finished under this protocol is left as it is. `tune_threads`: the
    training threads follow a ThreadTuner over every usable core. `stop` as in
    vbpi_mix.workflows.fitting.fit."""
    folder = out / setting.dataset / setting.name
    if finished_result(folder, protocol) is not None:
        return
    alignment, support = _dataset_inputs(data_dir, setting.dataset)
    golden = None
    if (data_dir / setting.dataset / "golden").is_dir():  # DS1-DS4
        golden = golden_paths(data_dir, setting.dataset)
    evaluation = fit(
        ModelConfig(
            alignment=str(alignment.resolve()), components=setting.components,
            max_branch_std=default_max_std(setting.components),
        ),
        protocol.training(setting.estimator, setting.subset, setting.seed, setting.components),
        support, folder,
        likelihood_device=likelihood_device,
        threads=ThreadTuner(usable_cores()) if tune_threads else None,
        eval_particles=protocol.eval_particles, eval_repeats=protocol.eval_repeats,
        golden=golden, progress=progress, stop=stop,
    )  # fmt: skip
    result = {
        "setting": asdict(setting), "protocol": asdict(protocol), "run_dir": str(folder),
        "summary": evaluation.summary,
    }  # fmt: skip
    write_text_atomic(folder / RESULT, json.dumps(result, indent=2) + "\n")
    LOG.info("%s %s finished", setting.dataset, setting.name)


def collect_finished(
    settings: list[Setting], protocol: Protocol, out: Path
) -> tuple[list[dict], list[str]]:
    """Results of the finished settings, and the names of the others."""
    results, unfinished = [], []
    for setting in settings:
        result = finished_result(out / setting.dataset / setting.name, protocol)
        if result is None:
            unfinished.append(f"{setting.dataset}/{setting.name}")
        else:
            results.append(result)
    return results, unfinished


def check_bench(settings: list[Setting], data_dir: Path, out: Path, resume: bool) -> None:
    """Fail early, not hours in: missing data, or runs in `out` without --resume."""
    existing = [p for p in out.glob("DS*/*") if p.is_dir()] if out.is_dir() else []
    if existing and not resume:
        raise VbpiMixError(
            f"{out} already holds bench runs; add --resume to continue them or choose a new --out"
        )
    for setting in settings:
        alignment_path(data_dir, setting.dataset)
        ufboot_paths(data_dir, setting.dataset)


def run_bench(
    settings: list[Setting],
    protocol: Protocol,
    data_dir: Path,
    out: Path,
    progress: bool = True,
    likelihood_device: LikelihoodDevice = "cpu",
    tune_threads: bool = False,
    stop: threading.Event | None = None,
) -> None:
    """Run every setting in order; finished ones are skipped (see `collect_finished`)."""
    for setting in tqdm(settings, desc="bench", unit="run", disable=not progress or None):
        run_setting(
            setting, protocol, data_dir, out, progress, likelihood_device, tune_threads, stop
        )
