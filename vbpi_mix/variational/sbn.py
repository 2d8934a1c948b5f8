"""Subsplit Bayesian network over unrooted topologies (Zhang & Matsen 2018), stacked over A
mixture components.

    q(T_rooted) = q_root(S_root) * prod_v q(child subsplit of v | parent subsplit of v)
    q(tau)      = sum over the 2N-3 rootings of tau of q(T_rooted)

Parameters: one logit per root split `[A, R]` and one per conditional entry `[A, M]`;
probabilities are (masked) softmaxes computed from them when used, never cached. Scoring uses
the gather tables of vbpi_mix.trees.subsplits: one gather, a sum over nodes and a logsumexp
over rootings for the whole batch and every component.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from vbpi_mix.trees.subsplits import SubsplitIndex, TopologyTables, full_set, topology_tables
from vbpi_mix.variational.components import component_rows

SBNInit = Literal["uniform", "counts"]


class SampledTopologies(NamedTuple):
    """Sampled trees as parent arrays `[n, 2N-3]` and their scoring tables."""

    parents: np.ndarray
    tables: TopologyTables


def _with_missing(values: torch.Tensor) -> torch.Tensor:
    """Append a -inf column: index -1 (outside the support) then reads log-probability -inf."""
    pad = values.new_full((*values.shape[:-1], 1), -torch.inf)
    return torch.cat([values, pad], dim=-1)


class SBN(nn.Module):
    """A stacked SBN: `log_prob` scores a batch under every component, `sample` draws from any."""

    def __init__(
        self,
        index: SubsplitIndex,
        n_components: int = 1,
        init: SBNInit = "uniform",
        perturbation: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.index = index
        root = torch.zeros(n_components, index.root_splits.size, dtype=torch.float64)
        entries = torch.zeros(n_components, index.n_entries, dtype=torch.float64)
        if init == "counts":
            root += torch.as_tensor(np.log(index.root_counts))
            entries += torch.as_tensor(np.log(index.entry_counts))
        elif init != "uniform":
            raise ValueError(f"unknown SBN initialisation {init!r}")
        if perturbation:
            root += perturbation * torch.randn(root.shape, generator=generator, dtype=root.dtype)
            entries += perturbation * torch.randn(
                entries.shape, generator=generator, dtype=entries.dtype
            )
        self.root_logits = nn.Parameter(root)
        self.entry_logits = nn.Parameter(entries)
        self.register_buffer("entry_parent", torch.as_tensor(index.entry_parent))
        self.register_buffer("members", torch.as_tensor(index.members))
        self.n_parents = index.members.shape[0]

    @property
    def n_components(self) -> int:
        return self.root_logits.shape[0]

    def root_log_probs(self, components: np.ndarray | None = None) -> torch.Tensor:
        """log q_root `[A, R]` (or of the given components only)."""
        return torch.log_softmax(self.root_logits[component_rows(components)], dim=-1)

    def entry_log_probs(self, components: np.ndarray | None = None) -> torch.Tensor:
        """log q(child | parent) `[A, M]` (or of the given components only): each logit
        against its parent's entries only."""
        logits = self.entry_logits[component_rows(components)]  # [A, M]
        parent = self.entry_parent.expand_as(logits)
        with torch.no_grad():  # any per-family shift c gives the same value and gradient
            shift = torch.full(
                (logits.shape[0], self.n_parents), -torch.inf, dtype=logits.dtype
            ).scatter_reduce(1, parent, logits, "amax")
        shifted = logits - shift[:, self.entry_parent]
        sums = torch.zeros_like(shift).index_add(1, self.entry_parent, shifted.exp())
        return shifted - sums.log()[:, self.entry_parent]

    def tables(self, parents: np.ndarray) -> TopologyTables:
        """Scoring tables for parent arrays `[B, 2N-3]` (component-independent, reusable)."""
        return topology_tables(self.index, parents)

    def log_prob(
        self, topologies: TopologyTables | np.ndarray, components: np.ndarray | None = None
    ) -> torch.Tensor:
        """log q_a(tau) `[A, B]` for every component (or `[len(components), B]` for those
        given); -inf outside the support."""
        tables = topologies if isinstance(topologies, TopologyTables) else self.tables(topologies)
        root = _with_missing(self.root_log_probs(components))[:, torch.as_tensor(tables.root_ids)]
        entry_log_probs = _with_missing(self.entry_log_probs(components))
        entries = entry_log_probs[:, torch.as_tensor(tables.entry_ids)]
        per_rooting = root + entries.sum(dim=-1)  # [A, B, E]
        return torch.logsumexp(per_rooting, dim=-1)

    @torch.no_grad()
    def mixture_log_prob(self, parents: np.ndarray, chunk: int = 2048) -> np.ndarray:
        """log q(tau) = log (1/A) sum_a q_a(tau) of the uniform mixture of the components,
        for parent arrays `[B, 2N-3]` scored `chunk` at a time; -inf outside the support."""
        values = [
            torch.logsumexp(self.log_prob(parents[start : start + chunk]), 0)
            for start in range(0, len(parents), chunk)
        ]
        return torch.cat(values).numpy() - np.log(self.n_components)

    @torch.no_grad()
    def sample(
        self, components: np.ndarray, generator: torch.Generator | None = None
    ) -> SampledTopologies:
        """One unrooted topology per entry of `components` (component indices `[n]`): parent
        arrays `[n, 2N-3]` ready for the likelihood kernel (not in canonical form) and the
        tables that score them under every component.

        Draw a root split, then split every open clade given its parent subsplit, all
        particles' open clades of one depth together; finally forget the root.
        """
        index, n = self.index, self.index.n_taxa
        components = np.asarray(components, dtype=np.int64)
        n_particles = components.size
        particle_ids = np.arange(n_particles)
        full = full_set(n)
        probabilities = torch.softmax(self.root_logits[torch.as_tensor(components)], dim=-1)
        draw = torch.multinomial(probabilities, 1, generator=generator).squeeze(1).numpy()
        west = index.root_splits[draw]
        east = full ^ west
        parents = np.full((n_particles, 2 * n - 2), -1, dtype=np.int64)
        next_id = np.full(n_particles, n, dtype=np.int64)
        owner = np.concatenate([particle_ids, particle_ids])
        clade = np.concatenate([west, east])
        sister = np.concatenate([east, west])
        node = _new_nodes(owner, clade, next_id)
        west_id, east_id = node.reshape(2, -1)
        padded_logits = _with_missing(self.entry_logits)  # [A, M + 1]
        while True:
            internal = np.bitwise_count(clade) > 1
            clade, sister, node, owner = (
                clade[internal],
                sister[internal],
                node[internal],
                owner[internal],
            )
            if clade.size == 0:
                break
            parent = index.parent_ids(clade, sister)
            rows = self.members[torch.as_tensor(parent)]  # [K, W]
            logits = padded_logits[torch.as_tensor(components[owner])[:, None], rows]
            choice = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            entry = rows.gather(1, choice).squeeze(1).numpy()
            side_a = index.entry_child[entry]
            side_b = clade ^ side_a
            ids = _new_nodes(
                np.concatenate([owner, owner]), np.concatenate([side_a, side_b]), next_id
            )
            a_id, b_id = ids.reshape(2, -1)
            parents[owner, a_id] = node
            parents[owner, b_id] = node
            clade = np.concatenate([side_a, side_b])
            sister = np.concatenate([side_b, side_a])
            node = np.concatenate([a_id, b_id])
            owner = np.concatenate([owner, owner])
        # Forget the root: join west and east; the internal one of them becomes node 2N-3.
        west_internal = np.bitwise_count(west) > 1
        root_node = np.where(west_internal, west_id, east_id)
        other = np.where(west_internal, east_id, west_id)
        parents[particle_ids, other] = root_node
        parents = _relabel_root(parents, root_node, 2 * n - 3)
        return SampledTopologies(parents, self.tables(parents))


def _new_nodes(owner: np.ndarray, clades: np.ndarray, next_id: np.ndarray) -> np.ndarray:
    """Node ids for new clades: tips are their taxon; internal nodes take each particle's next
    free ids in order (updates `next_id`)."""
    is_tip = np.bitwise_count(clades) == 1
    ids = np.empty(clades.size, dtype=np.int64)
    ids[is_tip] = np.log2(clades[is_tip].astype(np.float64)).astype(np.int64)
    inner_owner = owner[~is_tip]
    order = np.argsort(inner_owner, kind="stable")
    sorted_owner = inner_owner[order]
    group_start = np.searchsorted(sorted_owner, sorted_owner)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size) - group_start
    ids[~is_tip] = next_id[inner_owner] + rank
    next_id += np.bincount(inner_owner, minlength=next_id.size)
    return ids


def _relabel_root(parents: np.ndarray, root_node: np.ndarray, target: int) -> np.ndarray:
    """Swap node ids `root_node` and `target` per particle and drop the root's (empty) entry:
    `[n, 2N-2]` -> `[n, 2N-3]` with the root at `target`."""
    rows = np.arange(parents.shape[0])
    old = root_node[:, None]
    relabelled = np.where(parents == old, target, np.where(parents == target, old, parents))
    relabelled[rows, root_node] = relabelled[rows, target]
    return relabelled[:, :target]
