"""Substitution models against closed forms, matrix_exp, and published Gamma rates; their
gradients in every parameter against finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.phylo.matrix_exponentials import symmetric_expm1
from vbpi_mix.phylo.models import (
    GTR,
    HKY,
    JC69,
    K80,
    build_model,
    discrete_gamma_rates,
    gamma_category_rates,
)
from vbpi_mix.trees.random_tree import random_parents

FREQS = torch.tensor([0.3, 0.2, 0.2, 0.3], dtype=torch.float64)
RATES = torch.tensor([1.0, 2.5, 0.8, 1.2, 3.0, 1.0], dtype=torch.float64)
MODELS = {
    "JC": lambda: JC69(),
    "K80": lambda: K80(3.0),
    "HKY": lambda: HKY(2.5, FREQS),
    "GTR+G4": lambda: GTR(RATES, FREQS, 4, 0.5),
}


@pytest.mark.parametrize("name", MODELS)
def test_rate_matrix_is_a_normalised_reversible_generator(name):
    model = MODELS[name]()
    q = model.rate_matrix()
    pi = model.frequencies
    torch.testing.assert_close(q.sum(dim=1), torch.zeros(4, dtype=torch.float64))
    assert float(-(pi * torch.diagonal(q)).sum()) == pytest.approx(1.0, abs=1e-14)
    flux = pi[:, None] * q
    torch.testing.assert_close(flux, flux.T)


@pytest.mark.parametrize("name", MODELS)
def test_transition_matrices_equal_matrix_exponential(name):
    model = MODELS[name]()
    times = torch.tensor([0.0, 1e-6, 0.01, 0.3, 2.0], dtype=torch.float64)
    matrices = model.transition_matrices(times)
    assert matrices.shape == (5, model.category_rates.numel(), 4, 4)
    q = model.rate_matrix()
    for t_index, t in enumerate(times):
        for c, rate in enumerate(model.category_rates):
            expected = torch.linalg.matrix_exp(q * t * rate)
            # atol: rounding of scaling-and-squaring in matrix_exp at Q t r up to ~6
            torch.testing.assert_close(matrices[t_index, c], expected, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(
        matrices[0, 0], torch.eye(4, dtype=torch.float64), atol=1e-14, rtol=0
    )


def test_jc_closed_form():
    t = 0.37
    p = JC69().transition_matrices(torch.tensor(t, dtype=torch.float64))[0]
    same = 0.25 + 0.75 * math.exp(-4.0 * t / 3.0)
    assert float(p[0, 0]) == pytest.approx(same, rel=1e-13)
    assert float(p[0, 1]) == pytest.approx((1 - same) / 3, rel=1e-12)


def test_k80_closed_form():
    kappa, t = 3.0, 0.2
    p = K80(kappa).transition_matrices(torch.tensor(t, dtype=torch.float64))[0]
    # Kimura 1980 with rate normalised to 1: alpha (transition) = kappa / (kappa + 2) / ... ;
    # per unit time, d = t, transition rate a = kappa/(kappa+2), transversion b = 1/(kappa+2).
    a, b = kappa / (kappa + 2), 1 / (kappa + 2)
    transversion = 0.25 - 0.25 * math.exp(-4 * b * t)
    transition = 0.25 + 0.25 * math.exp(-4 * b * t) - 0.5 * math.exp(-2 * (a + b) * t)
    assert float(p[0, 1]) == pytest.approx(transversion, rel=1e-12)  # A -> C
    assert float(p[0, 2]) == pytest.approx(transition, rel=1e-12)  # A -> G


def test_discrete_gamma_matches_yang_1994_table():
    # Mean rates for alpha = 0.5, K = 4 as printed by PAML/Yang (1994): 0.0334 0.2519 0.8203 2.8944
    rates = discrete_gamma_rates(0.5, 4)
    np.testing.assert_allclose(rates, [0.0334, 0.2519, 0.8203, 2.8944], atol=6e-5)
    assert rates.mean() == pytest.approx(1.0, abs=1e-12)
    assert discrete_gamma_rates(0.5, 1).tolist() == [1.0]


def test_frequencies_are_normalised_and_validated():
    model = build_model("HKY", kappa=2.0, frequencies=[3, 2, 2, 3])
    torch.testing.assert_close(model.frequencies, FREQS)
    with pytest.raises(VbpiMixError, match="four positive"):
        build_model("HKY", frequencies=[0.5, 0.5, 0.0, 0.0])
    with pytest.raises(VbpiMixError, match="needs a shape --alpha"):
        build_model("JC", gamma_categories=4)
    with pytest.raises(VbpiMixError, match="unknown model"):
        build_model("F81")  # type: ignore[arg-type]


@pytest.mark.parametrize("t", [1e-12, 1e-8, 1e-4])
def test_short_branches_keep_off_diagonal_relative_accuracy(t):
    """P_ij ~ t/4 for tiny t: exp-minus-one cancellation would leave only ~1e-16/t digits."""
    p = JC69().transition_matrices(torch.tensor(t, dtype=torch.float64))[0]
    exact_off_diagonal = -0.25 * math.expm1(-4.0 * t / 3.0)
    assert float(p[0, 1]) == pytest.approx(exact_off_diagonal, rel=1e-12)


@pytest.mark.parametrize("t", [1e-9, 0.03, 0.7, 12.0])
def test_jukes_cantor_pairs_rebuild_the_transition_matrices(t):
    """a I + b J from `jukes_cantor_coefficients` equals the eigen-decomposition's P(t r_c)
    (JC+G4), and only models with JC's Q claim to be Jukes-Cantor."""
    model = JC69(gamma_categories=4, alpha=0.3)
    times = torch.tensor([t], dtype=torch.float64)
    pairs = model.jukes_cantor_coefficients(times)[0]  # [C, 2]
    rebuilt = pairs[:, :1, None] * torch.eye(4) + pairs[:, 1:, None] * torch.ones(4, 4)
    torch.testing.assert_close(rebuilt, model.transition_matrices(times)[0], rtol=1e-12, atol=0)
    assert JC69().is_jukes_cantor() and K80(1.0).is_jukes_cantor()
    assert not K80(2.0).is_jukes_cantor()
    assert not GTR(frequencies=torch.tensor([0.1, 0.2, 0.3, 0.4])).is_jukes_cantor()


@pytest.mark.parametrize("name", MODELS)
def test_symmetric_expm1_equals_scipy_expm_and_has_finite_difference_gradients(name):
    """exp(S t) - I against scipy's expm, and its gradient in S and t by gradcheck (central
    differences), also where S has repeated eigenvalues (JC69 threefold, K80 twofold), where
    autograd through the eigenvectors is infinite."""
    model = MODELS[name]()
    root_pi = model.frequencies.sqrt()
    symmetric = root_pi[:, None] * model.rate_matrix() / root_pi[None, :]
    symmetric = 0.5 * (symmetric + symmetric.T)
    times = torch.tensor([1e-7, 0.01, 0.3, 2.0, 9.0], dtype=torch.float64)
    expected = np.stack([linalg.expm(symmetric.numpy() * t) - np.eye(4) for t in times.numpy()])
    value = symmetric_expm1(symmetric[None], times[None])[0]
    np.testing.assert_allclose(value.numpy(), expected, atol=1e-14)

    def function(matrices, lengths):
        return symmetric_expm1(0.5 * (matrices + matrices.transpose(-1, -2)), lengths)

    # two matrices, each with its own times: the model's and a GTR one
    other = root_pi[:, None] * GTR(RATES).rate_matrix() / root_pi[None, :]
    matrices = torch.stack([symmetric, 0.5 * (other + other.T)]).requires_grad_()
    lengths = torch.stack([times[1:], times[1:].flip(0)]).requires_grad_()
    assert torch.autograd.gradcheck(function, (matrices, lengths))


def test_gamma_category_rates_are_differentiable_in_alpha():
    """The mean rates of 4 categories as a function of alpha: values as
    `discrete_gamma_rates`, gradient against a central difference of it (implicit quantile
    derivative; the rates always average to 1, so the gradient sums to 0)."""
    for alpha in (0.2, 0.5, 1.7, 20.0):
        shape = torch.tensor(alpha, dtype=torch.float64, requires_grad=True)
        rates = gamma_category_rates(shape, 4)
        np.testing.assert_allclose(rates.detach().numpy(), discrete_gamma_rates(alpha, 4))
        step = 1e-6 * alpha
        numeric = discrete_gamma_rates(alpha + step, 4) - discrete_gamma_rates(alpha - step, 4)
        numeric /= 2 * step
        jacobian = [torch.autograd.grad(rates[k], shape, retain_graph=True)[0] for k in range(4)]
        np.testing.assert_allclose(torch.stack(jacobian).numpy(), numeric, rtol=1e-6, atol=1e-8)
        assert abs(float(sum(jacobian))) < 1e-8


# the parameters each model is differentiated in, and how to build it from their values
_DIFFERENTIATED = {
    "K80": (("kappa",), lambda p: K80(p["kappa"], 1)),
    "HKY": (("kappa", "frequencies"), lambda p: HKY(p["kappa"], p["frequencies"])),
    "GTR+G4": (
        ("rates", "frequencies", "alpha"),
        lambda p: GTR(p["rates"], p["frequencies"], 4, p["alpha"]),
    ),
    "JC+G4": (("alpha",), lambda p: JC69(4, p["alpha"])),
}
# directions of the central differences: frequencies keep their sum, one exchangeability moves
_DIRECTIONS = {
    "frequencies": torch.tensor([1.0, -2.0, 0.5, 0.5], dtype=torch.float64),
    "rates": torch.eye(6, dtype=torch.float64)[1],
    "kappa": 1.0,
    "alpha": 1.0,
}


@pytest.mark.parametrize("name", _DIFFERENTIATED)
def test_log_likelihood_gradient_in_model_parameters_equals_central_differences(name):
    """d log L / d (kappa, exchangeabilities, frequencies, alpha) through the batched kernel
    against central differences of log L along one direction per parameter, on a 6-taxon
    tree: the gradients that inferring substitution parameters needs, K80 and JC69
    included (repeated eigenvalues)."""
    from tests.test_likelihood import small_problem
    from vbpi_mix.phylo.likelihood import TreeLikelihood

    differentiated, build = _DIFFERENTIATED[name]
    values = {"kappa": 2.5, "frequencies": FREQS, "rates": RATES, "alpha": 0.6}
    alignment, parents, lengths = small_problem(6, 80, seed=5, model=build(values))
    lengths = torch.as_tensor(lengths)[None]

    def log_likelihood(model):
        return TreeLikelihood(alignment, model)(parents[None], lengths).sum()

    model = build(values)
    for key in differentiated:
        getattr(model, key).requires_grad_()
    log_likelihood(model).backward()
    step = 1e-5
    for key in differentiated:
        direction = _DIRECTIONS[key]
        analytic = float((getattr(model, key).grad * direction).sum())
        ahead = log_likelihood(build({**values, key: values[key] + step * direction}))
        behind = log_likelihood(build({**values, key: values[key] - step * direction}))
        numeric = float(ahead - behind) / (2 * step)
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-5), key


# one model per tree for the per-tree values test: three sets of values of every parameter
_PER_TREE = {
    "kappa": torch.tensor([0.5, 2.5, 9.0], dtype=torch.float64),
    "alpha": torch.tensor([0.2, 0.6, 4.0], dtype=torch.float64),
    "frequencies": torch.tensor(
        [[0.1, 0.2, 0.3, 0.4], [0.3, 0.2, 0.2, 0.3], [0.25, 0.25, 0.25, 0.25]],
        dtype=torch.float64,
    ),
    "rates": torch.stack([RATES, RATES.flip(0), torch.ones(6, dtype=torch.float64)]),
}


@pytest.mark.parametrize("name", _DIFFERENTIATED)
def test_values_per_tree_equal_one_model_per_tree(name):
    """TreeLikelihood with one value of each free parameter per tree (what inferring them
    draws, the frequencies folded into a root edge's matrix) against a model built from
    each tree's values alone: the same log-likelihoods and the same gradients in the values
    (those of one model are checked by central differences above)."""
    from tests.test_likelihood import small_problem
    from vbpi_mix.phylo.likelihood import TreeLikelihood

    differentiated, build = _DIFFERENTIATED[name]
    fixed = {"kappa": 2.5, "frequencies": FREQS, "rates": RATES, "alpha": 0.6}
    alignment, _, _ = small_problem(6, 80, seed=5, model=build(fixed))
    rng = np.random.default_rng(3)
    parents = np.stack([random_parents(6, rng) for _ in range(3)])
    lengths = torch.as_tensor(rng.uniform(0.01, 0.5, (3, 9)))
    values = {key: _PER_TREE[key].clone().requires_grad_() for key in differentiated}
    likelihood = TreeLikelihood(alignment, build(fixed))
    batched = likelihood(parents, lengths, values)
    batched.sum().backward()
    for tree in range(3):
        one = build({**fixed, **{key: _PER_TREE[key][tree] for key in differentiated}})
        for key in differentiated:
            getattr(one, key).requires_grad_()
        single = TreeLikelihood(alignment, one)(parents[tree : tree + 1], lengths[tree : tree + 1])
        assert float(batched[tree].detach()) == pytest.approx(float(single[0].detach()), rel=1e-12)
        single.sum().backward()
        for key in differentiated:
            np.testing.assert_allclose(
                values[key].grad[tree].numpy(), getattr(one, key).grad.numpy(), rtol=1e-8,
                atol=1e-9, err_msg=key,
            )  # fmt: skip
