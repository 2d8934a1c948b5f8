"""Pareto k-hat (PSIS) against tails of known shape: generalised Pareto samples, where the fit
is also compared with scipy's maximum-likelihood fit, and Pareto-distributed weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from vbpi_mix.inference.psis import (
    generalized_pareto_fit,
    pareto_k_hat,
    pareto_k_verdict,
    tail_length,
)


@pytest.mark.parametrize("shape", [-0.2, 0.3, 0.7, 1.2])
def test_generalized_pareto_fit_recovers_the_shape(shape):
    n = 20_000
    sample = stats.genpareto.rvs(shape, scale=2.0, size=n, random_state=np.random.default_rng(1))
    k, sigma = generalized_pareto_fit(sample)
    # the asymptotic standard deviation of the shape estimate is (1 + k) / sqrt(n)
    assert abs(k - shape) < 4 * (1 + shape) / math.sqrt(n)
    assert sigma == pytest.approx(2.0, rel=0.1)
    mle_shape, _, mle_scale = stats.genpareto.fit(sample, floc=0)
    assert abs(k - mle_shape) < (1 + shape) / math.sqrt(n)


@pytest.mark.parametrize("shape", [0.3, 0.9])
def test_k_hat_of_pareto_weights(shape):
    """w = U^(-k) has a generalised Pareto tail of shape k above any threshold."""
    n = 10_000
    uniform = np.random.default_rng(2).uniform(size=n)
    k_hat = pareto_k_hat(-shape * np.log(uniform) + 123.0)  # any scale of the weights
    m = tail_length(n)
    prior_shift = abs(shape - 0.5) * 10 / (m + 10)  # the weak prior pulls towards 0.5
    assert abs(k_hat - shape) < prior_shift + 4 * (1 + shape) / math.sqrt(m)


def test_k_hat_separates_light_and_heavy_weights():
    rng = np.random.default_rng(3)
    assert pareto_k_hat(rng.normal(0, 0.1, 1000)) < 0.5  # near-exact proposal
    assert pareto_k_hat(rng.normal(0, 3.0, 1000)) > 0.7  # log-normal weights with sd 3
    assert math.isnan(pareto_k_hat(np.zeros(10)))  # too few weights for a tail
    assert pareto_k_hat(rng.normal(0, 500.0, 1000)) == math.inf  # spans beyond float64


def test_verdict_follows_the_papers_bands():
    """k < 0.5 good, 0.5-0.7 usable, above 0.7 unreliable (Vehtari et al. 2024)."""
    verdicts = [pareto_k_verdict(k) for k in (0.2, 0.5, 0.7, 0.71, math.inf, math.nan)]
    assert [v.split(":")[0] for v in verdicts] == [
        "good", "usable", "usable", "unreliable", "unreliable", "not estimable",
    ]  # fmt: skip


def test_flat_tail_is_reliable():
    """Equal weights (a perfect proposal) or weights bounded with their top tied (a proposal
    that covers the target) have a flat tail: k-hat -inf, verdict good, never 'unreliable'."""
    assert pareto_k_hat(np.full(1000, -7.5)) == -math.inf
    bounded = np.minimum(np.random.default_rng(4).normal(0, 1, 1000), 0.0)  # top half tied
    assert pareto_k_hat(bounded) == -math.inf
    assert pareto_k_verdict(-math.inf).startswith("good")


def test_ties_at_the_cut_off_are_not_underflow():
    """Weights tied with the cut-off below a light tail: exceedances of exactly 0, which the
    underflow test once took for a tail spanning beyond float64. The fit uses the others."""
    log_w = -0.3 * np.log(np.random.default_rng(5).uniform(size=1000))
    order = np.argsort(log_w)
    m = tail_length(len(log_w))
    cut_off = log_w[order[-m - 1]]
    log_w[order[-m : -m + m // 2]] = cut_off  # the lower half of the tail tied with it
    k_hat = pareto_k_hat(log_w)
    assert math.isfinite(k_hat) and k_hat < 0.7
