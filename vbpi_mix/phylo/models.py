"""Reversible nucleotide substitution models (JC69, K80, HKY, GTR) with discrete-Gamma rates.

Subclasses define the exchangeabilities R (symmetric, zero diagonal); the base class builds
Q_ij = R_ij pi_j (i != j), normalises it to one expected substitution per unit branch length
(-sum_i pi_i Q_ii = 1), and computes transition matrices P(t r_c) = exp(Q t r_c) for a tensor
of branch lengths t through the eigendecomposition of the symmetrised matrix
S = D^1/2 Q D^-1/2 (D = diag pi), which is real and stable for reversible Q.

Rate heterogeneity: K discrete Gamma categories of equal weight 1/K, each represented by its
mean rate (Yang 1994), as IQ-TREE and MrBayes do; the rates average to 1.

Every P(t r_c) is differentiable in the exchangeabilities, the frequencies, the branch
lengths and the Gamma shape alpha (vbpi_mix.phylo.matrix_exponentials for exp(S t), whose
gradient stays finite where eigenvalues repeat; `gamma_category_rates` for the rates), so
that these parameters can be inferred with the tree: `with_values` gives a copy of a model
holding one value of its free parameters per particle, whose matrices are computed for all
particles at once.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from scipy import special
from torch import nn
from torch.autograd.function import once_differentiable

from vbpi_mix.choices import MODEL_NAMES, RATE_NAMES, ModelName
from vbpi_mix.errors import VbpiMixError
from vbpi_mix.phylo.matrix_exponentials import symmetric_expm1

if TYPE_CHECKING:
    from vbpi_mix.phylo.alignment import Alignment

N_STATES = 4
_TRANSITIONS = ((0, 2), (1, 3))  # A<->G, C<->T in the state order A, C, G, T
_PAIRS = tuple(("ACGT".index(a), "ACGT".index(b)) for a, b in RATE_NAMES)  # (0, 1), ...
# each model's own free parameters (alpha comes with Gamma categories, whatever the model)
OWN_PARAMETERS: dict[str, tuple[str, ...]] = {
    "JC": (), "K80": ("kappa",), "HKY": ("kappa", "frequencies"), "GTR": ("rates", "frequencies"),
}  # fmt: skip
# the dimensions of one value of each parameter; a model with values per particle has one more
_VALUE_DIMS = {"kappa": 0, "alpha": 0, "rates": 1, "frequencies": 1}


def discrete_gamma_rates(alpha: float, categories: int) -> np.ndarray:
    """Mean rate of each of `categories` equal-probability classes of Gamma(alpha, rate alpha).

    r_k = K [ I(alpha + 1, alpha q_k) - I(alpha + 1, alpha q_{k-1}) ], with q_k the k/K quantile
    of Gamma(alpha, alpha) and I the regularised lower incomplete gamma function (Yang 1994).
    """
    if categories < 1:
        raise VbpiMixError(f"gamma categories must be at least 1; got {categories}")
    if categories == 1:
        return np.ones(1)
    if not alpha > 0:
        raise VbpiMixError(f"gamma shape alpha must be positive; got {alpha}")
    shapes = np.array([[alpha]], dtype=np.float64)
    return _mean_rates(shapes, _scaled_quantiles(shapes, categories), categories)[0]


def _scaled_quantiles(shapes: np.ndarray, categories: int) -> np.ndarray:
    """y_k = alpha q_k `[n, K-1]`, the k/K quantiles of Gamma(alpha, 1), for shapes `[n, 1]`."""
    return special.gammaincinv(shapes, np.arange(1, categories) / categories)


def _mean_rates(shapes: np.ndarray, y: np.ndarray, categories: int) -> np.ndarray:
    """`discrete_gamma_rates` `[n, K]` for shapes `[n, 1]` and their `_scaled_quantiles`."""
    cdf_above = special.gammainc(shapes + 1, y)
    edges = np.zeros((len(shapes), 1))
    return categories * np.diff(np.concatenate([edges, cdf_above, edges + 1], axis=1), axis=1)


# step of the central difference for d I(a, y) / d a, relative to a (error ~ step^2)
_SHAPE_STEP = 1e-5


class _GammaCategoryRates(torch.autograd.Function):
    """`discrete_gamma_rates` as a function of a tensor alpha, with its derivative.

    With y_k = alpha q_k the k/K quantile of Gamma(alpha, 1) and c_k = I(alpha + 1, y_k),
    r_k = K (c_k - c_{k-1}). The quantile is differentiated implicitly: I(alpha, y_k) = k/K
    gives dy_k/dalpha = -I_a(alpha, y_k) / f_alpha(y_k), with f_a(y) = y^(a-1) e^-y / Gamma(a)
    the density (dI/dy) and I_a = dI/da; then dc_k/dalpha = I_a(alpha + 1, y_k) +
    f_(alpha+1)(y_k) dy_k/dalpha. I_a has no closed form: a central difference of scipy's
    gammainc in a (relative error about 1e-10)."""

    @staticmethod
    def forward(ctx, alpha: torch.Tensor, categories: int) -> torch.Tensor:  # type: ignore[override]
        shapes = alpha.detach().numpy().reshape(-1, 1)  # [n, 1]
        y = _scaled_quantiles(shapes, categories)  # [n, K-1]
        rates = _mean_rates(shapes, y, categories)
        if ctx.needs_input_grad[0]:  # the derivative only where alpha is inferred
            dy = -_shape_derivative(shapes, y) / np.exp(_log_density(shapes, y))
            dc = _shape_derivative(shapes + 1, y) + np.exp(_log_density(shapes + 1, y)) * dy
            edges = np.zeros((len(shapes), 1))
            slopes = categories * np.diff(np.concatenate([edges, dc, edges], axis=1), axis=1)
            ctx.save_for_backward(torch.as_tensor(slopes.reshape(*alpha.shape, categories)))
        return torch.as_tensor(rates.reshape(*alpha.shape, categories), dtype=alpha.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, upstream: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (slopes,) = ctx.saved_tensors
        return (upstream * slopes).sum(dim=-1), None


def _log_density(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log f_a(y) = (a - 1) log y - y - log Gamma(a), the derivative of I(a, y) in y."""
    return (a - 1) * np.log(y) - y - special.gammaln(a)


def _shape_derivative(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d I(a, y) / d a by a central difference."""
    step = _SHAPE_STEP * np.maximum(1.0, a)
    return (special.gammainc(a + step, y) - special.gammainc(a - step, y)) / (2 * step)


def gamma_category_rates(alpha: torch.Tensor, categories: int) -> torch.Tensor:
    """The mean rates `[..., K]` of K discrete Gamma categories (`discrete_gamma_rates`) for
    shapes alpha `[...]` (a scalar, or one per particle), differentiable in alpha; ones for
    K = 1."""
    if categories == 1:
        return torch.ones(*alpha.shape, 1, dtype=torch.float64)
    if not bool((alpha.detach() > 0).all()):
        raise VbpiMixError(f"gamma shape alpha must be positive; got {alpha.detach().min()}")
    return _GammaCategoryRates.apply(alpha, categories)


class SubstitutionModel(nn.Module):
    """Base of the reversible models: frequencies, Gamma categories, Q, P(t).

    Parameters are float64 tensors (buffers for now, so that a later step can make them
    learnable by turning them into parameters).
    """

    def __init__(
        self,
        frequencies: torch.Tensor | None = None,
        gamma_categories: int = 1,
        alpha: float | None = None,
    ) -> None:
        super().__init__()
        if frequencies is None:
            frequencies = torch.full((N_STATES,), 1.0 / N_STATES, dtype=torch.float64)
        frequencies = torch.as_tensor(frequencies, dtype=torch.float64)
        if frequencies.shape != (N_STATES,) or (frequencies <= 0).any():
            raise VbpiMixError("base frequencies must be four positive numbers (A, C, G, T)")
        self.register_buffer("frequencies", frequencies / frequencies.sum())
        if gamma_categories < 1:
            raise VbpiMixError(f"gamma categories must be at least 1; got {gamma_categories}")
        if gamma_categories > 1 and alpha is None:
            raise VbpiMixError("--gamma-categories above 1 needs a shape --alpha")
        self.gamma_categories = gamma_categories
        if gamma_categories > 1 and not alpha > 0:
            raise VbpiMixError(f"gamma shape alpha must be positive; got {alpha}")
        shape = 1.0 if alpha is None else float(alpha)
        self.register_buffer("alpha", torch.tensor(shape, dtype=torch.float64))
        self.register_buffer(
            "category_weights",
            torch.full((gamma_categories,), 1.0 / gamma_categories, dtype=torch.float64),
        )

    def parameter_values(self) -> dict[str, float | list[float]]:
        """The model's values as a summary reports them: base frequencies (A, C, G, T), the
        Gamma shape when there are Gamma categories, and the subclass's own (kappa, rates)."""
        values: dict[str, float | list[float]] = {"frequencies": self.frequencies.detach().tolist()}
        if self.gamma_categories > 1:
            values["alpha"] = float(self.alpha.detach())
        return values

    @property
    def category_rates(self) -> torch.Tensor:
        """The mean rates `[C]` (`[n, C]` with an alpha per particle) of the Gamma
        categories, differentiable in alpha."""
        return gamma_category_rates(self.alpha, self.gamma_categories)

    name: ModelName  # each subclass's, the key of OWN_PARAMETERS

    def free_parameters(self) -> tuple[str, ...]:
        """The names of the model's tensors that can be inferred with the tree (`with_values`):
        its own (OWN_PARAMETERS), and alpha with Gamma categories."""
        gamma = ("alpha",) if self.gamma_categories > 1 else ()
        return OWN_PARAMETERS[self.name] + gamma

    def with_values(self, values: dict[str, torch.Tensor]) -> SubstitutionModel:
        """A copy of this model with some of its free parameters replaced, one value per
        particle: `values[name]` is `[n]` (kappa, alpha) or `[n, 6]`, `[n, 4]` (rates and
        frequencies, the frequencies summing to 1). Its transition matrices then take branch
        lengths `[n, E]`, particle p's under values[..][p] (`transition_matrices`)."""
        unknown = set(values) - set(self.free_parameters())
        if unknown:
            raise ValueError(f"{type(self).__name__} has no free parameter {sorted(unknown)}")
        model = copy.deepcopy(self)
        for name, value in values.items():
            setattr(model, name, value)
        return model

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """`()` for one set of values, `(n,)` for a model with values per particle."""
        for name, dims in _VALUE_DIMS.items():
            value = getattr(self, name, None)
            if value is not None and value.dim() > dims:
                return tuple(value.shape[: value.dim() - dims])
        return ()

    @property
    def per_particle(self) -> bool:
        """Whether the model holds one set of values per particle (`with_values`)."""
        return bool(self.batch_shape)

    def exchangeabilities(self) -> torch.Tensor:
        """Symmetric exchangeability matrices R `[..., 4, 4]` with zero diagonal."""
        raise NotImplementedError

    def rate_matrix(self) -> torch.Tensor:
        """Normalised instantaneous rate matrices Q `[..., 4, 4]`: rows sum to 0,
        -sum pi_i Q_ii = 1."""
        frequencies = self.frequencies
        off_diagonal = self.exchangeabilities() * frequencies[..., None, :]
        q = off_diagonal - torch.diag_embed(off_diagonal.sum(dim=-1))
        rate = -(frequencies * torch.diagonal(q, dim1=-2, dim2=-1)).sum(dim=-1)
        return q / rate[..., None, None]

    def _scaled_times(self, branch_lengths: torch.Tensor) -> torch.Tensor:
        """t r_c `[..., C]` for branch lengths `[...]`, or `[n, E, C]` for `[n, E]` when
        each particle has its own alpha."""
        rates = self.category_rates
        if rates.dim() > 1:
            return branch_lengths[..., None] * rates[:, None, :]
        return branch_lengths[..., None] * rates

    def transition_matrices(self, branch_lengths: torch.Tensor) -> torch.Tensor:
        """P(t r_c) for branch lengths `[...]`: shape `[..., C, 4, 4]` (C rate categories);
        for a model with values per particle, branch lengths `[n, E]`, shape `[n, E, C, 4, 4]`."""
        frequencies = self.frequencies.expand(*self.batch_shape, N_STATES)
        root_pi = frequencies.sqrt()
        symmetric = root_pi[..., :, None] * self.rate_matrix() / root_pi[..., None, :]
        symmetric = 0.5 * (symmetric + symmetric.transpose(-1, -2))
        scaled_time = self._scaled_times(branch_lengths)
        if not self.per_particle:
            symmetric, scaled_time = symmetric[None], scaled_time[None]
            root_pi = root_pi[None]
        # P = I + D^-1/2 (exp(S t) - I) D^1/2; expm1 keeps the O(t) off-diagonal entries of
        # short branches accurate, where exp would cancel against 1 and lose digits.
        increments = symmetric_expm1(symmetric, scaled_time)  # [n, ..., 4, 4]
        extra = (None,) * (scaled_time.dim() - 1)
        root_pi = root_pi[(slice(None), *extra)]
        matrices = torch.eye(N_STATES, dtype=increments.dtype) + (
            increments / root_pi[..., :, None] * root_pi[..., None, :]
        )
        return matrices if self.per_particle else matrices[0]

    def is_jukes_cantor(self) -> bool:
        """Whether Q is JC69's (equal exchangeabilities and frequencies, neither needing a
        gradient nor given per particle), so that every P(t) is a I + b J
        (`jukes_cantor_coefficients`)."""
        exchangeabilities = self.exchangeabilities()
        if exchangeabilities.dim() > 2 or self.frequencies.dim() > 1:
            return False
        off_diagonal = exchangeabilities[~torch.eye(N_STATES, dtype=torch.bool)]
        return (
            not (self.frequencies.requires_grad or exchangeabilities.requires_grad)
            and bool((self.frequencies == 1.0 / N_STATES).all())
            and bool((off_diagonal == off_diagonal[0]).all())
        )

    def jukes_cantor_coefficients(self, branch_lengths: torch.Tensor) -> torch.Tensor:
        """(a, b) of P(t r_c) = a I + b J under JC69, `[..., C, 2]` for branch lengths
        `[...]` (`[n, E]` with an alpha per particle): a = exp(-4/3 t r_c), b = (1 - a) / 4
        (through expm1, accurate for short branches). Only for models where
        `is_jukes_cantor()` holds."""
        exponent = -4.0 / 3.0 * self._scaled_times(branch_lengths)  # [..., C]
        return torch.stack([torch.exp(exponent), -0.25 * torch.expm1(exponent)], dim=-1)


class GTR(SubstitutionModel):
    """General time-reversible model; `rates` are the exchangeabilities AC, AG, AT, CG, CT, GT."""

    name = "GTR"

    def __init__(
        self,
        rates: torch.Tensor | None = None,
        frequencies: torch.Tensor | None = None,
        gamma_categories: int = 1,
        alpha: float | None = None,
    ) -> None:
        super().__init__(frequencies, gamma_categories, alpha)
        rates = torch.ones(6) if rates is None else rates
        rates = torch.as_tensor(rates, dtype=torch.float64).clone()  # not the caller's tensor
        if rates.shape != (6,) or (rates <= 0).any():
            raise VbpiMixError("GTR needs six positive exchangeabilities AC,AG,AT,CG,CT,GT")
        self.register_buffer("rates", rates)

    def parameter_values(self) -> dict[str, float | list[float]]:
        return {**super().parameter_values(), "rates": self.rates.detach().tolist()}

    def exchangeabilities(self) -> torch.Tensor:
        matrix = self.rates.new_zeros(*self.rates.shape[:-1], N_STATES, N_STATES)
        rows, cols = zip(*_PAIRS, strict=True)
        matrix[..., rows, cols] = self.rates
        return matrix + matrix.transpose(-1, -2)


class HKY(SubstitutionModel):
    """Hasegawa-Kishino-Yano 1985: transitions at kappa times the transversion rate."""

    name = "HKY"

    def __init__(
        self,
        kappa: float = 2.0,
        frequencies: torch.Tensor | None = None,
        gamma_categories: int = 1,
        alpha: float | None = None,
    ) -> None:
        super().__init__(frequencies, gamma_categories, alpha)
        if not kappa > 0:
            raise VbpiMixError(f"kappa must be positive; got {kappa}")
        self.register_buffer("kappa", torch.tensor(float(kappa), dtype=torch.float64))

    def parameter_values(self) -> dict[str, float | list[float]]:
        return {**super().parameter_values(), "kappa": float(self.kappa.detach())}

    def exchangeabilities(self) -> torch.Tensor:
        transition = torch.zeros(N_STATES, N_STATES, dtype=torch.float64)
        for i, j in _TRANSITIONS:
            transition[i, j] = transition[j, i] = 1.0
        transversion = 1.0 - transition - torch.eye(N_STATES, dtype=torch.float64)
        return transversion + self.kappa[..., None, None] * transition


class K80(HKY):
    """Kimura 1980: HKY with equal base frequencies."""

    name = "K80"

    def __init__(self, kappa: float = 2.0, gamma_categories: int = 1, alpha: float | None = None):
        super().__init__(kappa, None, gamma_categories, alpha)


class JC69(GTR):
    """Jukes-Cantor 1969: equal exchangeabilities and frequencies."""

    name = "JC"

    def __init__(self, gamma_categories: int = 1, alpha: float | None = None) -> None:
        super().__init__(None, None, gamma_categories, alpha)


def build_model(
    name: ModelName,
    kappa: float | None = None,
    frequencies: list[float] | Literal["empirical"] | None = None,
    rates: list[float] | None = None,
    gamma_categories: int = 1,
    alpha: float | None = None,
    alignment: Alignment | None = None,
) -> SubstitutionModel:
    """Construct a model by name from command-line style values; `frequencies="empirical"`
    counts them from `alignment` (Alignment.empirical_frequencies, IQ-TREE's +F). Values not
    given take the defaults: kappa 2, equal frequencies and exchangeabilities."""
    kappa = 2.0 if kappa is None else kappa
    if frequencies == "empirical":
        if alignment is None:
            raise ValueError("empirical frequencies need the alignment")
        frequencies = alignment.empirical_frequencies()
    freqs = None if frequencies is None else torch.tensor(frequencies, dtype=torch.float64)
    if name == "JC":
        return JC69(gamma_categories, alpha)
    if name == "K80":
        return K80(kappa, gamma_categories, alpha)
    if name == "HKY":
        return HKY(kappa, freqs, gamma_categories, alpha)
    if name == "GTR":
        exchange = None if rates is None else torch.tensor(rates, dtype=torch.float64)
        return GTR(exchange, freqs, gamma_categories, alpha)
    raise VbpiMixError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
