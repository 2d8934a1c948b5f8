"""A fit's run folder: what it holds, how it is set up, resumed, evaluated and summarised.

RUN_DIR/config.json (every setting, the alignment's path), support.tsv (weight, Newick of
each support topology), checkpoint.pt, metrics.jsonl, summary.json, all written atomically,
and run.log (what was done when, appended).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from vbpi_mix.choices import LikelihoodDevice, ModelName
from vbpi_mix.errors import VbpiMixError
from vbpi_mix.inference.evaluation import marginal_likelihood
from vbpi_mix.inference.golden import kl_from_golden
from vbpi_mix.inference.objective import Target
from vbpi_mix.inference.trainer import (
    CHECKPOINT,
    METRICS,
    Trainer,
    TrainingConfig,
    read_metric_lines,
)
from vbpi_mix.io.newick import parse_newick
from vbpi_mix.io.text_files import read_text, write_text_atomic
from vbpi_mix.phylo.alignment import Alignment, load_alignment
from vbpi_mix.phylo.likelihood import TreeLikelihood
from vbpi_mix.phylo.models import OWN_PARAMETERS, SubstitutionModel, build_model
from vbpi_mix.trees.subsplits import build_subsplit_index
from vbpi_mix.trees.support import Support
from vbpi_mix.trees.topology import Topology, topology_from_parsed
from vbpi_mix.variational.branch_lengths import BranchFeatures
from vbpi_mix.variational.mixture import Mixture
from vbpi_mix.variational.sbn import SBNInit
from vbpi_mix.variational.substitution_posterior import SubstitutionPosterior

CONFIG, SUPPORT, SUMMARY, LOG_FILE = "config.json", "support.tsv", "summary.json", "run.log"
RESUME_FREE = ("iterations", "eval_every", "eval_particles")  # may change when resuming
GROWTH_FREE_MODEL = ("components", "max_branch_std")  # may change when a fit grows (create_run)
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelConfig:
    """Everything but training that defines a fit; the substitution model's fields are
    build_model's arguments (vbpi_mix.phylo.models), their defaults JC69 without Gamma.
    A free parameter of the model left None (kappa of K80 and HKY, frequencies of HKY and
    GTR, rates of GTR, alpha with Gamma categories) is inferred with the tree
    (`inferred_parameters`); fields the model does not have are kept as None.
    `max_branch_std` None is no cap: the command line and the bench pass
    vbpi_mix.variational.branch_lengths.default_max_std(components), 2 for a mixture."""

    alignment: str
    alignment_format: str | None = None  # None: detected from the content
    components: int = 1
    branch_features: BranchFeatures = "psp"
    init: SBNInit = "uniform"
    substitution_model: ModelName = "JC"
    branch_rate: float = 10.0
    max_branch_std: float | None = None
    kappa: float | None = None
    frequencies: list[float] | Literal["empirical"] | None = None
    rates: list[float] | None = None
    gamma_categories: int = 1
    alpha: float | None = None

    def __post_init__(self) -> None:
        # one spelling per model: a value the model has no use for is None (older run
        # folders wrote kappa 2 for every model)
        own = OWN_PARAMETERS.get(self.substitution_model, ())  # unknown: build_model says so
        for name in ("kappa", "rates", "frequencies"):
            if name not in own:
                object.__setattr__(self, name, None)

    def inferred_parameters(self) -> tuple[str, ...]:
        """The model's free parameters (OWN_PARAMETERS, then alpha with Gamma categories)
        that were not given, which the fit infers."""
        free = OWN_PARAMETERS.get(self.substitution_model, ())
        free += ("alpha",) if self.gamma_categories > 1 else ()
        return tuple(name for name in free if getattr(self, name) is None)

    def model_label(self) -> str:
        """The substitution model as phylogenetics programs write it: JC, HKY+F+G4, ...
        (+F: base frequencies counted from the alignment)."""
        counted = "+F" if self.frequencies == "empirical" else ""
        gamma = f"+G{self.gamma_categories}" if self.gamma_categories > 1 else ""
        return self.substitution_model + counted + gamma

    def substitution(self, alignment: Alignment) -> SubstitutionModel:
        """The fit's substitution model: the given values (empirical frequencies counted from
        `alignment`); inferred ones at their starting values, kappa 2, equal exchangeabilities,
        the alignment's frequencies and alpha 1."""
        inferred = self.inferred_parameters()
        frequencies = "empirical" if "frequencies" in inferred else self.frequencies
        return build_model(
            self.substitution_model, self.kappa, frequencies, self.rates,
            self.gamma_categories, 1.0 if "alpha" in inferred else self.alpha, alignment,
        )  # fmt: skip

    def parameter_posterior(self, model: SubstitutionModel) -> SubstitutionPosterior | None:
        """q(theta) over the inferred parameters, started at `model`'s values; None when
        every parameter is given."""
        inferred = self.inferred_parameters()
        if not inferred:
            return None
        return SubstitutionPosterior({name: getattr(model, name) for name in inferred})


@dataclass
class Run:
    """An assembled fit: data, support, variational family, target, trainer."""

    folder: Path
    model: ModelConfig
    training: TrainingConfig
    alignment: Alignment
    support: Support
    mixture: Mixture
    target: Target
    trainer: Trainer
    parameters: SubstitutionPosterior | None = None  # q(theta) of inferred substitution parameters


def _assemble(
    folder: Path,
    model: ModelConfig,
    training: TrainingConfig,
    support: Support,
    likelihood_device: LikelihoodDevice,
    alignment: Alignment | None = None,
    substitution: SubstitutionModel | None = None,
) -> Run:
    if alignment is None:
        alignment = load_alignment(model.alignment, model.alignment_format)
    if substitution is None:
        substitution = model.substitution(alignment)
    index = build_subsplit_index(support.parents(), np.array(support.counts), alignment.n_taxa)
    mixture = Mixture(
        index, model.components, model.branch_features, model.init, seed=training.seed,
        max_branch_std=model.max_branch_std,
    )  # fmt: skip
    likelihood = TreeLikelihood(alignment, substitution, likelihood_device)
    target = Target(likelihood, model.branch_rate)
    parameters = model.parameter_posterior(substitution)
    trainer = Trainer(mixture, target, training, folder, parameters)
    return Run(folder, model, training, alignment, support, mixture, target, trainer, parameters)


def create_run(
    folder: Path,
    model: ModelConfig,
    training: TrainingConfig,
    support: Support,
    likelihood_device: LikelihoodDevice = "cpu",
    alignment: Alignment | None = None,
    substitution: SubstitutionModel | None = None,
) -> Run:
    """A new run folder, or the same run resumed from its checkpoint when the settings agree.

    A folder holding a one-component fit grows into a mixture when `model` asks for more
    components with the same other settings (the estimator, its subset and the branch sigma cap
    may change) and more iterations: the fit is the lone phase of a split start, which splits
    at the fit's iterations (`training.split_at`, if given, must say the same), and the
    mixture trains for the rest.

    `likelihood_device` says where the pruning kernel runs (TreeLikelihood); it is not a
    setting of the fit and may change when resuming (results then differ in the last bits).
    `alignment`, `substitution`: the model's, when the caller has them already."""
    folder = Path(folder)
    existing = json.loads(read_text(folder / CONFIG)) if (folder / CONFIG).is_file() else None
    grows = existing is not None and existing["model"]["components"] == 1 < model.components
    if existing is not None:
        # through the dataclasses: settings added since the run was made take their defaults
        existing["model"] = _as_json(asdict(ModelConfig(**existing["model"])))
        saved = TrainingConfig(**existing["training"]).resolved(
            existing["model"]["components"], existing["training"]
        )
        existing["training"] = _as_json(asdict(saved))
        if grows:
            training = _grown_training(folder, existing["model"], saved, model, training)
            LOG.info(
                "growing the one-component fit of %d iterations into a mixture of %d",
                saved.iterations, model.components,
            )  # fmt: skip
    training = training.resolved(model.components, existing["training"] if existing else None)
    settings = _as_json({"model": asdict(model), "training": asdict(training)})
    if existing is not None and not grows:
        different = _differing(existing["model"], settings["model"]) + _differing(
            existing["training"], settings["training"], RESUME_FREE
        )
        if different:
            raise VbpiMixError(
                f"{folder} holds a fit with other settings ({', '.join(different)}); choose a "
                "new --out or delete it"
            )
    folder.mkdir(parents=True, exist_ok=True)
    LOG.info(
        "fit %s with %s, likelihood on %s", model.alignment, json.dumps(settings), likelihood_device
    )
    write_text_atomic(folder / CONFIG, json.dumps(settings, indent=2) + "\n")
    if not (folder / SUPPORT).is_file():
        lines = [
            f"{count:.10g}\t{t.newick()}"
            for t, count in zip(support.topologies, support.counts, strict=True)
        ]
        write_text_atomic(folder / SUPPORT, "\n".join(lines) + "\n")
    run = _assemble(
        folder, model, training, read_support(folder, support.taxa), likelihood_device,
        alignment, substitution,
    )  # fmt: skip
    run.trainer.resume()
    return run


def _grown_training(
    folder: Path,
    saved_model: dict,
    saved: TrainingConfig,
    model: ModelConfig,
    training: TrainingConfig,
) -> TrainingConfig:
    """`training` for the mixture `model` grown from the folder's one-component fit
    (`saved_model`, trained with `saved`): split at that fit's iterations, on its schedule; a
    one-line error naming what differs otherwise."""
    different = _differing(saved_model, _as_json(asdict(model)), GROWTH_FREE_MODEL)
    if different:
        raise VbpiMixError(
            f"{folder} holds a one-component fit with other model settings "
            f"({', '.join(different)}); a mixture grown from it keeps them"
        )
    if training.split_at is not None and training.split_at != saved.iterations:
        raise VbpiMixError(
            f"{folder} holds a one-component fit of {saved.iterations} iterations; a mixture "
            f"grown from it splits there: leave out --split-at (got {training.split_at})"
        )
    if training.iterations <= saved.iterations:
        raise VbpiMixError(
            f"{folder} holds a one-component fit of {saved.iterations} iterations; to grow "
            f"it into a mixture give --iterations above that (got {training.iterations})"
        )
    free = ("estimator", "subset", "split_at", "warmup", *RESUME_FREE)
    different = _differing(_as_json(asdict(saved)), _as_json(asdict(training)), free)
    if training.warmup not in (None, saved.warmup):
        different.append("warmup")
    if different:
        raise VbpiMixError(
            f"{folder} holds a one-component fit with other training settings "
            f"({', '.join(different)}); a mixture grown from it keeps them"
        )
    return dataclasses.replace(training, split_at=saved.iterations, warmup=saved.warmup)


def _golden_fields(
    run: Run, golden: dict[Topology, float] | None, stop: threading.Event | None
) -> dict:
    if golden is None:
        return {}
    kl = kl_from_golden(run.mixture.sbn, golden, stop)
    return {
        "kl_golden_floored": kl.kl_floored, "kl_golden_reachable": kl.kl_reachable,
        "golden_mass_unreachable": kl.unreachable_mass,
    }  # fmt: skip


def _as_json(settings: dict) -> dict:
    """The settings as config.json holds them (tuples become lists), for comparisons."""
    return json.loads(json.dumps(settings))


def _differing(saved: dict, given: dict, free: tuple[str, ...] = ()) -> list[str]:
    """The names of the settings, besides `free`, whose `given` value is not the `saved` one."""
    return sorted(name for name in given if name not in free and given[name] != saved.get(name))


def read_support(folder: Path, taxa: tuple[str, ...]) -> Support:
    """The support saved in a run folder."""
    topologies, counts = [], []
    for number, line in enumerate(read_text(folder / SUPPORT).splitlines(), start=1):
        count, newick = line.split("\t")
        topologies.append(
            topology_from_parsed(parse_newick(newick), taxa, f"{folder / SUPPORT}, line {number}")[
                0
            ]
        )
        counts.append(float(count))
    return Support(tuple(taxa), tuple(topologies), tuple(counts))


def open_run(folder: Path, likelihood_device: LikelihoodDevice = "cpu") -> Run:
    """A finished or interrupted run, loaded from its folder's checkpoint (the likelihood
    computed on `likelihood_device`)."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / CHECKPOINT).is_file():
        raise VbpiMixError(f"{folder}: not a vbpi-mix run folder (no {CONFIG} or {CHECKPOINT})")
    settings = json.loads(read_text(folder / CONFIG))
    model = ModelConfig(**settings["model"])
    training = TrainingConfig(**settings["training"]).resolved(
        model.components, settings["training"]
    )
    alignment = load_alignment(model.alignment, model.alignment_format)
    run = _assemble(
        folder, model, training, read_support(folder, alignment.taxa), likelihood_device,
        alignment,
    )  # fmt: skip
    run.trainer.resume()
    return run


def read_metrics(folder: Path) -> list[dict]:
    """Every line of RUN_DIR/metrics.jsonl: training lines carry `bound`, evaluation lines
    carry `mll`."""
    path = Path(folder) / METRICS
    return read_metric_lines(path) if path.is_file() else []


def last_training_record(folder: Path) -> dict:
    training = [line for line in read_metrics(folder) if "running_bound" in line]
    return training[-1] if training else {}


def summarize(
    run: Run,
    particles: int = 1000,
    repeats: int = 10,
    seed: int = 0,
    golden: dict[Topology, float] | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> dict:
    """MAP topology among the support (exact q), MLL, ELBO, the last bound and, given golden
    topology probabilities, KL(golden || q); written to summary.json. Setting `stop` ends it
    at its next safe point (vbpi_mix.errors.Stopped), with nothing written."""
    log_q = run.mixture.sbn.mixture_log_prob(run.support.parents(), stop=stop)
    best = int(np.argmax(log_q))
    generator = torch.Generator().manual_seed(seed)
    mll = marginal_likelihood(
        run.mixture, run.target, particles, repeats, generator, progress, stop, run.parameters
    )
    last = last_training_record(run.folder)
    posterior = run.parameters.summary(seed=seed) if run.parameters is not None else {}
    values = run.target.likelihood.model.parameter_values()
    for name, estimate in posterior.items():
        values[name] = estimate["mean"][0] if len(estimate["mean"]) == 1 else estimate["mean"]
    summary = {
        "substitution_model": run.model.model_label(),
        "substitution_parameters": values,
        "substitution_posterior": posterior,
        "iterations": run.trainer.iteration,
        "map_topology": run.support.topologies[best].newick(),
        "map_probability": float(np.exp(log_q[best])),
        "support_mass_under_q": float(np.exp(log_q).sum()),
        "mll_mean": mll.mean,
        "mll_std": mll.std,
        "mll_particles": particles,
        "mll_repeats": repeats,
        "mll_estimates": list(mll.estimates),
        "elbo": mll.elbo,
        "effective_sample_size": mll.effective_sample_size,
        "pareto_k": mll.pareto_k,
        "last_bound": last.get("running_bound"),
        **_golden_fields(run, golden, stop),
        "seconds": run.trainer.training_seconds,
        "startup_seconds": run.trainer.startup_seconds,
        "seconds_per_iteration": last.get("seconds_per_iteration"),
    }
    LOG.info("summary: %s", json.dumps(summary))
    write_text_atomic(run.folder / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary
