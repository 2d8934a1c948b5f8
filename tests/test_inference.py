"""Trainer (checkpoints, exact resume, NaN stop), schedules, and `vbpi-mix fit` end to end on
the bundled example, whose true tree is known."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import EXAMPLE_FASTA, EXAMPLE_TREE, REPO_ROOT
from tests.oracles import branch_log_prob
from vbpi_mix.errors import Stopped, VbpiMixError
from vbpi_mix.export.posterior import SAMPLE_CHUNK, draw_trees
from vbpi_mix.inference.estimators import k_sample_bound
from vbpi_mix.inference.evaluation import (
    ParticleScores,
    marginal_likelihood,
    score_particles,
)
from vbpi_mix.inference.objective import draw_log_weights
from vbpi_mix.inference.runs import ModelConfig, create_run, open_run, read_metrics
from vbpi_mix.inference.schedules import inverse_temperature, learning_rate_factor
from vbpi_mix.inference.trainer import CHECKPOINT, METRICS, TrainingConfig
from vbpi_mix.io.tree_files import read_tree_file
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.trees.conversions import topology_from_dendropy
from vbpi_mix.trees.support import build_support

SUPPORT_DIR = REPO_ROOT / "data" / "example_support"


def example_support():
    taxa = load_alignment(EXAMPLE_FASTA).taxa
    return build_support(sorted(SUPPORT_DIR.iterdir()), taxa, progress=False)


def small_run(folder: Path, iterations: int, components: int = 2, **substitution):
    model = ModelConfig(alignment=str(EXAMPLE_FASTA), components=components, **substitution)
    training = TrainingConfig(
        iterations=iterations,
        particles=3,
        estimator="s2a" if components > 1 else "a2a",
        subset=1 if components > 1 else None,
        topology_lr=0.01,
        branch_lr=0.01,
        warmup=1,
        checkpoint_every=4,
        log_every=1,
        eval_every=3,
        eval_particles=20,
        seed=3,
    )
    return create_run(folder, model, training, example_support())


def test_schedules_closed_forms():
    assert inverse_temperature(0) == pytest.approx(0.001)
    assert inverse_temperature(50_000) == pytest.approx(0.501)
    assert inverse_temperature(200_000) == 1.0
    assert inverse_temperature(3, warmup=0) == 1.0
    assert learning_rate_factor(19_999) == 1.0
    assert learning_rate_factor(40_000) == pytest.approx(0.75**2)


@pytest.mark.parametrize(
    "substitution",
    [{}, {"substitution_model": "HKY", "gamma_categories": 4}],
    ids=["JC", "HKY+G4-inferred"],
)
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, substitution):
    """Also with inferred substitution parameters: their q and its Adam state resume."""
    uninterrupted = small_run(tmp_path / "a", 12, **substitution)
    uninterrupted.trainer.run(progress=False)

    killed = small_run(tmp_path / "b", 12, **substitution)
    original_step = killed.trainer.step

    def step_then_die():
        if killed.trainer.iteration == 10:  # after the checkpoint at 8
            raise KeyboardInterrupt
        return original_step()

    monkeypatch.setattr(killed.trainer, "step", step_then_die)
    with pytest.raises(KeyboardInterrupt):
        killed.trainer.run(progress=False)
    assert torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)["iteration"] == 8

    resumed = small_run(tmp_path / "b", 12, **substitution)  # fresh, as a new process's
    assert resumed.trainer.iteration == 8
    resumed.trainer.run(progress=False)
    for name, value in uninterrupted.mixture.state_dict().items():
        assert torch.equal(value, resumed.mixture.state_dict()[name]), name
    if substitution:
        for name, value in uninterrupted.parameters.state_dict().items():
            assert torch.equal(value, resumed.parameters.state_dict()[name]), name
    training_lines, evaluations = {}, {}
    for folder in ("a", "b"):
        lines = read_metrics(tmp_path / folder)
        training_lines[folder] = [line for line in lines if "bound" in line]
        evaluations[folder] = [line for line in lines if "mll" in line]
    assert [line["iteration"] for line in training_lines["b"]] == list(range(1, 13))
    assert [line["bound"] for line in training_lines["b"]] == [
        line["bound"] for line in training_lines["a"]
    ]
    # evaluations draw from their own stream: same values, and training is unperturbed
    assert [line["iteration"] for line in evaluations["b"]] == [3, 6, 9, 12]
    assert [line["mll"] for line in evaluations["b"]] == [line["mll"] for line in evaluations["a"]]
    # the first iteration of each start or resume (compiling the kernels) is start-up time
    seconds = [line["seconds"] for line in training_lines["b"]]
    assert seconds[0] == 0.0 and seconds[8] == seconds[7]  # iterations 1 and 9: a start, a resume
    steps = [later - earlier for earlier, later in zip(seconds, seconds[1:], strict=False)]
    assert all(step > 0 for number, step in enumerate(steps) if number != 7)
    assert resumed.trainer.startup_seconds > 0


def test_a_kill_while_writing_keeps_the_last_whole_checkpoint_and_resumes(tmp_path, monkeypatch):
    """Killed inside the checkpoint write at iteration 8, part of the file written: the
    checkpoint of iteration 4 stays whole and no temporary file remains; a metrics line torn
    by a hard kill is dropped; the resumed run reaches the uninterrupted run's parameters."""
    uninterrupted = small_run(tmp_path / "a", 12)
    uninterrupted.trainer.run(progress=False)

    folder, real_save = tmp_path / "b", torch.save
    killed = small_run(folder, 12)

    def save_then_die(state, path):
        if state["iteration"] == 8:
            Path(path).write_bytes(b"the first bytes of a checkpoint")
            raise KeyboardInterrupt
        real_save(state, path)

    monkeypatch.setattr(torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        killed.trainer.run(progress=False)
    monkeypatch.undo()
    assert [path.name for path in folder.iterdir() if path.name.endswith(".tmp")] == []
    assert torch.load(folder / CHECKPOINT, weights_only=False)["iteration"] == 4
    with open(folder / METRICS, "a") as metrics:
        metrics.write('{"iteration": 9, "bou')  # what a kill in the middle of a line leaves
    resumed = small_run(folder, 12)
    assert resumed.trainer.iteration == 4
    resumed.trainer.run(progress=False)
    for name, value in uninterrupted.mixture.state_dict().items():
        assert torch.equal(value, resumed.mixture.state_dict()[name]), name
    lines = [line["iteration"] for line in read_metrics(folder) if "bound" in line]
    assert lines == list(range(1, 13))


def test_a_damaged_metrics_line_before_the_last_is_a_one_line_error(tmp_path):
    (tmp_path / METRICS).write_text('{"iteration": 1}\n{"iter\n{"iteration": 2}\n')
    with pytest.raises(VbpiMixError, match="metrics.jsonl: line 2 is not a JSON record"):
        read_metrics(tmp_path)


def test_a_stop_event_ends_training_after_the_current_iteration(tmp_path, monkeypatch):
    """The caller's stop event, set during an iteration (as the command line does on Ctrl-C
    or SIGTERM), stops the trainer after that iteration: the metrics end there, the last
    periodic checkpoint stays."""
    run = small_run(tmp_path, 12)
    original_step, stop = run.trainer.step, threading.Event()

    def step_during_which_a_signal_came():
        if run.trainer.iteration == 6:
            stop.set()
        return original_step()

    monkeypatch.setattr(run.trainer, "step", step_during_which_a_signal_came)
    with pytest.raises(Stopped):
        run.trainer.run(progress=False, stop=stop)
    assert run.trainer.iteration == 7
    assert [line["iteration"] for line in read_metrics(tmp_path) if "bound" in line][-1] == 7
    assert torch.load(tmp_path / CHECKPOINT, weights_only=False)["iteration"] == 4


@pytest.mark.parametrize("work", ["importance weights", "tree draws", "tree scores"])
def test_a_stop_event_ends_drawing_and_scoring_after_the_chunk_under_way(
    tmp_path, monkeypatch, work
):
    """Outside training, the stop event set while particles or trees are drawn or scored in
    chunks ends the work after the chunk under way, not at its end."""
    trainer = small_run(tmp_path, 1).trainer
    mixture, taxa = trainer.mixture, load_alignment(EXAMPLE_FASTA).taxa
    parents = mixture.sample(np.zeros(6, dtype=np.int64)).parents
    stop = threading.Event()
    owner, method, work_in_three_chunks = {
        "importance weights": (
            mixture, "sample_and_score",
            lambda: score_particles(mixture, trainer.target, 600, chunk=250, stop=stop),
        ),
        "tree draws": (
            mixture, "sample", lambda: draw_trees(mixture, taxa, 3 * SAMPLE_CHUNK, stop=stop)
        ),
        "tree scores": (
            mixture.sbn, "log_prob",
            lambda: mixture.sbn.mixture_log_prob(parents, chunk=2, stop=stop),
        ),
    }[work]  # fmt: skip
    original, chunks = getattr(owner, method), []

    def chunk_during_which_a_signal_came(*args, **kwargs):
        chunks.append(args)
        stop.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, method, chunk_during_which_a_signal_came)
    with pytest.raises(Stopped):
        work_in_three_chunks()
    assert len(chunks) == 1


def test_non_finite_bound_stops_with_a_message_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    run = small_run(tmp_path, 6)
    run.trainer.run(progress=False)
    saved = (tmp_path / CHECKPOINT).read_bytes()
    run = small_run(tmp_path, 20)
    monkeypatch.setattr(
        run.target,
        "log_likelihood",
        lambda particles, values=None: torch.full(
            (len(particles.parents),), float("nan"), dtype=torch.float64
        ),
    )
    with pytest.raises(VbpiMixError, match="bound became nan at iteration 7; last good checkpoint"):
        run.trainer.run(progress=False)
    assert (tmp_path / CHECKPOINT).read_bytes() == saved


class MixtureTimesConstant:
    """A target proportional to the mixture itself: log p(y, tau, b) = log q(tau, b) + c,
    with q scored apart from the draw (the SBN on the parent arrays, the branch model's own
    log-normal density). Every importance weight is e^c: log Z = c exactly, ESS = M."""

    def __init__(self, mixture, constant: float) -> None:
        self.mixture, self.constant = mixture, constant

    def log_likelihood(self, particles, values=None) -> torch.Tensor:
        log_q = self.mixture.sbn.log_prob(particles.parents) + branch_log_prob(
            self.mixture.branches, particles.edges, particles.branch_lengths
        )  # [A, n]
        return torch.logsumexp(log_q, 0) - np.log(self.mixture.n_components) + self.constant

    def log_prior(self, particles, values=None) -> torch.Tensor:
        return torch.zeros(len(particles.parents), dtype=torch.float64)


@pytest.mark.parametrize(("components", "particles"), [(1, 300), (3, 300), (3, 250)])
def test_marginal_likelihood_of_a_target_proportional_to_q_is_its_constant(
    tmp_path, components, particles
):
    """Stratified (A divides M) and uniformly drawn components alike."""
    mixture = small_run(tmp_path, 4, components=components).mixture
    result = marginal_likelihood(
        mixture, MixtureTimesConstant(mixture, -1234.5), particles, repeats=3,
        generator=torch.Generator().manual_seed(2),
    )  # fmt: skip
    assert result.estimates == pytest.approx([-1234.5] * 3, abs=1e-8)
    assert result.elbo == pytest.approx(-1234.5, abs=1e-8) and result.std < 1e-8
    assert result.effective_sample_size == pytest.approx(particles, rel=1e-8)


def test_the_mixture_elbo_exceeds_its_components_mean_by_their_jensen_shannon_divergence():
    """Disjoint components: log q = log q_a - log A on each one's own draws, so the mixture's
    ELBO is the components' mean ELBO plus log A, the largest a uniform mixture can add."""
    scores = ParticleScores(
        components=np.array([0, 0, 1, 1]),
        log_joint=torch.tensor([-10.0, -11.0, -12.0, -9.0], dtype=torch.float64),
        log_q_components=torch.tensor(
            [[-1.0, -math.inf], [-2.0, -math.inf], [-math.inf, -0.5], [-math.inf, -3.0]],
            dtype=torch.float64,
        ),
        log_q_theta=torch.zeros(4, dtype=torch.float64),
    )
    own = torch.tensor([-9.0, -9.0, -11.5, -6.0], dtype=torch.float64)
    assert torch.equal(scores.own_log_weights(), own)
    assert torch.allclose(scores.log_weights(), own + math.log(2), rtol=0, atol=1e-12)


def test_copies_add_nothing_and_each_particle_gains_at_most_log_a(tmp_path):
    """Per particle, log q_a(z) - log q(z) <= log A (q >= q_a / A); components that are copies
    of one another make it 0 for every particle."""
    run = small_run(tmp_path, 4, components=3)  # its components start as copies (split)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for parameter in run.mixture.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    apart = score_particles(run.mixture, run.target, 60, generator)
    gain = apart.log_weights() - apart.own_log_weights()
    assert bool((gain <= math.log(3) + 1e-9).all()) and 0.01 < float(gain.mean()) < math.log(3)
    with torch.no_grad():
        for parameter in run.mixture.parameters():
            parameter.copy_(parameter[:1].expand_as(parameter))
    copies = score_particles(run.mixture, run.target, 60, generator)
    assert torch.allclose(copies.log_weights(), copies.own_log_weights(), rtol=0, atol=1e-10)


def test_the_reported_bound_is_untempered_while_training_anneals(tmp_path):
    """Same seed, same first draw: a trainer at beta = 0.001 (a long warm-up) reports the same
    first bound as one at beta = 1 (no warm-up), and that bound is the K-sample bound with
    the full likelihood, tens of thousands of nats away from the tempered one."""
    bounds = []
    for warmup in (0, 10**6):
        model = ModelConfig(alignment=str(EXAMPLE_FASTA), components=2)
        training = TrainingConfig(iterations=10**6, particles=4, warmup=warmup, split_at=0, seed=7)
        run = create_run(tmp_path / f"w{warmup}", model, training, example_support())
        bounds.append(run.trainer.step())
    assert bounds[1] == pytest.approx(bounds[0], abs=1e-9)
    generator = torch.Generator().manual_seed(7)
    run = create_run(tmp_path / "again", model, training, example_support())
    record = draw_log_weights(
        run.mixture, run.target, run.trainer.estimator.draw(generator), 4, 0.001, generator
    )
    estimator = run.trainer.estimator
    tempered = float(k_sample_bound(estimator.log_weights(record)).mean().detach())
    untempered = float(k_sample_bound(estimator.log_weights(record.untempered())).mean().detach())
    assert untempered == pytest.approx(bounds[0], abs=1e-9)
    assert tempered - untempered > 1000


def test_the_default_warmup_is_a_quarter_of_the_iterations_and_kept_on_resume(tmp_path):
    model = ModelConfig(alignment=str(EXAMPLE_FASTA), components=1)
    run = create_run(tmp_path, model, TrainingConfig(iterations=8, particles=2), example_support())
    assert run.trainer.config.warmup == 2
    run.trainer.run(progress=False)
    longer = create_run(tmp_path, model, TrainingConfig(iterations=40, particles=2),
                        example_support())  # fmt: skip
    assert longer.trainer.config.warmup == 2 and longer.trainer.iteration == 8


def test_a_split_mixture_trains_as_its_parent_until_the_split_then_its_copies_separate(
    tmp_path,
):
    """Before `split_at` every component is the lone component trained as plain VBPI (same
    bounds, same parameters, the mixture scores every tree as the parent does); at the split
    the copies inherit its Adam moments, and the mixture's own draws then move them apart."""
    split_at, model = 6, ModelConfig(alignment=str(EXAMPLE_FASTA), components=3)
    training = TrainingConfig(
        iterations=10,
        particles=4,
        estimator="s2s",
        subset=1,
        topology_lr=0.01,
        branch_lr=0.01,
        split_at=split_at,
        seed=5,
    )
    child = create_run(tmp_path / "child", model, training, example_support())
    parent = create_run(
        tmp_path / "parent", dataclasses.replace(model, components=1),
        dataclasses.replace(training, estimator="a2a", subset=None, split_at=0),
        example_support(),
    )  # fmt: skip
    child_parameters = dict(child.mixture.named_parameters())
    with torch.no_grad():
        for name, value in parent.mixture.named_parameters():
            value.copy_(child_parameters[name][:1])
    for _ in range(split_at):
        assert child.trainer.step() == pytest.approx(parent.trainer.step(), abs=1e-9)
    saved = child.trainer.checkpoint_state()["mixture"]  # as saved: the copies, tied
    for name, reference in parent.mixture.named_parameters():
        value = saved[name]
        assert torch.allclose(value, reference.expand_as(value), rtol=0, atol=1e-12), name
    generator = torch.Generator().manual_seed(0)
    particles = parent.mixture.sample(np.zeros(50, dtype=np.int64), generator)
    assert torch.allclose(
        torch.logsumexp(child.mixture.sbn.log_prob(particles.tables), dim=0) - math.log(3),
        parent.mixture.sbn.log_prob(particles.tables)[0], rtol=0, atol=1e-10,
    )  # fmt: skip
    child.trainer.step()  # the first mixture step copies the moments, then one component moves
    moments = child.trainer.optimizer.state[child.mixture.sbn.entry_logits]
    moved = [
        not torch.equal(moments["exp_avg"][a], moments["exp_avg"][(a + 1) % 3]) for a in range(3)
    ]
    assert sum(moved) == 2  # two pairs hold the moved component, the third pair is untouched
    child.trainer.step()
    logits = child.mixture.sbn.entry_logits
    assert not torch.equal(logits[0], logits[1]) or not torch.equal(logits[1], logits[2])


def test_a_mixture_splits_late_by_default_and_keeps_its_split_on_resume(tmp_path):
    """The default split is 95% of the iterations for A > 1 and none for A = 1; a resumed run
    keeps its own (a larger --iterations continues it), and a run saved before split starts
    existed, whose settings lack the field, resumes as it started: apart."""
    support = example_support()
    lone = create_run(tmp_path / "a1", ModelConfig(alignment=str(EXAMPLE_FASTA)),
                      TrainingConfig(iterations=8, particles=2), support)  # fmt: skip
    assert lone.trainer.config.split_at == 0
    model = ModelConfig(alignment=str(EXAMPLE_FASTA), components=3)
    training = TrainingConfig(iterations=20, particles=2)
    mixture = create_run(tmp_path / "a3", model, training, support)
    assert mixture.trainer.config.split_at == 19
    mixture.trainer.run(progress=False)
    longer = create_run(tmp_path / "a3", model, TrainingConfig(iterations=40, particles=2), support)
    assert longer.trainer.config.split_at == 19 and longer.trainer.iteration == 20

    config_path = tmp_path / "a3" / "config.json"
    settings = json.loads(config_path.read_text())
    del settings["training"]["split_at"]  # as written before split starts existed
    config_path.write_text(json.dumps(settings))
    older = create_run(tmp_path / "a3", model, TrainingConfig(iterations=40, particles=2), support)
    assert older.trainer.config.split_at == 0 and not older.trainer.splits
    assert open_run(tmp_path / "a3").trainer.config.split_at == 0


def test_a_mixture_caps_branch_sigma_by_default_and_plain_vbpi_does_not(tmp_path):
    for components, cap in ((1, None), (2, 2.0)):
        out = tmp_path / f"a{components}"
        result = fit_example(out, "--iterations", "4", "--particles", "2", "--components",
                             str(components), "--eval-repeats", "1", "--eval-particles", "10",
                             "--quiet")  # fmt: skip
        assert result.returncode == 0, result.stderr
        model = json.loads((out / "config.json").read_text())["model"]
        assert model["max_branch_std"] == cap


def test_a_different_fit_in_the_same_folder_is_refused(tmp_path):
    small_run(tmp_path, 4).trainer.run(progress=False)
    with pytest.raises(VbpiMixError, match="holds a fit with other settings"):
        small_run(tmp_path, 4, components=3)


def fit_example(out: Path, *extra: str) -> subprocess.CompletedProcess:
    """`vbpi-mix fit` on the bundled example and its bundled support."""
    return run_cli(
        "fit", str(EXAMPLE_FASTA), "--support-dir", str(SUPPORT_DIR), "--out", str(out), *extra
    )


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vbpi_mix.cli", *args], capture_output=True, text=True, timeout=900
    )


def test_fit_puts_the_highest_probability_on_the_true_topology(tmp_path):
    out = tmp_path / "run"
    result = fit_example(
        out,
        "--iterations",
        "800",
        "--lr",
        "0.01",
        "--warmup",
        "200",
        "--eval-particles",
        "300",
        "--eval-repeats",
        "3",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    taxa = load_alignment(EXAMPLE_FASTA).taxa
    truth = topology_from_dendropy(read_tree_file(EXAMPLE_TREE)[0], taxa)[0]
    assert summary["map_topology"] == truth.newick()
    assert np.isfinite(summary["mll_mean"])
    assert "MAP topology" in result.stdout
    # a golden run that is certain of the true tree: KL = -log q(truth) = -log(MAP probability)
    golden = tmp_path / "golden.trprobs"
    golden.write_text(f"#NEXUS\nbegin trees;\n  tree t1 = [&W 1.0] {truth.newick()}\nend;\n")
    evaluated = run_cli(
        "evaluate", str(out), "--particles", "200", "--repeats", "2", "--golden", str(golden)
    )
    assert evaluated.returncode == 0 and "marginal likelihood" in evaluated.stdout
    evaluated_summary = json.loads((out / "summary.json").read_text())
    for name in ("kl_golden_floored", "kl_golden_reachable"):
        assert evaluated_summary[name] == pytest.approx(-np.log(summary["map_probability"]))
    assert evaluated_summary["golden_mass_unreachable"] == 0.0
    assert (out / "posterior_vs_golden.png").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--particles", "1"], "VIMCO needs at least 2 particles"),
        (["--iterations", "0"], "--iterations must be at least 1"),
        (["--components", "3", "--estimator", "s2s", "--subset", "3"], "use --estimator a2a"),
        (
            ["--components", "3", "--estimator", "s2a", "--subset", "4"],
            "between 1 and --components",
        ),
        (["--kappa", "3"], "--kappa applies to K80 and HKY, not JC"),
        (["--alpha", "0.5"], "--alpha needs --gamma-categories"),
        (["--iterations", "100", "--warmup", "500"], "give --warmup at most 100"),
        (["--split-at", "10"], "--split-at applies to mixtures"),
        (["--components", "2", "--iterations", "100", "--split-at", "100"], "below --iterations"),
    ],
)
def test_fit_rejects_invalid_combinations(tmp_path, extra, message):
    result = fit_example(tmp_path / "r", *extra)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "r").exists()


def test_the_alignment_format_given_to_fit_is_the_one_every_later_read_uses(tmp_path, monkeypatch):
    """`--format` is kept in the run's settings, so that resuming, evaluating and sampling
    read the alignment as the fit did, not by detecting it again."""
    from vbpi_mix.inference import runs

    formats = []

    def recording_load(path, fmt=None):
        formats.append(fmt)
        return load_alignment(path, fmt)

    monkeypatch.setattr(runs, "load_alignment", recording_load)
    model = ModelConfig(alignment=str(EXAMPLE_FASTA), alignment_format="fasta", components=1)
    run = create_run(tmp_path, model, TrainingConfig(iterations=2, particles=2), example_support())
    run.trainer.run(progress=False)
    assert (
        json.loads((tmp_path / "config.json").read_text())["model"]["alignment_format"] == "fasta"
    )
    open_run(tmp_path)
    assert formats == ["fasta", "fasta"]


def test_fit_with_another_model_scores_trees_as_loglik_does(tmp_path):
    """`fit --model HKY ... --gamma 4` keeps the model in config.json and reports its values,
    and the run's likelihood of the true tree equals `vbpi-mix loglik` with the same options
    (itself checked against IQ-TREE for HKY and GTR+G4)."""
    options = ["--model", "HKY", "--kappa", "2.5", "--freqs", "0.3,0.2,0.2,0.3", "--gamma", "4",
               "--alpha", "0.5"]  # fmt: skip
    out = tmp_path / "run"
    result = fit_example(out, *options, "--iterations", "6", "--eval-every", "0",
                         "--eval-particles", "20", "--eval-repeats", "2", "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "substitution model:  HKY+G4" in result.stdout
    line = "kappa 2.5, frequencies A 0.3000 C 0.2000 G 0.2000 T 0.3000, alpha 0.5"
    assert f"fixed parameters:    {line}" in result.stdout
    reported = json.loads((out / "summary.json").read_text())["substitution_parameters"]
    assert (reported["kappa"], reported["alpha"]) == (2.5, 0.5)
    assert reported["frequencies"] == pytest.approx([0.3, 0.2, 0.2, 0.3], abs=1e-15)
    model = json.loads((out / "config.json").read_text())["model"]
    assert (model["substitution_model"], model["kappa"], model["gamma_categories"]) == (
        "HKY", 2.5, 4,
    )  # fmt: skip
    taxa = load_alignment(EXAMPLE_FASTA).taxa
    truth, lengths = topology_from_dendropy(read_tree_file(EXAMPLE_TREE)[0], taxa)
    run = open_run(out)
    value = run.target.likelihood(truth.parents[None], torch.as_tensor(lengths)[None])
    loglik = run_cli("loglik", str(EXAMPLE_FASTA), str(EXAMPLE_TREE), *options, "--quiet")
    assert float(value) == pytest.approx(float(loglik.stdout.split()[1]), abs=1e-6)
    assert float(value) != pytest.approx(  # the JC value differs: the options took effect
        float(run_cli("loglik", str(EXAMPLE_FASTA), str(EXAMPLE_TREE)).stdout.split()[1]), abs=1
    )


def test_a_run_made_before_the_model_options_resumes(tmp_path):
    """config.json of earlier versions lacks the substitution-model fields; their defaults
    (JC69) are the settings those runs used, so the same fit resumes."""
    small_run(tmp_path, 4).trainer.run(progress=False)
    config = json.loads((tmp_path / "config.json").read_text())
    for field in ("kappa", "frequencies", "rates", "gamma_categories", "alpha"):
        del config["model"][field]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert small_run(tmp_path, 6).trainer.iteration == 4


def test_a_damaged_checkpoint_is_a_one_line_error(tmp_path):
    small_run(tmp_path, 4).trainer.run(progress=False)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    state["mixture"]["sbn.unknown_buffer"] = torch.zeros(1)  # as from another version
    torch.save(state, tmp_path / CHECKPOINT)
    with pytest.raises(VbpiMixError, match="not a checkpoint of this vbpi-mix version"):
        small_run(tmp_path, 4)
    (tmp_path / CHECKPOINT).write_bytes(b"truncated")
    with pytest.raises(VbpiMixError, match="not a checkpoint of this vbpi-mix version"):
        small_run(tmp_path, 4)


def test_a_fit_workflow_writes_its_run_log_and_leaves_the_package_logger_as_it_was(tmp_path):
    """RUN_DIR/run.log receives the fit's records (the settings, the training and the
    summary) while the workflow runs; afterwards the package logger has its former level
    and handlers, so that a program's own logging set-up is not changed by a fit."""
    from vbpi_mix.workflows import fit

    package = logging.getLogger("vbpi_mix")
    handlers, level = list(package.handlers), package.level
    training = TrainingConfig(iterations=4, particles=2, warmup=1)
    model = ModelConfig(alignment=str(EXAMPLE_FASTA))
    support = REPO_ROOT / "data" / "example_support"
    fit(model, training, None, tmp_path, support_dir=support, eval_particles=20, eval_repeats=2)
    assert package.handlers == handlers and package.level == level
    lines = (tmp_path / "run.log").read_text().splitlines()
    assert " INFO fit " in lines[0] and any(" INFO summary: " in line for line in lines)


@pytest.mark.parametrize("checkpoint_format", ["lone component apart", "lone inside the mixture"])
@pytest.mark.parametrize("checkpoint_at", [4, 6], ids=["in-the-lone-phase", "at-the-split"])
def test_a_run_killed_before_its_split_resumes_to_the_uninterrupted_result(
    tmp_path, monkeypatch, checkpoint_format, checkpoint_at
):
    """A split start (split at 6) killed after its checkpoint in the lone phase (4) or at the
    split itself (6, before the mixture's first step) resumes to the parameters of an
    uninterrupted run, bit for bit; also from a checkpoint written when the lone phase
    trained the first component inside the mixture (Adam moments for every component, the
    schedule on the mixture's optimizer)."""
    model = ModelConfig(alignment=str(EXAMPLE_FASTA), components=3)
    training = TrainingConfig(iterations=10, particles=3, estimator="s2a", subset=1,
                              topology_lr=0.01, branch_lr=0.01, warmup=1, split_at=6,
                              checkpoint_every=checkpoint_at, seed=3)  # fmt: skip
    uninterrupted = create_run(tmp_path / "a", model, training, example_support())
    uninterrupted.trainer.run(progress=False)

    killed = create_run(tmp_path / "b", model, training, example_support())
    original_step = killed.trainer.step

    def step_then_die():
        if killed.trainer.iteration == checkpoint_at + 1:
            raise KeyboardInterrupt
        return original_step()

    monkeypatch.setattr(killed.trainer, "step", step_then_die)
    with pytest.raises(KeyboardInterrupt):
        killed.trainer.run(progress=False)
    if checkpoint_format == "lone inside the mixture":
        state = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)
        optimizer = state.pop("lone_optimizer")
        for moments in optimizer["state"].values():
            for key in ("exp_avg", "exp_avg_sq"):
                moments[key] = moments[key].expand(3, *moments[key].shape[1:]).clone()
        state["optimizer"], state["scheduler"] = optimizer, state.pop("lone_scheduler")
        del state["lone"]
        torch.save(state, tmp_path / "b" / CHECKPOINT)
    resumed = create_run(tmp_path / "b", model, training, example_support())
    assert resumed.trainer.iteration == checkpoint_at
    resumed.trainer.run(progress=False)
    for name, value in uninterrupted.mixture.state_dict().items():
        assert torch.equal(value, resumed.mixture.state_dict()[name]), name


def grown_and_split_runs(tmp_path: Path, split_at: int, iterations: int):
    """A one-component fit of `split_at` iterations grown into A = 3 for `iterations`, and the
    split start of the same settings, the fit begun from the split start's lone component."""
    model = ModelConfig(alignment=str(EXAMPLE_FASTA), components=3, max_branch_std=2.0)
    training = TrainingConfig(iterations=iterations, particles=3, estimator="s2a", subset=1,
                              topology_lr=0.01, branch_lr=0.01, warmup=2, split_at=split_at,
                              checkpoint_every=3, seed=3)  # fmt: skip
    split = create_run(tmp_path / "split", model, training, example_support())
    single = dataclasses.replace(training, iterations=split_at, estimator="a2a", subset=None,
                                 split_at=None)  # fmt: skip
    parent = create_run(tmp_path / "grown", dataclasses.replace(model, components=1), single,
                        example_support())  # fmt: skip
    with torch.no_grad():
        for value, source in zip(
            parent.mixture.parameters(), split.trainer.lone.parameters(), strict=True
        ):
            value.copy_(source)
    parent.trainer.run(progress=False)
    grown = create_run(tmp_path / "grown", model, dataclasses.replace(training, split_at=None),
                       example_support())  # fmt: skip
    return split, grown


def test_a_fit_grown_into_a_mixture_trains_as_the_split_start_of_the_same_settings(tmp_path):
    """Growing a finished one-component fit (more --components, more --iterations) makes it
    the lone phase of a split start: the mixture splits at the fit's iterations, keeps its
    warm-up, and trains bit for bit as the split start would, also when stopped before its
    first checkpoint; once grown, the folder resumes as any mixture run."""
    split, grown = grown_and_split_runs(tmp_path, split_at=6, iterations=9)
    # stopped before the mixture's first checkpoint: config.json says A = 3 while the
    # checkpoint is still the one-component fit's
    grown = create_run(tmp_path / "grown", grown.model, grown.training, example_support())
    assert grown.trainer.config.split_at == 6 and grown.trainer.config.warmup == 2
    assert grown.trainer.iteration == 6
    split.trainer.run(progress=False)
    grown.trainer.run(progress=False)
    for name, value in split.mixture.state_dict().items():
        assert torch.equal(value, grown.mixture.state_dict()[name]), name
    longer = dataclasses.replace(grown.training, iterations=11)
    resumed = create_run(tmp_path / "grown", grown.model, longer, example_support())
    assert resumed.trainer.iteration == 9 and resumed.trainer.config.split_at == 6


@pytest.mark.parametrize(
    "change, message",
    [
        ({"split_at": 4}, "splits there: leave out --split-at (got 4)"),
        ({"iterations": 6}, "give --iterations above that (got 6)"),
        ({"topology_lr": 0.02}, "other training settings (topology_lr)"),
        ({"warmup": 3}, "other training settings (warmup)"),
    ],
)
def test_growing_a_fit_with_other_settings_is_a_one_line_error(tmp_path, change, message):
    model = ModelConfig(alignment=str(EXAMPLE_FASTA))
    training = TrainingConfig(iterations=6, particles=2, warmup=2)
    create_run(tmp_path, model, training, example_support()).trainer.run(progress=False)
    grown = dataclasses.replace(training, **{"iterations": 9, **change})
    with pytest.raises(VbpiMixError, match=re.escape(message)):
        create_run(tmp_path, dataclasses.replace(model, components=3), grown, example_support())
    other_model = dataclasses.replace(model, components=3, branch_features="split")
    with pytest.raises(VbpiMixError, match=re.escape("other model settings (branch_features)")):
        create_run(tmp_path, other_model, dataclasses.replace(training, iterations=9),
                   example_support())  # fmt: skip


def test_fit_grows_a_finished_one_component_run_into_a_mixture(tmp_path):
    """On the command line: the second `fit` (A = 3, more iterations; its sigma cap, 2 for a
    mixture, differs from the first fit's none) continues the first fit's run as the lone
    phase, splits where it ended, and logs the growth."""
    out = tmp_path / "run"
    quick = ["--eval-every", "0", "--eval-particles", "30", "--eval-repeats", "2", "--quiet",
             "--threads", "1"]  # fmt: skip
    first = fit_example(out, "--iterations", "12", "--warmup", "3", *quick)
    assert first.returncode == 0, first.stderr
    grown = fit_example(out, "--components", "3", "--iterations", "16", *quick)
    assert grown.returncode == 0, grown.stderr
    settings = json.loads((out / "config.json").read_text())
    assert settings["model"]["components"] == 3 and settings["model"]["max_branch_std"] == 2.0
    assert (settings["training"]["split_at"], settings["training"]["warmup"]) == (12, 3)
    assert (
        "growing the one-component fit of 12 iterations into a mixture of 3"
        in (out / "run.log").read_text()
    )
    assert json.loads((out / "summary.json").read_text())["iterations"] == 16
