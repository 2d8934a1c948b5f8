"""Fit a variational posterior to an alignment, and evaluate a fitted one: the workflow of
`vbpi-mix fit` and `vbpi-mix evaluate`, and of every setting of the bench."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vbpi_mix.choices import LikelihoodDevice
from vbpi_mix.inference.runs import ModelConfig, Run, create_run, open_run
from vbpi_mix.inference.runs import summarize as summarize_run
from vbpi_mix.inference.trainer import TrainingConfig
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.threads import ThreadTuner
from vbpi_mix.trees.support import Support, golden_probabilities
from vbpi_mix.trees.support import build_support as support_from_trees
from vbpi_mix.workflows.run_log import run_log
from vbpi_mix.workflows.trees import PathLike, support_files


@dataclass(frozen=True)
class Evaluation:
    """A run's summary (as RUN_DIR/summary.json: MLL, ELBO, ESS, k-hat, MAP topology, and
    KL(golden || q) when a golden run was given) and the figures drawn (q against the
    golden run)."""

    run: Run
    summary: dict
    figures: list[Path] = field(default_factory=list)


def fit(
    model: ModelConfig,
    training: TrainingConfig,
    support: Sequence[PathLike] | Support | None,
    out: PathLike,
    *,
    support_dir: PathLike | None = None,
    credible: float = 0.95,
    burnin: float = 0,
    likelihood_device: LikelihoodDevice = "cpu",
    threads: ThreadTuner | None = None,
    eval_particles: int = 1000,
    eval_repeats: int = 10,
    golden: Sequence[PathLike] | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> Evaluation:
    """Train (or resume) the fit of `model` in run folder `out`, then evaluate it; what is
    done goes to OUT/run.log.

    `support`: tree files (each file's `credible` set after `burnin`, merged) or a Support
    already built; without it, `support_dir`'s files, or else new UFBoot replicates made by
    IQ-TREE in OUT/ufboot (support_files). Settings are checked before any long work: the
    training combination and the substitution model's values first, then the support.
    Setting `stop` ends training after the iteration under way (its last checkpoint kept, so
    the same call resumes it) or the evaluation at its next chunk: vbpi_mix.errors.Stopped."""
    training.validate(model.components)
    alignment = load_alignment(model.alignment, model.alignment_format)
    substitution = model.substitution(alignment)  # refuses invalid values before the support
    if not isinstance(support, Support):
        files = support_files(support, support_dir, model.alignment, Path(out) / "ufboot",
                              model.alignment_format, progress)  # fmt: skip
        support = support_from_trees(files, alignment.taxa, credible, burnin, progress)
    with run_log(Path(out)):
        run = create_run(Path(out), model, training, support, likelihood_device, alignment,
                         substitution)  # fmt: skip
        run.trainer.run(progress, threads, stop)
        return _evaluate(run, eval_particles, eval_repeats, training.seed, golden, progress, stop)


def evaluate(
    run: Run | PathLike,
    particles: int = 1000,
    repeats: int = 10,
    seed: int = 0,
    golden: Sequence[PathLike] | None = None,
    progress: bool = False,
    likelihood_device: LikelihoodDevice = "cpu",
    stop: threading.Event | None = None,
) -> Evaluation:
    """The summary of a run (or run folder), written to its summary.json; with golden-run
    tree files, also KL(golden || q) and the figure of q against the golden run
    (RUN_DIR/posterior_vs_golden.png and .pdf). `stop` as in `fit`."""
    if not isinstance(run, Run):
        run = open_run(Path(run), likelihood_device)
    with run_log(run.folder):
        return _evaluate(run, particles, repeats, seed, golden, progress, stop)


def _evaluate(
    run: Run,
    particles: int,
    repeats: int,
    seed: int,
    golden: Sequence[PathLike] | None,
    progress: bool,
    stop: threading.Event | None,
) -> Evaluation:
    probabilities = golden_probabilities(golden, run.alignment.taxa) if golden else None
    summary = summarize_run(run, particles, repeats, seed, probabilities, progress, stop)
    figures = []
    if probabilities is not None:
        from vbpi_mix.export.figures import plot_posterior_against_golden  # matplotlib: slow

        figures = plot_posterior_against_golden(
            run.mixture, probabilities, run.folder, run.folder.name
        )
    return Evaluation(run, summary, figures)
