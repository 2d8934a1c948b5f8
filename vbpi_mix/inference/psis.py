"""Pareto k-hat of importance weights (PSIS diagnostic; Vehtari, Simpson, Gelman, Yao & Gabry,
"Pareto smoothed importance sampling", JMLR 2024).

The largest M = min(S/5, 3 sqrt(S)) of S weights are modelled as a generalised Pareto tail
above the (M+1)-th largest weight u:  P(w - u > x | w > u) = (1 + k x / sigma)^(-1/k).
The shape k says how heavy the tail is: k < 0.5 the estimate of log Z has finite variance,
0.5 < k < 0.7 it is usable, k > 0.7 the importance sampling estimate is unreliable.
k and sigma are fitted by the empirical Bayes method of Zhang & Stephens (2009), as in the
paper, then k is shrunk towards 0.5 by a weak prior worth 10 observations.
"""

from __future__ import annotations

import math

import numpy as np

PRIOR_WEIGHT, PRIOR_SHAPE = 10.0, 0.5
GOOD_BELOW, UNRELIABLE_ABOVE = 0.5, 0.7


def pareto_k_verdict(k: float) -> str:
    """What k-hat says about an importance-sampling estimate, in the paper's bands."""
    if math.isnan(k):
        return "not estimable: too few distinct weights in the tail"
    if k == -math.inf:
        return "good: flat tail, the weights are bounded"
    if k < GOOD_BELOW:
        return f"good: below {GOOD_BELOW}"
    if k <= UNRELIABLE_ABOVE:
        return f"usable: {GOOD_BELOW}-{UNRELIABLE_ABOVE}"
    return f"unreliable: above {UNRELIABLE_ABOVE}; train longer or use more particles"


def tail_length(n_weights: int) -> int:
    """M = ceil(min(0.2 S, 3 sqrt(S))), the tail used for the fit."""
    return int(math.ceil(min(0.2 * n_weights, 3.0 * math.sqrt(n_weights))))


def generalized_pareto_fit(exceedances: np.ndarray) -> tuple[float, float]:
    """(k, sigma) of a generalised Pareto distribution fitted to positive `exceedances` by
    Zhang & Stephens (2009). With theta = -k / sigma, the profile log-likelihood is
    l(theta) = n (log(theta / -k(theta)) - k(theta) - 1), k(theta) = mean(log1p(-theta x));
    theta is its posterior mean over m = 30 + sqrt(n) quadrature points
    theta_j = 1/x_(n) + (1 - sqrt(m / (j - 1/2))) / (3 x_(n/4)), and k = k(theta)."""
    x = np.sort(np.asarray(exceedances, dtype=np.float64))
    n = len(x)
    m = 30 + int(math.sqrt(n))
    quartile = x[int(n / 4 + 0.5) - 1]
    grid = 1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))
    theta = 1.0 / x[-1] + grid / (3.0 * quartile)
    k_profile = np.log1p(-theta[:, None] * x[None, :]).mean(axis=1)
    log_likelihood = n * (np.log(-theta / k_profile) - k_profile - 1.0)
    weights = np.exp(log_likelihood - log_likelihood.max())  # posterior over the grid
    weights /= weights.sum()
    theta_hat = float(np.sum(theta * weights))
    k = float(np.log1p(-theta_hat * x).mean())
    return k, -k / theta_hat


def pareto_k_hat(log_weights: np.ndarray) -> float:
    """PSIS k-hat of the weights exp(`log_weights`) (any scale), with the weak prior towards
    0.5. A flat tail (every tail weight equal to the cut-off, as for a perfect proposal) is
    bounded: -inf, reliable. inf when a quarter of the tail lies more than float64's range
    below the largest weight (one weight dominates beyond measure); nan for fewer than 5
    tail weights, or fewer than 5 above the cut-off. Weights tied with the cut-off carry no
    information on the tail's shape: the fit uses those above it."""
    log_w = np.sort(np.asarray(log_weights, dtype=np.float64))
    log_w = log_w[np.isfinite(log_w)]
    m = tail_length(len(log_w))
    if m < 5 or len(log_w) <= m:
        return math.nan
    tail, cut_off = log_w[-m:], log_w[-m - 1]
    if tail[-1] == cut_off:
        return -math.inf
    if tail[m // 4] - tail[-1] < math.log(np.finfo(np.float64).tiny):
        return math.inf
    exceedances = np.exp(tail - tail[-1]) - np.exp(cut_off - tail[-1])
    exceedances = exceedances[exceedances > 0]
    if len(exceedances) < 5:
        return math.nan
    k, _ = generalized_pareto_fit(exceedances)
    return (m * k + PRIOR_WEIGHT * PRIOR_SHAPE) / (m + PRIOR_WEIGHT)
