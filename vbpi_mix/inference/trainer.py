"""Training loop: Adam with separate learning rates for topology and branch parameters, step
decay, likelihood annealing, a progress bar, JSON-lines metrics and atomic checkpoints from
which a killed run resumes to the same result as an uninterrupted one (same seed)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pickle
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from vbpi_mix.choices import EstimatorName, GradientName
from vbpi_mix.errors import VbpiMixError, stop_if_asked
from vbpi_mix.inference.estimators import (
    estimate,
    k_sample_bound,
    make_estimator,
    make_gradient,
)
from vbpi_mix.inference.evaluation import marginal_likelihood
from vbpi_mix.inference.objective import Target, draw_log_weights
from vbpi_mix.inference.schedules import inverse_temperature, learning_rate_factor
from vbpi_mix.io.atomic_files import atomic_path
from vbpi_mix.io.text_files import read_text, write_text_atomic
from vbpi_mix.threads import ThreadTuner
from vbpi_mix.variational.mixture import Mixture
from vbpi_mix.variational.substitution_posterior import SubstitutionPosterior

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
LOG = logging.getLogger(__name__)
# The default split start of a mixture: its first component trains alone for this share of the
# iterations. What a mixture gains over VBPI comes from a short mixture phase after a nearly
# trained lone one: at equal seconds a late split beats one at half the seconds on short
# budgets and ties it on long ones (benchmarks/results/mixtures_equal_time/).
SPLIT_SHARE = 0.95


@dataclass(frozen=True)
class TrainingConfig:
    """Defaults follow the VBPI protocol except the budget (see published.md). `warmup`, the
    annealing iterations, defaults to a quarter of `iterations` (the published protocol
    anneals over 100,000 of 400,000), so that every fit ends on the posterior itself.
    `split_at` > 0 (with A > 1): the first component trains alone, as plain VBPI, for that
    many iterations while the others are kept its copies; then every component starts from
    it (Adam's moments included) and the mixture trains with `estimator`. It defaults to
    SPLIT_SHARE of the iterations for a mixture; 0 starts the components apart, from their own
    seeded perturbations, as VBPI-Mixtures does. Started apart, A untrained components each
    see 1/A (S2A, S2S) of the draws and the mixture trails VBPI at equal seconds; a split
    mixture begins where VBPI is, and what it gains over VBPI comes from a short mixture phase
    after a nearly trained lone one (benchmarks/results/mixtures_equal_time/)."""

    iterations: int = 10_000
    particles: int = 10
    estimator: EstimatorName = "a2a"
    subset: int | None = None
    objective: GradientName = "vimco"
    topology_lr: float = 0.001
    branch_lr: float = 0.001
    lr_decay: float = 0.75
    decay_every: int = 20_000
    anneal_start: float = 0.001
    warmup: int | None = None
    split_at: int | None = None
    checkpoint_every: int = 1000
    log_every: int = 10
    eval_every: int = 0
    eval_particles: int = 1000
    seed: int = 0

    def resolved(self, n_components: int = 1, resumed: dict | None = None) -> TrainingConfig:
        """This configuration with `warmup` and `split_at` numbers: as given, else the resumed
        run's settings `resumed` (a larger --iterations continues the run on its schedule; a
        run saved before split starts existed started apart), else the defaults: a warm-up of
        a quarter of the iterations, and a mixture split at SPLIT_SHARE of them."""
        warmup, split_at = self.warmup, self.split_at
        if warmup is None:
            warmup = resumed["warmup"] if resumed else self.iterations // 4
        if split_at is None:
            if resumed:
                split_at = resumed.get("split_at") or 0
            else:
                split_at = math.floor(SPLIT_SHARE * self.iterations) if n_components > 1 else 0
        return dataclasses.replace(self, warmup=warmup, split_at=split_at)

    def validate(self, n_components: int) -> None:
        """One-line errors that name the fix for invalid combinations."""
        if self.iterations < 1:
            raise VbpiMixError(f"--iterations must be at least 1; got {self.iterations}")
        if self.warmup is not None and self.warmup > self.iterations:
            beta = inverse_temperature(self.iterations, self.anneal_start, self.warmup)
            raise VbpiMixError(
                f"--warmup {self.warmup} is longer than --iterations {self.iterations}: "
                f"training would end at inverse temperature {beta:.3g}, on a tempered "
                f"posterior; give --warmup at most {self.iterations} (default: a quarter of "
                "the iterations) or more --iterations"
            )
        if self.warmup is not None and self.warmup < 0:
            raise VbpiMixError(f"--warmup must be 0 (no annealing) or more; got {self.warmup}")
        if self.particles < 1:
            raise VbpiMixError(f"--particles must be at least 1; got {self.particles}")
        if self.split_at is not None and not 0 <= self.split_at < self.iterations:
            raise VbpiMixError(
                f"--split-at must be 0 (components start apart) or below --iterations "
                f"({self.iterations}); got {self.split_at}"
            )
        if self.split_at and n_components == 1:
            raise VbpiMixError("--split-at applies to mixtures: add --components A, A above 1")
        if self.eval_every < 0:
            raise VbpiMixError(f"--eval-every must be 0 (never) or more; got {self.eval_every}")
        make_estimator(self.estimator, n_components, self.subset)
        make_gradient(self.objective, self.particles)


def read_metric_lines(path: Path) -> list[dict]:
    """The records of a metrics file, one JSON object a line. A last line cut short (a
    process killed while writing it) is dropped; any other line that is not JSON is an error
    naming the file. An empty file (a run stopped before its first line) has none."""
    if Path(path).stat().st_size == 0:
        return []
    lines = [line for line in read_text(path).splitlines() if line]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise VbpiMixError(f"{path}: line {number} is not a JSON record") from None
    return records


class Trainer:
    """Fits a Mixture to a Target; with a run folder, checkpoints and resumes. With
    `parameters`, the q(theta) of inferred substitution parameters shared by the components,
    trains it too (its own Adam at the branch-length learning rate and schedule, the same in
    a split start's lone phase and after)."""

    def __init__(
        self,
        mixture: Mixture,
        target: Target,
        config: TrainingConfig,
        run_dir: Path | None,
        parameters: SubstitutionPosterior | None = None,
    ) -> None:
        config = config.resolved(mixture.n_components)
        config.validate(mixture.n_components)
        self.mixture, self.target, self.config = mixture, target, config
        self.parameters = parameters
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.estimator = make_estimator(config.estimator, mixture.n_components, config.subset)
        self.gradient = make_gradient(config.objective, config.particles)
        self.optimizer = self._adam(mixture)
        # A split start trains a one-component copy of the first component (plain VBPI, its
        # own parameters and Adam, at A = 1's cost) and keeps every component its copy.
        self.splits = config.split_at > 0 and mixture.n_components > 1
        self.lone = mixture.component_copy(0) if self.splits else None
        self.lone_optimizer = self._adam(self.lone) if self.lone is not None else None
        self.lone_estimator = make_estimator("a2a", 1, None)
        if self.lone is not None:
            mixture.tie_to(self.lone)
        self.scheduler = self._schedule(self.optimizer)
        self.parameter_optimizer = (
            torch.optim.Adam(parameters.parameters(), lr=config.branch_lr, fused=True)
            if parameters is not None
            else None
        )
        self.parameter_scheduler = (
            self._schedule(self.parameter_optimizer) if parameters is not None else None
        )
        self.lone_scheduler = self._schedule(self.lone_optimizer) if self.lone is not None else None
        self.generator = torch.Generator().manual_seed(config.seed)
        self.iteration = 0
        self.training_seconds = 0.0  # wall clock spent in `step`, over every start and resume
        self.startup_seconds = 0.0  # first step of each start or resume: compiling kernels

    def _adam(self, mixture: Mixture) -> torch.optim.Adam:
        return torch.optim.Adam(
            [
                {"params": mixture.sbn.parameters(), "lr": self.config.topology_lr},
                {"params": mixture.branches.parameters(), "lr": self.config.branch_lr},
            ],
            fused=True,  # one compiled pass over every parameter, not a loop over tensors
        )

    def _schedule(
        self, optimizer: torch.optim.Adam, last_epoch: int = -1
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """The learning rates by iteration: x lr_decay every decay_every."""
        config = self.config
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda t: learning_rate_factor(t, config.lr_decay, config.decay_every),
            last_epoch=last_epoch,
        )

    def _leading(self) -> bool:
        """Whether the next iteration belongs to the lone phase of a split start."""
        return self.splits and self.iteration < self.config.split_at

    def _before_split(self) -> bool:
        """Whether the lone phase's state is still to be handed to the mixture (the split
        happens at the start of iteration split_at + 1)."""
        return self.splits and self.iteration <= self.config.split_at

    def _tie_mixture(self) -> None:
        """Before the split, make the mixture's components copies of the lone component.
        Done when the mixture is read (a checkpoint, an evaluation, the split), not after
        every lone step, where copying every parameter cost about 0.2 ms an iteration."""
        if self._before_split():
            self.mixture.tie_to(self.lone)

    def checkpoint_state(self) -> dict:
        self._tie_mixture()
        state = {
            "iteration": self.iteration,
            "training_seconds": self.training_seconds,
            "startup_seconds": self.startup_seconds,
            "mixture": self.mixture.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "config": asdict(self.config),
        }
        if self.parameters is not None:
            state["parameters"] = self.parameters.state_dict()
            state["parameter_optimizer"] = self.parameter_optimizer.state_dict()
            state["parameter_scheduler"] = self.parameter_scheduler.state_dict()
        if self._before_split():
            state["lone"] = self.lone.state_dict()
            state["lone_optimizer"] = self.lone_optimizer.state_dict()
            state["lone_scheduler"] = self.lone_scheduler.state_dict()
        return state

    def resume(self) -> bool:
        """Load the run folder's checkpoint if there is one; True when it was loaded."""
        if self.run_dir is None or not (self.run_dir / CHECKPOINT).is_file():
            return False
        path = self.run_dir / CHECKPOINT
        try:
            state = self._grown(torch.load(path, weights_only=False))
            if "mixture" in state:
                self.mixture.load_state_dict(state["mixture"])
            if self.parameters is not None:
                self.parameters.load_state_dict(state["parameters"])
                self.parameter_optimizer.load_state_dict(state["parameter_optimizer"])
                self.parameter_scheduler.load_state_dict(state["parameter_scheduler"])
        except (RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
            raise VbpiMixError(
                f"{path}: not a checkpoint of this vbpi-mix version or fit ({first_line}); "
                "start a new --out"
            ) from None
        if "mixture" in state:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.iteration = state["iteration"]
        self.training_seconds = state.get("training_seconds", 0.0)  # older checkpoints lack it
        self.startup_seconds = state.get("startup_seconds", 0.0)
        if self._before_split():
            self._resume_lone(state)
        self._truncate_metrics()
        LOG.info("resumed at iteration %d", self.iteration)
        return True

    def _grown(self, state: dict) -> dict:
        """`state`, read as the checkpoint of this split mixture's lone phase when it is a
        one-component fit's that the mixture grows from (vbpi_mix.inference.runs.create_run):
        its component, Adam state and schedule become the lone phase's. Any other checkpoint
        is returned unchanged."""
        single = state["mixture"]["sbn.root_logits"].shape[0] == 1
        if not (self.splits and single and state["iteration"] <= self.config.split_at):
            return state
        state = dict(state)
        state["lone"], state["lone_optimizer"], state["lone_scheduler"] = (
            state.pop("mixture"), state.pop("optimizer"), state.pop("scheduler")
        )  # fmt: skip
        return state

    @torch.no_grad()
    def _resume_lone(self, state: dict) -> None:
        """The lone phase's component and Adam state from a checkpoint; from one written when
        that phase trained the first component inside the mixture (its optimizer then holds
        every component's moments), from that component's."""
        if "lone" in state:
            self.lone.load_state_dict(state["lone"])
            self.lone_optimizer.load_state_dict(state["lone_optimizer"])
            self.lone_scheduler.load_state_dict(state["lone_scheduler"])
            return
        pairs = zip(self.lone.parameters(), self.mixture.parameters(), strict=True)
        for parameter, source in pairs:
            parameter.copy_(source[:1])
            moments = self.optimizer.state.pop(source, {})
            self.lone_optimizer.state[parameter] = {
                key: value if key == "step" else value[:1].clone() for key, value in moments.items()
            }
        self.lone_scheduler.load_state_dict(state["scheduler"])
        for lone_group, group in zip(
            self.lone_optimizer.param_groups, self.optimizer.param_groups, strict=True
        ):
            lone_group["lr"] = group["lr"]

    def _truncate_metrics(self) -> None:
        """Drop metric lines written after the checkpoint we resume from."""
        path = self.run_dir / METRICS
        if path.is_file():
            kept = [line for line in read_metric_lines(path) if line["iteration"] <= self.iteration]
            write_text_atomic(path, "".join(json.dumps(line) + "\n" for line in kept))

    def save(self) -> None:
        if self.run_dir is not None:
            with atomic_path(self.run_dir / CHECKPOINT) as temporary:
                torch.save(self.checkpoint_state(), temporary)

    def step(self) -> float:
        """One iteration; returns the bound (beta = 1) of the particles drawn."""
        config = self.config
        leading = self._leading()
        if self.splits and self.iteration == config.split_at:
            self._tie_mixture()
            self._inherit_moments()
        estimator = self.lone_estimator if leading else self.estimator
        mixture = self.lone if leading else self.mixture
        optimizer = self.lone_optimizer if leading else self.optimizer
        beta = inverse_temperature(self.iteration, config.anneal_start, config.warmup)
        family, drawn = estimator.family(mixture, estimator.draw(self.generator))
        record = draw_log_weights(
            family, self.target, drawn, config.particles, beta, self.generator, self.parameters
        )
        result = estimate(estimator, record, self.gradient)
        with torch.no_grad():
            bound = float(k_sample_bound(estimator.log_weights(record.untempered())).mean())
        if not math.isfinite(bound) or not torch.isfinite(result.surrogate):
            where = f"; last good checkpoint: {self.run_dir / CHECKPOINT}" if self.run_dir else ""
            raise VbpiMixError(
                f"the bound became {bound} at iteration {self.iteration + 1}{where} "
                "(try a smaller learning rate)"
            )
        optimizer.zero_grad()
        if self.parameter_optimizer is not None:
            self.parameter_optimizer.zero_grad()
        (-result.surrogate).backward()
        optimizer.step()
        if self.parameter_optimizer is not None:
            self.parameter_optimizer.step()
            self.parameter_scheduler.step()
        (self.lone_scheduler if leading else self.scheduler).step()
        self.iteration += 1
        return bound

    @torch.no_grad()
    def _inherit_moments(self) -> None:
        """At the split: every component's Adam state (step count and moments) becomes the
        lone component's, so that each copy continues exactly as it would have; the learning
        rates continue the schedule from the split."""
        for parameter, source in zip(
            self.mixture.parameters(), self.lone.parameters(), strict=True
        ):
            moments = self.lone_optimizer.state.get(source, {})
            self.optimizer.state[parameter] = {
                key: value.clone() if key == "step" else value.expand_as(parameter).clone()
                for key, value in moments.items()
            }
        self.scheduler = self._schedule(self.optimizer, last_epoch=self.iteration - 1)

    def evaluation_record(self) -> dict:
        """The marginal likelihood of the current mixture from `eval_particles` particles (one
        set), with ELBO, ESS and Pareto k-hat; its own seeded stream, so evaluating never
        changes the training draws."""
        config = self.config
        self._tie_mixture()
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + self.iteration)
        result = marginal_likelihood(
            self.mixture, self.target, config.eval_particles, 1, generator,
            parameters=self.parameters,
        )  # fmt: skip
        return {
            "iteration": self.iteration, "seconds": self.training_seconds,
            "mll": result.mean, "elbo": result.elbo,
            "effective_sample_size": result.effective_sample_size,
            "pareto_k": result.pareto_k,
        }  # fmt: skip

    def run(
        self,
        progress: bool = True,
        threads: ThreadTuner | None = None,
        stop: threading.Event | None = None,
    ) -> list[dict]:
        """Train up to `config.iterations`, checkpointing, evaluating every `eval_every`
        iterations; returns the metric records (training lines and evaluation lines).
        Setting `stop` ends it after the iteration under way (vbpi_mix.errors.Stopped).
        With `threads`, the thread count follows the tuner (speed only, same results).
        The first iteration of each start or resume, which compiles the kernels (or loads
        them from numba's cache), counts as start-up, not as training seconds."""
        config, records = self.config, []
        metrics = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            metrics = open(self.run_dir / METRICS, "a")

        def record(line: dict) -> None:
            records.append(line)
            if metrics is not None:
                metrics.write(json.dumps(line) + "\n")
                metrics.flush()

        first, run_seconds, starting = self.iteration, 0.0, True
        LOG.info("training from iteration %d to %d", first, config.iterations)
        bar = tqdm(total=config.iterations, initial=self.iteration, desc="training",
                   unit="it", disable=not progress or None)  # fmt: skip
        running = None
        try:
            while self.iteration < config.iterations:
                start = time.perf_counter()
                bound = self.step()
                elapsed = time.perf_counter() - start
                if threads is not None:
                    threads.after_iteration(elapsed)
                if starting:
                    self.startup_seconds += elapsed
                    starting = False
                else:
                    self.training_seconds += elapsed
                    run_seconds += elapsed
                running = bound if running is None else 0.98 * running + 0.02 * bound
                bar.update(1)
                if self.iteration % config.log_every == 0 or self.iteration == config.iterations:
                    record({
                        "iteration": self.iteration, "bound": bound, "running_bound": running,
                        "seconds": self.training_seconds,
                        "seconds_per_iteration": run_seconds
                        / max(1, self.iteration - first - 1),
                        "topology_lr": config.topology_lr * learning_rate_factor(
                            self.iteration, config.lr_decay, config.decay_every
                        ),
                    })  # fmt: skip
                    bar.set_postfix(bound=f"{running:.2f}")
                if config.eval_every and self.iteration % config.eval_every == 0:
                    evaluation = self.evaluation_record()
                    record(evaluation)
                    LOG.info("iteration %d: running bound %.2f, MLL %.2f (%d particles), "
                             "ELBO %.2f, Pareto k %.2f", self.iteration, running,
                             evaluation["mll"], config.eval_particles, evaluation["elbo"],
                             evaluation["pareto_k"])  # fmt: skip
                if self.iteration % config.checkpoint_every == 0:
                    self.save()
                stop_if_asked(stop)
            self.save()
            LOG.info("trained to iteration %d in %.1f s (and %.1f s starting up)",
                     self.iteration, self.training_seconds, self.startup_seconds)  # fmt: skip
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
        return records
