"""Batched, differentiable Felsenstein pruning likelihood (float64, rescaled).

Legend: B trees, E = 2N-3 edges, C rate categories, P site patterns, 4 states.

Likelihood (inside pass), for each tree its nodes children first (see
vbpi_mix.phylo.schedule):

    L_u = (P_e1 L_c1) * (P_e2 L_c2),        rescaled per pattern by its maximum
                                            when a pattern leaves [2^-256, 2^256].

At the trifurcating root, site_p = sum_c w_c sum_i pi_i prod_k (P_ek L_k)[c, i, p] and
log L = sum_p n_p (log site_p + sum of the log scale factors of the tree's nodes).

Gradient (outside pass, as BEAGLE computes branch-length gradients): with U_e the vector of
everything outside edge e (u -> v) as a function of u's state, the site likelihood of
category c is U_e^T P_e L_v for every e, so

    d log L / d P_e[c, i, j] = sum_p n_p w_c U_e[c, i, p] L_v[c, j, p] / site_e(p),

with site_e computed from the same rescaled U_e and L_v, so the scale factors cancel. U is
propagated top-down: U(root child k) = pi * (product of the other two root messages),
U(child of u) = D_u * (message of the sibling), D_u = P_eu^T U_eu.

Each tree's gradient is computed in the forward call, right after its likelihood, while its
vectors are still in cache (when autograd will need it); the backward only multiplies it by
the upstream gradient d(loss)/d log L_b. Keeping every tree's vectors for a later backward
pass instead (walking all trees level by level) would make the kernel memory-bound (tens of
megabytes of vectors for a hundred trees).
The outside vector D of a node is written over its inside vector, which no later step needs.
The gradient with respect to the transition matrices then flows through autograd into branch
lengths and model parameters. The per-node loops are compiled
(vbpi_mix.phylo.pruning_kernels). Under JC69 (`SubstitutionModel.is_jukes_cantor`) each
matrix is passed as the pair (a, b) of P = a I + b J and cheaper loops run
(vbpi_mix.phylo.jukes_cantor_kernels), with the same values. On an NVIDIA GPU the
same quantities come from vbpi_mix.phylo.cuda_pruning (`TreeLikelihood(..., device="cuda")`):
the kernel is chosen by the workspace handed to `pruning_log_likelihood`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np
import torch
from torch.autograd.function import once_differentiable

from vbpi_mix.choices import LikelihoodDevice
from vbpi_mix.errors import VbpiMixError
from vbpi_mix.phylo import pruning_kernels as kernels
from vbpi_mix.phylo.alignment import Alignment
from vbpi_mix.phylo.models import SubstitutionModel
from vbpi_mix.phylo.pattern_loops import RESCALE_RANGE
from vbpi_mix.phylo.schedule import Schedule, build_schedule

if TYPE_CHECKING:
    from vbpi_mix.phylo.cuda_pruning import CudaWorkspace


class Workspace:
    """The CPU kernel's reusable buffers and its call (`log_likelihoods`); the GPU counterpart
    is vbpi_mix.phylo.cuda_pruning.CudaWorkspace. Buffers are reused so that repeated calls do
    not pay for fresh memory.

    Fresh multi-megabyte arrays are page-faulted in on every call, which costs more than the
    arithmetic. A workspace keeps the largest buffers seen and hands out
    views; their contents do not outlive a call.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A C-contiguous float64 `shape` view of buffer `name` (contents undefined)."""
        size = int(np.prod(shape, dtype=np.int64))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = np.empty(size)
            self._buffers[name] = buffer
        return buffer[:size].reshape(shape)

    def log_likelihoods(
        self,
        schedule: Schedule,
        matrices: np.ndarray,
        frequencies: np.ndarray,
        category_weights: np.ndarray,
        tip_partials: torch.Tensor,
        pattern_weights: torch.Tensor,
        with_gradient: bool,
        rescale_range: tuple[float, float] = RESCALE_RANGE,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(log L `[B]`, d log L_b / d matrices (their shape), d / d pi `[B, 4]`, d / d w
        `[B, C]`) by the compiled CPU kernel (vbpi_mix.phylo.pruning_kernels); without a
        gradient the three gradients are empty. `rescale_range` is for tests."""
        n_taxa, n_trees = schedule.n_taxa, schedule.n_trees
        n_categories, n_patterns = matrices.shape[1], tip_partials.shape[-1]
        tips = self.take("tips", (n_taxa, n_categories, 4, n_patterns))
        tips[:] = _as_array(tip_partials)[:, None]
        n_blocks = max(1, min(numba.get_num_threads(), n_trees))
        scratch = self.take("scratch", (n_blocks, n_taxa - 3, n_categories, 4, n_patterns))
        log_likelihood = np.empty(n_trees)
        grad_matrices = np.zeros_like(matrices) if with_gradient else matrices[:0]
        grad_frequencies = np.zeros((n_trees if with_gradient else 0, 4))
        grad_weights = np.zeros((n_trees if with_gradient else 0, n_categories))
        kernels.log_likelihoods(
            tips, scratch, matrices, schedule.child_rows, schedule.child_edges,
            schedule.root_child_rows, schedule.root_child_edges, frequencies, category_weights,
            _as_array(pattern_weights), log_likelihood, with_gradient, grad_matrices,
            grad_frequencies, grad_weights, rescale_range,
        )  # fmt: skip
        return log_likelihood, grad_matrices, grad_frequencies, grad_weights


def _as_array(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float64)


class _PruningLikelihood(torch.autograd.Function):
    """log L per tree from transition matrices `[B*E, C, 4, 4]` (or Jukes-Cantor pairs
    `[B*E, C, 2]`); see the module docstring."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        transitions: torch.Tensor,
        frequencies: torch.Tensor,
        category_weights: torch.Tensor,
        schedule: Schedule,
        tip_partials: torch.Tensor,
        pattern_weights: torch.Tensor,
        workspace: Workspace | CudaWorkspace,
        with_gradient: bool,
    ) -> torch.Tensor:
        log_likelihood, *gradients = workspace.log_likelihoods(
            schedule, _as_array(transitions), _as_array(frequencies),
            _as_array(category_weights), tip_partials, pattern_weights, with_gradient,
        )  # fmt: skip
        dtype = transitions.dtype
        ctx.gradients = tuple(torch.as_tensor(array, dtype=dtype) for array in gradients)
        return torch.as_tensor(log_likelihood, dtype=dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        per_tree_transitions, per_tree_frequencies, per_tree_weights = ctx.gradients
        grad_transitions = (
            per_tree_transitions.view(grad_output.shape[0], -1) * grad_output[:, None]
        )
        return (
            grad_transitions.view_as(per_tree_transitions),
            grad_output @ per_tree_frequencies,
            grad_output @ per_tree_weights,
            None, None, None, None, None,
        )  # fmt: skip


def pruning_log_likelihood(
    schedule: Schedule,
    transitions: torch.Tensor,
    frequencies: torch.Tensor,
    category_weights: torch.Tensor,
    tip_partials: torch.Tensor,
    pattern_weights: torch.Tensor,
    workspace: Workspace | CudaWorkspace | None = None,
) -> torch.Tensor:
    """Log-likelihood `[B]` of the scheduled trees.

    transitions `[B, E, C, 4, 4]` (row i, column j: P(j | i) along edge e of tree b) or, for
    Jukes-Cantor, `[B, E, C, 2]`: the pair (a, b) of P = a I + b J (cheaper loops,
    vbpi_mix.phylo.jukes_cantor_kernels); frequencies `[4]`, category_weights `[C]`,
    tip_partials `[N, 4, P]`, pattern_weights `[P]`. Differentiable in transitions,
    frequencies and category weights. The workspace picks the kernel: a `Workspace` runs the
    CPU kernel, a `CudaWorkspace` the GPU one (vbpi_mix.phylo.cuda_pruning). Without a
    `workspace` the call runs on the CPU with buffers of its own.
    """
    flat = transitions.flatten(0, 1)
    differentiable = (flat, frequencies, category_weights)
    with_gradient = torch.is_grad_enabled() and any(t.requires_grad for t in differentiable)
    return _PruningLikelihood.apply(
        *differentiable, schedule, tip_partials, pattern_weights, workspace or Workspace(),
        with_gradient,
    )  # fmt: skip


class TreeLikelihood:
    """log p(y | tau, b) for an alignment and a substitution model, batched over trees.

    Call with parent arrays `[B, 2N-3]` and branch lengths `[..., B, E]`; returns `[..., B]`,
    differentiable in the branch lengths and the model's tensors. Leading dimensions of the
    branch lengths share the B topologies. With `device="cuda"` the pruning runs on an
    NVIDIA GPU (vbpi_mix.phylo.cuda_pruning), everything else, tensors included, stays on
    the CPU.
    """

    def __init__(
        self, alignment: Alignment, model: SubstitutionModel, device: LikelihoodDevice = "cpu"
    ) -> None:
        self.alignment = alignment
        self.model = model
        self.tip_partials = alignment.tip_partials()
        self.pattern_weights = alignment.pattern_weights()
        self.workspace: Workspace | CudaWorkspace
        if device == "cuda":
            try:
                from vbpi_mix.phylo.cuda_pruning import CudaWorkspace  # imports numba.cuda
            except ImportError as error:
                raise VbpiMixError(
                    f"--likelihood-device cuda needs numba's CUDA target (pip install "
                    f"numba-cuda): {error}"
                ) from error
            self.workspace = CudaWorkspace()
        else:
            self.workspace = Workspace()
        self.jukes_cantor = model.is_jukes_cantor()

    def __call__(
        self,
        parents: np.ndarray,
        branch_lengths: torch.Tensor,
        values: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """log L `[..., B]`; with `values`, one value of some of the model's free parameters
        per tree (SubstitutionModel.with_values: kappa `[B]`, frequencies `[B, 4]`, ...),
        differentiable in them; branch lengths are then `[B, E]`."""
        parents = np.asarray(parents).reshape(-1, branch_lengths.shape[-1])
        if parents.shape[0] != branch_lengths.shape[-2]:
            raise ValueError(
                f"{parents.shape[0]} topologies but branch lengths for {branch_lengths.shape[-2]}"
            )
        repeats = int(np.prod(branch_lengths.shape[:-2], dtype=np.int64))
        if values and repeats > 1:
            raise ValueError("values per tree need branch lengths [B, E]")
        model = self.model.with_values(values) if values else self.model
        n_taxa = self.alignment.n_taxa
        schedule = build_schedule(np.tile(parents, (repeats, 1)), n_taxa)
        lengths = branch_lengths.reshape(-1, branch_lengths.shape[-1])
        jukes_cantor = model.is_jukes_cantor() if values else self.jukes_cantor
        transitions = (
            model.jukes_cantor_coefficients(lengths)
            if jukes_cantor
            else model.transition_matrices(lengths)
        )
        frequencies = model.frequencies
        if frequencies.dim() > 1:
            transitions = _fold_frequencies(transitions, frequencies, schedule)
            frequencies = torch.ones(4, dtype=torch.float64)
        log_likelihood = pruning_log_likelihood(
            schedule,
            transitions,
            frequencies,
            model.category_weights,
            self.tip_partials,
            self.pattern_weights,
            self.workspace,
        )
        return log_likelihood.view(branch_lengths.shape[:-1])


def _fold_frequencies(
    transitions: torch.Tensor, frequencies: torch.Tensor, schedule: Schedule
) -> torch.Tensor:
    """Per-tree base frequencies `[B, 4]` moved into the matrices `[B, E, C, 4, 4]`, for the
    kernel, which takes one frequency vector: the root's site likelihood
    sum_i pi_i prod_k (P_ek L_k)_i is unchanged when row i of the first root child's matrix
    is multiplied by pi_i and the kernel is given pi = 1; gradients reach pi through the
    product."""
    n_trees, n_edges = transitions.shape[:2]
    factors = torch.ones(n_trees * n_edges, 1, 4, 1, dtype=transitions.dtype)
    factors[torch.as_tensor(schedule.root_child_edges[:, 0])] = frequencies[:, None, :, None]
    return (transitions.flatten(0, 1) * factors).view_as(transitions)
