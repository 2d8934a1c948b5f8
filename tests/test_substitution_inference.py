"""Inferred substitution parameters: priors against scipy, the variational density against
an independent integral, the fit's outputs, and coverage of the intervals on simulated data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from vbpi_mix.inference.runs import ModelConfig
from vbpi_mix.phylo.priors import log_substitution_prior
from vbpi_mix.variational.substitution_posterior import SubstitutionPosterior

START = {
    "kappa": torch.tensor(3.0, dtype=torch.float64),
    "rates": torch.tensor([1.0, 4.0, 0.5, 1.5, 6.0, 1.0], dtype=torch.float64),
    "frequencies": torch.tensor([0.3, 0.2, 0.25, 0.25], dtype=torch.float64),
    "alpha": torch.tensor(0.7, dtype=torch.float64),
}


def prior_draws(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """n draws of every parameter from MrBayes' default priors, by scipy."""
    share = stats.beta(1, 1).rvs(n, random_state=rng)  # kappa / (1 + kappa)
    return {
        "kappa": share / (1 - share),
        "rates": stats.dirichlet(np.ones(6)).rvs(n, random_state=rng),
        "frequencies": stats.dirichlet(np.ones(4)).rvs(n, random_state=rng),
        "alpha": stats.expon().rvs(n, random_state=rng),
    }


def correlated(posterior: SubstitutionPosterior) -> SubstitutionPosterior:
    """The posterior with seeded correlations between its coordinates."""
    with torch.no_grad():
        generator = torch.Generator().manual_seed(7)
        posterior.below_diagonal.copy_(
            0.1 * torch.randn(len(posterior.below_diagonal), generator=generator)
        )
    return posterior


def test_substitution_priors_equal_scipy_densities():
    """log p(theta) against scipy: Dirichlet(1,..,1) on the exchangeabilities and on the
    frequencies, Beta(1, 1) on kappa / (1 + kappa) with its Jacobian 1 / (1 + kappa)^2, and
    Exponential(1) on alpha."""
    draws = prior_draws(50, np.random.default_rng(0))
    for name, value in draws.items():
        ours = log_substitution_prior({name: torch.as_tensor(value)}).numpy()
        if name in ("rates", "frequencies"):
            expected = [stats.dirichlet(np.ones(value.shape[1])).logpdf(row) for row in value]
        elif name == "kappa":
            expected = stats.beta(1, 1).logpdf(value / (1 + value)) - 2 * np.log1p(value)
        else:
            expected = stats.expon().logpdf(value)
        np.testing.assert_allclose(ours, expected, rtol=1e-12, err_msg=name)


def test_variational_density_integrates_to_one_against_the_prior():
    """E_prior[q(theta) / p(theta)] = integral of q = 1, from 200,000 draws of the prior
    (scipy), for a correlated q with scales that overlap the prior: checks q's density (each
    parameter's marginal, and all of them jointly), its Jacobians on the simplex and the
    prior's, in the same measure, together. Tolerance: 5 standard errors of the mean of the
    ratios."""
    posterior = correlated(SubstitutionPosterior(START, scale=0.6))
    draws = prior_draws(200_000, np.random.default_rng(1))
    subsets = [{name: value} for name, value in draws.items()] + [draws]
    for subset in subsets:
        one = {name: torch.as_tensor(value) for name, value in subset.items()}
        name = "+".join(subset)
        with torch.no_grad():
            ratios = torch.exp(posterior.log_prob(one) - log_substitution_prior(one)).numpy()
        error = ratios.std() / math.sqrt(len(ratios))
        assert abs(ratios.mean() - 1) < 5 * error, (name, ratios.mean(), error)


def test_draws_score_as_their_density():
    """The log q returned with each draw equals log_prob of the drawn values, and the draws
    are where they should be: log-normal medians at the start values, simplex points that
    sum to 1."""
    posterior = correlated(SubstitutionPosterior(START, scale=0.2))
    values, log_q = posterior.rsample_and_log_prob(20_000, torch.Generator().manual_seed(2))
    with torch.no_grad():
        np.testing.assert_allclose(log_q.numpy(), posterior.log_prob(values).numpy(), rtol=1e-10)
    for name in ("kappa", "alpha"):
        median = float(values[name].detach().median())
        assert median == pytest.approx(float(START[name]), rel=0.01)
    for name in ("rates", "frequencies"):
        np.testing.assert_allclose(values[name].sum(dim=1).detach().numpy(), 1.0, rtol=1e-12)


def test_free_parameters_not_given_are_inferred():
    """ModelConfig: kappa, exchangeabilities, frequencies and alpha are inferred exactly when
    the model has them and they are not given; values a model has no use for are dropped."""

    def inferred(**settings):
        return ModelConfig(alignment="a.fasta", **settings).inferred_parameters()

    assert inferred() == ()
    assert inferred(gamma_categories=4) == ("alpha",)
    assert inferred(substitution_model="K80") == ("kappa",)
    assert inferred(substitution_model="HKY", kappa=2.0) == ("frequencies",)
    assert inferred(substitution_model="HKY", frequencies="empirical") == ("kappa",)
    assert inferred(substitution_model="GTR", gamma_categories=4, alpha=0.5) == (
        "rates", "frequencies",
    )  # fmt: skip
    assert ModelConfig(alignment="a.fasta", kappa=2.0).kappa is None  # JC has no kappa


def test_fit_and_sample_report_the_inferred_parameters(tmp_path, capsys):
    """`fit --model HKY --gamma 4` with nothing fixed: summary.json holds each inferred
    parameter's mean inside its 95% interval, the printed summary lists them, and the MLL is
    finite; on the bundled example (simulated under JC69) kappa's interval holds 1. Then
    `sample` writes the values drawn with each tree."""
    from vbpi_mix.cli import main

    out = tmp_path / "fit"
    code = main([
        "fit", "data/example.fasta", "--support-dir", "data/example_support", "--out", str(out),
        "--model", "HKY", "--gamma", "4", "--iterations", "1500", "--lr", "0.01",
        "--warmup", "300", "--eval-repeats", "2", "--eval-particles", "200", "--quiet",
    ])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    posterior = summary["substitution_posterior"]
    assert set(posterior) == {"kappa", "frequencies", "alpha"}
    for estimate in posterior.values():
        bounds = zip(estimate["mean"], estimate["lower"], estimate["upper"], strict=True)
        for mean, lower, upper in bounds:
            assert lower < mean < upper
    assert posterior["kappa"]["lower"][0] < 1.0 < posterior["kappa"]["upper"][0]
    assert summary["substitution_parameters"]["kappa"] == posterior["kappa"]["mean"][0]
    assert math.isfinite(summary["mll_mean"])
    printed = capsys.readouterr().out
    assert "inferred parameters: posterior mean (95% interval)" in printed
    assert "fixed parameters" not in printed  # every parameter of HKY+G4 is inferred here
    assert "kappa" in printed and "frequencies  A " in printed
    # sample: the parameters drawn with each tree beside it, as MrBayes' .p columns; TL is
    # each tree's length as DendroPy reads the tree file
    import dendropy

    trees_path = tmp_path / "draws.trees"
    assert main(["sample", str(out), "-n", "20", "-o", str(trees_path), "--quiet"]) == 0
    lines = (tmp_path / "draws.p").read_text().splitlines()
    header = lines[0].split("\t")
    assert header == ["tree", "TL", "kappa", "pi(A)", "pi(C)", "pi(G)", "pi(T)", "alpha"]
    rows = np.array([[float(x) for x in line.split("\t")] for line in lines[1:]])
    assert rows.shape == (20, 8)
    np.testing.assert_allclose(rows[:, 3:7].sum(axis=1), 1.0, atol=1e-5)
    trees = dendropy.TreeList.get(path=str(trees_path), schema="nexus")
    np.testing.assert_allclose(rows[:, 1], [t.length() for t in trees], rtol=1e-5)


def test_intervals_cover_the_true_parameters_on_simulated_data(tmp_path, restore_threads):
    """HKY+G4 data simulated with known kappa, frequencies and alpha (8 taxa, 1000 sites, six
    seeds; benchmarks/parameter_coverage.py), each fitted on its true topology: of the 36 95%
    intervals (kappa, four frequencies, alpha per seed), at least 31 hold the truth. With
    exact 95% intervals the misses are Binomial(36, 0.05), mean 1.8: six or more happen with
    probability 0.01, so the test fails when intervals are clearly too narrow. The fits pick
    their thread counts as `vbpi-mix fit` does (a ThreadTuner)."""
    from benchmarks.parameter_coverage import covered_intervals

    flags = [
        flag
        for seed in range(6)
        for values in covered_intervals("HKY", seed, tmp_path, iterations=1500).values()
        for flag in values
    ]
    assert len(flags) == 36
    assert sum(flags) >= 31, f"{sum(flags)} of 36 intervals cover the truth"
