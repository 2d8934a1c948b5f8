"""Batched, differentiable Felsenstein pruning likelihood (float64, rescaled).

Legend: B trees, E = 2N-3 edges, C rate categories, P site patterns, 4 states, R partials rows.

Forward (inside pass): for every level of the schedule, all nodes of that height across the
batch are computed at once,

    L_u = (P_e1 L_c1) * (P_e2 L_c2),        rescaled per pattern by its maximum,

written into one preallocated buffer `[R, C, 4, P]` whose first N rows are the shared tip
partials. At the trifurcating root, site likelihoods are sum_c w_c sum_i pi_i L_root[c, i, p]
and log L = sum_p n_p (log site_p + sum of log scale factors).

Backward (outside pass, as BEAGLE computes branch-length gradients): with U_e the vector of
everything outside edge e (u -> v) as a function of u's state, the site likelihood of
category c is U_e^T P_e L_v for every e, so

    d log L / d P_e[c, i, j] = sum_p n_p w_c U_e[c, i, p] L_v[c, j, p] / site_e(p),

where site_e is computed from the same rescaled U_e and L_v, so scale factors cancel. U is
propagated top-down: U_root-child = pi * (product of the other root messages),
U_e(child of u) = (P_eu^T U_eu) * (message of the sibling). The gradient with respect to P
then flows through autograd into branch lengths and model parameters.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from vbpi_mix.phylo.alignment import Alignment
from vbpi_mix.phylo.models import SubstitutionModel
from vbpi_mix.phylo.schedule import Schedule, build_schedule


class Workspace:
    """Reusable kernel buffers, so that repeated calls do not pay for fresh memory.

    Fresh multi-megabyte tensors are page-faulted in on every call (measured: about 6x the
    cost of the arithmetic itself). A workspace keeps the largest buffers seen and hands out
    views. The partials of a forward pass live here until its backward pass, so a forward
    pass invalidates the previous one's backward; `generation` detects that misuse.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        self.generation = 0

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A contiguous `shape` view of buffer `name` (contents undefined)."""
        size = int(np.prod(shape, dtype=np.int64))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != like.dtype:
            buffer = like.new_empty(size)
            self._buffers[name] = buffer
        return buffer[:size].view(shape)


def _rescale_(partials: torch.Tensor) -> torch.Tensor:
    """Divide `[M, C, 4, P]` in place by its per-pattern maximum; return the maxima `[M, P]`."""
    scale = partials.amax(dim=(1, 2)).clamp_min_(torch.finfo(partials.dtype).tiny)
    partials.div_(scale[:, None, None, :])
    return scale


def _messages(
    partials: torch.Tensor,
    transitions: torch.Tensor,
    rows: torch.Tensor,
    edges: torch.Tensor,
    gathered: torch.Tensor,
    out: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Messages P_e L_v `[k, C, 4, P]` for k (row, edge) pairs, computed into workspace `out`;
    also returns the gathered child partials L_v (a view of workspace `gathered`)."""
    k = rows.numel()
    lower = torch.index_select(partials, 0, rows.reshape(-1), out=gathered[:k])
    matrices = transitions.index_select(0, edges.reshape(-1))
    return torch.matmul(matrices, lower, out=out[:k]), lower


class _PruningLikelihood(torch.autograd.Function):
    """log L per tree from transition matrices `[B*E, C, 4, 4]`; see the module docstring."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        transitions: torch.Tensor,
        frequencies: torch.Tensor,
        category_weights: torch.Tensor,
        schedule: Schedule,
        tip_partials: torch.Tensor,
        pattern_weights: torch.Tensor,
        workspace: Workspace,
    ) -> torch.Tensor:
        n_taxa, n_trees = schedule.n_taxa, schedule.n_trees
        n_categories, n_patterns = transitions.shape[1], tip_partials.shape[-1]
        shape = (n_categories, 4, n_patterns)
        workspace.generation += 1
        partials = workspace.take("partials", (schedule.n_rows, *shape), transitions)
        partials[:n_taxa] = tip_partials[:, None]
        log_scale = workspace.take("log_scale", (schedule.n_rows - n_taxa, n_patterns), transitions)
        gathered = workspace.take("gathered", (schedule.max_children, *shape), transitions)
        messages = workspace.take("messages", (schedule.max_children, *shape), transitions)
        for level in schedule.levels:
            m = level.stop - level.start
            level_messages, _ = _messages(
                partials, transitions, level.child_rows, level.child_edges, gathered, messages
            )
            pairs = level_messages.view(m, 2, *shape)
            node = torch.mul(pairs[:, 0], pairs[:, 1], out=partials[level.start : level.stop])
            torch.log(_rescale_(node), out=log_scale[level.start - n_taxa : level.stop - n_taxa])
        root_messages, _ = _messages(
            partials, transitions, schedule.root_child_rows, schedule.root_child_edges,
            gathered, messages,
        )  # fmt: skip
        root = root_messages.view(n_trees, 3, *shape).prod(dim=1)
        site = torch.einsum("c,i,bcip->bp", category_weights, frequencies, root)
        tree_log_scale = site.log().index_add_(0, schedule.row_trees, log_scale)
        ctx.schedule = schedule
        ctx.partials = partials
        ctx.workspace = workspace
        ctx.generation = workspace.generation
        ctx.save_for_backward(transitions, frequencies, category_weights, pattern_weights)
        return tree_log_scale @ pattern_weights

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        transitions, frequencies, category_weights, pattern_weights = ctx.saved_tensors
        schedule: Schedule = ctx.schedule
        partials: torch.Tensor = ctx.partials
        workspace: Workspace = ctx.workspace
        if workspace.generation != ctx.generation:
            raise RuntimeError(
                "likelihood backward after a newer forward pass on the same workspace; "
                "run backward first or give each concurrent graph its own TreeLikelihood"
            )
        n_trees, n_taxa = schedule.n_trees, schedule.n_taxa
        n_categories, n_patterns = transitions.shape[1], partials.shape[-1]
        shape = (n_categories, 4, n_patterns)
        grad_transitions = torch.zeros_like(transitions)
        outside = workspace.take("outside", (schedule.n_rows - n_taxa, *shape), partials)
        gathered = workspace.take("gathered", (schedule.max_children, *shape), partials)
        messages = workspace.take("messages", (schedule.max_children, *shape), partials)
        upper = workspace.take("upper", (schedule.max_children, *shape), partials)
        weight_c = category_weights[:, None, None]

        def accumulate(k, rows, edges, trees, site, lower):
            """Push rescaled D = P^T U down to internal children, then store dlogL/dP_e."""
            flat_rows, flat_edges = rows.reshape(-1), edges.reshape(-1)
            u = upper[:k]
            internal = flat_rows >= n_taxa
            matrices = transitions.index_select(0, flat_edges[internal]).transpose(-1, -2)
            down = torch.matmul(matrices, u[internal])
            _rescale_(down)
            outside.index_copy_(0, flat_rows[internal] - n_taxa, down)
            coefficient = grad_output[trees][:, None] * pattern_weights / site  # [M, P]
            per_child = k // coefficient.shape[0]
            u.view(-1, per_child, *shape).mul_(coefficient[:, None, None, None, :]).mul_(weight_c)
            grad_transitions.index_copy_(0, flat_edges, torch.matmul(u, lower.transpose(-1, -2)))

        # Root stage: three children per tree; U_k = pi * (product of the other two messages).
        rows, edges = schedule.root_child_rows, schedule.root_child_edges
        root_messages, lower = _messages(partials, transitions, rows, edges, gathered, messages)
        triple = root_messages.view(n_trees, 3, *shape)
        others = upper[: 3 * n_trees].view(n_trees, 3, *shape)
        for k, (i, j) in enumerate(((1, 2), (0, 2), (0, 1))):
            torch.mul(triple[:, i], triple[:, j], out=others[:, k])
        root = triple[:, 0] * others[:, 0]
        site = torch.einsum("c,i,bcip->bp", category_weights, frequencies, root)
        coefficient = grad_output[:, None] * pattern_weights / site  # [B, P]
        grad_frequencies = torch.einsum("bp,c,bcip->i", coefficient, category_weights, root)
        grad_category_weights = torch.einsum("bp,i,bcip->c", coefficient, frequencies, root)
        others.mul_(frequencies[:, None])
        accumulate(3 * n_trees, rows, edges, torch.arange(n_trees), site, lower)

        # Levels top-down: U(child 1) = D_u * message(child 2) and vice versa.
        for level in reversed(schedule.levels):
            m = level.stop - level.start
            down = outside[level.start - n_taxa : level.stop - n_taxa]
            level_messages, lower = _messages(
                partials, transitions, level.child_rows, level.child_edges, gathered, messages
            )
            pairs = level_messages.view(m, 2, *shape)
            u = upper[: 2 * m].view(m, 2, *shape)
            torch.mul(down, pairs[:, 1], out=u[:, 0])
            torch.mul(down, pairs[:, 0], out=u[:, 1])
            site = torch.einsum("c,mcip->mp", category_weights, u[:, 0] * pairs[:, 0])
            accumulate(2 * m, level.child_rows, level.child_edges, level.trees, site, lower)
        return grad_transitions, grad_frequencies, grad_category_weights, None, None, None, None


def pruning_log_likelihood(
    schedule: Schedule,
    transitions: torch.Tensor,
    frequencies: torch.Tensor,
    category_weights: torch.Tensor,
    tip_partials: torch.Tensor,
    pattern_weights: torch.Tensor,
    workspace: Workspace | None = None,
) -> torch.Tensor:
    """Log-likelihood `[B]` of the scheduled trees.

    transitions `[B, E, C, 4, 4]` (row i, column j: P(j | i) along edge e of tree b),
    frequencies `[4]`, category_weights `[C]`, tip_partials `[N, 4, P]`, pattern_weights `[P]`.
    Differentiable in transitions, frequencies and category weights. Without a `workspace`
    the call allocates its own buffers.
    """
    flat = transitions.reshape(-1, *transitions.shape[-3:])
    return _PruningLikelihood.apply(
        flat, frequencies, category_weights, schedule, tip_partials, pattern_weights,
        workspace or Workspace(),
    )  # fmt: skip


class TreeLikelihood:
    """log p(y | tau, b) for an alignment and a substitution model, batched over trees.

    Call with parent arrays `[B, 2N-3]` and branch lengths `[..., B, E]`; returns `[..., B]`,
    differentiable in the branch lengths and the model's tensors. Leading dimensions of the
    branch lengths share the B topologies.
    """

    def __init__(self, alignment: Alignment, model: SubstitutionModel) -> None:
        self.alignment = alignment
        self.model = model
        self.tip_partials = alignment.tip_partials()
        self.pattern_weights = alignment.pattern_weights()
        self.workspace = Workspace()

    def __call__(self, parents: np.ndarray, branch_lengths: torch.Tensor) -> torch.Tensor:
        parents = np.asarray(parents).reshape(-1, branch_lengths.shape[-1])
        if parents.shape[0] != branch_lengths.shape[-2]:
            raise ValueError(
                f"{parents.shape[0]} topologies but branch lengths for {branch_lengths.shape[-2]}"
            )
        repeats = int(np.prod(branch_lengths.shape[:-2], dtype=np.int64))
        schedule = build_schedule(np.tile(parents, (repeats, 1)), self.alignment.n_taxa)
        transitions = self.model.transition_matrices(
            branch_lengths.reshape(-1, branch_lengths.shape[-1])
        )
        log_likelihood = pruning_log_likelihood(
            schedule,
            transitions,
            self.model.frequencies,
            self.model.category_weights,
            self.tip_partials,
            self.pattern_weights,
            self.workspace,
        )
        return log_likelihood.view(branch_lengths.shape[:-1])
