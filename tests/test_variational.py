"""SBN, branch-length model, priors and golden KL, checked by exact enumeration, sampling
frequencies, torch.distributions and closed forms."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats

from tests.oracles import branch_log_prob, entry_log_probs
from vbpi_mix.inference.golden import kl_from_golden
from vbpi_mix.io.newick import parse_newick
from vbpi_mix.phylo.priors import log_branch_prior, log_topology_prior
from vbpi_mix.trees.random_tree import all_parents, random_parents
from vbpi_mix.trees.subsplits import build_subsplit_index, topology_tables
from vbpi_mix.trees.topology import reroot, topology_from_parents, topology_from_parsed
from vbpi_mix.variational.branch_lengths import MEAN_SHIFT, BranchLengthModel, edge_features
from vbpi_mix.variational.family_softmax import read_entry_log_probs
from vbpi_mix.variational.read_entries import read_entries
from vbpi_mix.variational.rooting_sums import rooting_log_sum
from vbpi_mix.variational.sbn import SBN

TAXA = tuple("abcdefgh")


def enumerated(n_taxa: int) -> np.ndarray:
    return np.stack(list(all_parents(n_taxa)))


def full_support_sbn(n_taxa: int, components: int = 2, seed: int = 0, init="uniform") -> SBN:
    parents = enumerated(n_taxa)
    index = build_subsplit_index(parents, np.ones(len(parents)), n_taxa)
    generator = torch.Generator().manual_seed(seed)
    return SBN(index, components, init=init, perturbation=1.0, generator=generator)


@pytest.mark.parametrize("n_taxa", [5, 6])
def test_probabilities_over_all_unrooted_topologies_sum_to_one(n_taxa):
    sbn = full_support_sbn(n_taxa, components=3)
    log_q = sbn.log_prob(enumerated(n_taxa))
    assert log_q.shape == (3, math.prod(range(1, 2 * n_taxa - 4, 2)))
    torch.testing.assert_close(
        log_q.exp().sum(dim=1), torch.ones(3, dtype=torch.float64), atol=1e-10, rtol=0
    )


@pytest.mark.parametrize("n_taxa", [5, 6])
def test_sampling_frequencies_match_probabilities(n_taxa):
    sbn = full_support_sbn(n_taxa, components=2, seed=3)
    parents = enumerated(n_taxa)
    topologies = [topology_from_parents(p, TAXA[:n_taxa]) for p in parents]
    probabilities = sbn.log_prob(parents)[1].exp().detach().numpy()
    draws = sbn.sample(np.ones(100_000, dtype=np.int64), torch.Generator().manual_seed(4)).parents
    counts = Counter(topology_from_parents(p, TAXA[:n_taxa]) for p in draws)
    observed = np.array([counts[t] for t in topologies])
    assert observed.sum() == 100_000
    # chi-square against the exact probabilities; a wrong sampler fails with p ~ 0
    assert stats.chisquare(observed, probabilities * 100_000).pvalue > 1e-3


def test_sampling_is_unchanged_by_logits_far_below_zero():
    """Draws come from each family's softmax: shifting every logit by -1000 (a shift per
    family leaves q unchanged) must give the same draws, not underflowed weights."""
    sbn = full_support_sbn(6, components=2, seed=3)
    components = np.tile([0, 1], 500)
    before = sbn.sample(components, torch.Generator().manual_seed(4)).parents
    with torch.no_grad():
        sbn.entry_logits -= 1000.0
    after = sbn.sample(components, torch.Generator().manual_seed(4)).parents
    np.testing.assert_array_equal(after, before)


@pytest.mark.parametrize("n_taxa", [64, 65, 130])
def test_a_one_tree_support_samples_only_its_tree_at_one_and_more_clade_words(n_taxa):
    """64 taxa fill one clade word (DS8), 65 and 130 need two or three: a one-tree support
    samples only that tree, with log-probability 0."""
    taxa = tuple(f"t{i}" for i in range(n_taxa))
    tree = random_parents(n_taxa, np.random.default_rng(11))
    sbn = SBN(build_subsplit_index(tree[None], np.ones(1), n_taxa), 2)
    draws = sbn.sample(np.array([0, 1, 1]), torch.Generator().manual_seed(12))
    expected = topology_from_parents(tree, taxa)
    assert all(topology_from_parents(p, taxa) == expected for p in draws.parents)
    torch.testing.assert_close(sbn.log_prob(draws.tables), torch.zeros(2, 3, dtype=torch.float64))


def test_log_prob_of_sample_equals_log_prob_of_its_newick():
    sbn = full_support_sbn(6, components=1, seed=5)
    sampled = sbn.sample(np.zeros(20, dtype=np.int64), torch.Generator().manual_seed(6))
    reread = []
    for parents in sampled.parents:
        newick = topology_from_parents(parents, TAXA[:6]).newick()
        reread.append(topology_from_parsed(parse_newick(newick), TAXA[:6], "x")[0].parents)
    torch.testing.assert_close(sbn.log_prob(sampled.tables), sbn.log_prob(np.stack(reread)))


def test_log_prob_is_invariant_to_the_encoding_root():
    sbn = full_support_sbn(6, components=2, seed=7)
    parents = enumerated(6)[17]
    rerooted = [reroot(parents, np.ones(9), node)[0] for node in range(6, 10)]
    values = sbn.log_prob(np.stack(rerooted))
    torch.testing.assert_close(values, values[:, :1].expand_as(values))


@pytest.mark.parametrize("far_below", [0.0, 1000.0])
def test_entry_log_probs_are_a_log_softmax_within_each_family(far_below):
    """Against a per-family log_softmax, also when one family's logits lie 1000 nats below
    the largest of their component (a shift shared by the whole row would underflow there)."""
    sbn = full_support_sbn(6, components=2, seed=3)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        sbn.entry_logits.copy_(3 * torch.randn(sbn.entry_logits.shape, generator=generator))
        parent = torch.as_tensor(sbn.index.entry_parent)
        sizes = torch.bincount(parent)
        family = int(torch.nonzero(sizes > 1)[0])
        sbn.entry_logits[:, parent == family] -= far_below
    values = entry_log_probs(sbn)
    assert torch.isfinite(values).all()
    for f in range(int(parent.max()) + 1):
        members = parent == f
        expected = torch.log_softmax(sbn.entry_logits[:, members].detach(), dim=1)
        torch.testing.assert_close(values[:, members].detach(), expected)


@pytest.mark.parametrize("far_below", [0.0, 1000.0])
def test_scoring_with_only_the_families_read_matches_the_full_normalisation(far_below):
    """log_prob normalises only the families its batch reads: values and gradients as
    scoring with every family normalised (also with a family 1000 nats below the rest), zero
    gradient for the logits of families not read, and the read lists point at the entries."""
    sbn = full_support_sbn(7, components=3, seed=13)
    generator = torch.Generator().manual_seed(14)
    with torch.no_grad():
        sbn.entry_logits.copy_(3 * torch.randn(sbn.entry_logits.shape, generator=generator))
        sbn.entry_logits[:, torch.as_tensor(sbn.index.entry_parent == 0)] -= far_below
    tables = sbn.tables(enumerated(7)[::40])
    read = read_entries(tables.candidate_ids, sbn.index.entry_parent, sbn.index.members)
    ids = tables.candidate_ids[tables.candidate_ids >= 0]
    np.testing.assert_array_equal(
        read.members[read.entry_slot[read.remapped[tables.candidate_ids >= 0]]], ids
    )
    families = np.unique(sbn.index.entry_parent[ids])
    expected_members = np.flatnonzero(np.isin(sbn.index.entry_parent, families))
    np.testing.assert_array_equal(np.sort(read.members), expected_members)
    assert 0 < expected_members.size < sbn.index.n_entries  # some families are not read

    weights = torch.randn((3, len(tables.root_ids)), generator=generator, dtype=torch.float64)
    parameters = (sbn.root_logits, sbn.entry_logits)
    values = sbn.log_prob(tables)
    gradients = torch.autograd.grad((weights * values).sum(), parameters)
    expected = rooting_log_sum(
        sbn.root_log_probs(), entry_log_probs(sbn), tables, tables.candidate_ids
    )
    expected_gradients = torch.autograd.grad((weights * expected).sum(), parameters)
    torch.testing.assert_close(values, expected)
    for gradient, reference in zip(gradients, expected_gradients, strict=True):
        torch.testing.assert_close(gradient, reference)
    unread = ~np.isin(np.arange(sbn.index.n_entries), expected_members)
    assert (gradients[1][:, torch.as_tensor(unread)] == 0).all()


def test_read_entry_log_probs_gradient_matches_finite_differences():
    """The compiled family normalisation's backward against central differences
    (torch.autograd.gradcheck), on logits where one family lies 1000 nats below the rest."""
    sbn = full_support_sbn(6, components=2, seed=21)
    tables = sbn.tables(enumerated(6)[::9])
    read = read_entries(tables.candidate_ids, sbn.index.entry_parent, sbn.index.members)
    generator = torch.Generator().manual_seed(22)
    logits = 2 * torch.randn(sbn.entry_logits.shape, generator=generator, dtype=torch.float64)
    logits[
        :, torch.as_tensor(sbn.index.entry_parent == sbn.index.entry_parent[read.members[0]])
    ] -= 1000
    assert read.family_starts[-1] == read.members.size
    torch.autograd.gradcheck(
        lambda x: read_entry_log_probs(x, read), (logits.requires_grad_(),), eps=1e-6, atol=1e-7
    )


def test_gradients_reach_every_parameter():
    sbn = full_support_sbn(5, components=2)
    log_q = sbn.log_prob(enumerated(5))
    weights = torch.rand(log_q.shape, generator=torch.Generator().manual_seed(9), dtype=log_q.dtype)
    (weights * log_q).sum().backward()
    assert (sbn.root_logits.grad != 0).all()
    # an entry that is its parent's only child has probability 1 whatever its logit
    siblings = np.bincount(sbn.index.entry_parent)[sbn.index.entry_parent]
    assert (sbn.entry_logits.grad[:, siblings > 1] != 0).all()
    assert (sbn.entry_logits.grad[:, siblings == 1] == 0).all()


def test_outside_the_support_is_minus_infinity():
    parents = enumerated(6)
    index = build_subsplit_index(parents[:3], np.ones(3), 6)
    sbn = SBN(index)
    log_q = sbn.log_prob(parents)[0]
    assert torch.isneginf(log_q).any() and torch.isfinite(log_q[:3]).all()
    assert float(log_q.detach().exp().sum()) == pytest.approx(1.0, abs=1e-12)


def test_branch_moments_and_compiled_scores_outside_the_support():
    """All 105 six-taxon trees against a support of 20 (so some split ids are -1, and every
    tip edge has a -1 PSP id), three components: the moments equal a sum written edge by
    edge (an id of -1 adding nothing), and the compiled draw and scores equal the same draw
    and log_prob in torch autograd, values and gradients."""
    parents = enumerated(6)
    index = build_subsplit_index(parents[:20], np.ones(20), 6)
    edges = edge_features(topology_tables(index, parents))
    assert (edges.splits < 0).any() and (edges.psp < 0).any()
    model = BranchLengthModel(
        index, 3, "psp", perturbation=0.5, generator=torch.Generator().manual_seed(5)
    )
    mean, log_std = (moment.detach().numpy() for moment in model.mean_and_log_std(edges))
    split_mean, split_log_std, psp_mean, psp_log_std = (
        table.detach().numpy()
        for table in (model.split_mean, model.split_log_std, model.psp_mean, model.psp_log_std)
    )
    for a, b, e in itertools.product(range(3), range(105), range(9)):
        ids = [int(f) for f in edges.psp[b, e] if f >= 0]
        split = int(edges.splits[b, e])
        expected_mean = MEAN_SHIFT + sum(psp_mean[a, f] for f in ids)
        expected_log_std = sum(psp_log_std[a, f] for f in ids)
        if split >= 0:
            expected_mean += split_mean[a, split]
            expected_log_std += split_log_std[a, split]
        assert mean[a, b, e] == pytest.approx(expected_mean, rel=1e-12, abs=1e-12)
        assert log_std[a, b, e] == pytest.approx(expected_log_std, rel=1e-12, abs=1e-12)
    rows = np.arange(105) % 3
    parameters = [model.split_mean, model.split_log_std, model.psp_mean, model.psp_log_std]
    weights = torch.rand((3, 105), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    lengths, log_q = model.rsample_and_log_prob(edges, rows, None, torch.Generator().manual_seed(6))
    compiled = torch.autograd.grad((log_q * weights).sum() + lengths.sum(), parameters)
    # the same draw in torch autograd: the drawing component's moments and the same noise
    noise = torch.randn((105, 9), generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    mean, log_std = model.mean_and_log_std(edges)
    picked = torch.as_tensor(rows)
    torch_lengths = torch.exp(
        mean[picked, torch.arange(105)] + log_std[picked, torch.arange(105)].exp() * noise
    )
    torch_log_q = branch_log_prob(model, edges, torch_lengths)
    reference = torch.autograd.grad((torch_log_q * weights).sum() + torch_lengths.sum(), parameters)
    torch.testing.assert_close(lengths, torch_lengths, rtol=1e-12, atol=0)
    torch.testing.assert_close(log_q, torch_log_q, rtol=1e-12, atol=1e-10)
    for gradient, expected in zip(compiled, reference, strict=True):
        torch.testing.assert_close(gradient, expected, rtol=1e-10, atol=1e-10)


def test_counts_initialisation_of_a_single_topology_support_is_certain():
    parents = enumerated(6)[40:41]
    sbn = SBN(build_subsplit_index(parents, np.array([7.0]), 6), init="counts")
    assert float(sbn.log_prob(parents)[0, 0].detach()) == pytest.approx(0.0, abs=1e-12)


# --- branch lengths -----------------------------------------------------------------------


def branch_setup(features: str, seed: int = 0):
    parents = enumerated(6)
    index = build_subsplit_index(parents, np.ones(len(parents)), 6)
    model = BranchLengthModel(
        index, 2, features, perturbation=0.5, generator=torch.Generator().manual_seed(seed)
    )
    sbn = SBN(index, 2)
    return parents[:12], sbn, model


def test_split_features_equal_torch_lognormal():
    parents, sbn, model = branch_setup("split")
    edges = edge_features(sbn.tables(parents))
    lengths = model.rsample(
        edges, np.zeros(len(parents), dtype=np.int64), torch.Generator().manual_seed(1)
    )
    ids = edges.splits
    for a in range(2):
        mean = MEAN_SHIFT + model.split_mean[a, ids]
        std = model.split_log_std[a, ids].exp()
        expected = torch.distributions.LogNormal(mean, std).log_prob(lengths).sum(-1)
        torch.testing.assert_close(branch_log_prob(model, edges, lengths)[a], expected)


@pytest.mark.parametrize("features", ["psp", "split"])
@pytest.mark.parametrize("scored", [None, [1]], ids=["all", "component 1"])
@pytest.mark.parametrize("capped", [False, True], ids=["", "sigma capped"])
def test_compiled_draw_and_scores_equal_torch_lognormal(features, scored, capped):
    """rsample_and_log_prob against the draw and the density written with torch gathers and
    torch.distributions.LogNormal on the same noise: lengths, scores under every or a chosen
    component, and the gradients of both (random upstream weights) in every table; with the
    cap on log sigma at the median edge's, so that half the edges meet it (torch.clamp in
    the reference: no gradient through a capped log sigma)."""
    parents, sbn, model = branch_setup(features, seed=3)
    edges = edge_features(sbn.tables(parents))
    chosen = [0, 1] if scored is None else scored
    rows = np.arange(len(parents)) % len(chosen)  # positions among the chosen components
    upstream_lengths = torch.as_tensor(np.random.default_rng(5).normal(size=(12, 9)))
    upstream_q = torch.as_tensor(np.random.default_rng(6).normal(size=(len(chosen), 12)))
    tables = [p for p in model.parameters()]

    def reference():
        noise = torch.randn(
            (12, 9), generator=torch.Generator().manual_seed(7), dtype=torch.float64
        )
        ids = edges.splits
        mean = MEAN_SHIFT + model.split_mean[chosen][:, ids]
        std = model.split_log_std[chosen][:, ids]
        if features == "psp":
            for side in range(2):
                present = torch.as_tensor(edges.psp[..., side] >= 0)
                safe = np.maximum(edges.psp[..., side], 0)
                mean = mean + torch.where(present, model.psp_mean[chosen][:, safe], 0.0)
                std = std + torch.where(present, model.psp_log_std[chosen][:, safe], 0.0)
        std = std.clamp(max=model.max_log_std).exp()
        picked = torch.as_tensor(rows)
        lengths = torch.exp(mean[picked, torch.arange(12)] + std[picked, torch.arange(12)] * noise)
        log_q = torch.distributions.LogNormal(mean, std).log_prob(lengths).sum(-1)
        return lengths, log_q

    if capped:
        _, uncapped_log_std = model.mean_and_log_std(edges, np.array(chosen))
        model.max_log_std = float(uncapped_log_std.median().detach())
        assert 0.3 < float((uncapped_log_std > model.max_log_std).double().mean()) < 0.7
    results = []
    for compute in (
        lambda: model.rsample_and_log_prob(
            edges,
            rows,
            None if scored is None else np.array(scored),
            torch.Generator().manual_seed(7),
        ),  # fmt: skip
        reference,
    ):
        lengths, log_q = compute()
        loss = (lengths * upstream_lengths).sum() + (log_q * upstream_q).sum()
        results.append((lengths, log_q, *torch.autograd.grad(loss, tables)))
    for compiled, expected in zip(*results, strict=True):
        torch.testing.assert_close(compiled, expected, rtol=1e-12, atol=1e-12)


def test_psp_gradients_reach_every_used_embedding():
    parents, sbn, model = branch_setup("psp")
    edges = edge_features(sbn.tables(parents))
    lengths = model.rsample(edges, np.arange(len(parents)) % 2, torch.Generator().manual_seed(2))
    (branch_log_prob(model, edges, lengths).sum() + lengths.sum()).backward()
    used_psp = np.unique(edges.psp[edges.psp >= 0])
    assert (model.psp_mean.grad[:, used_psp] != 0).all()
    assert (model.psp_log_std.grad[:, used_psp] != 0).all()
    assert (model.split_mean.grad[:, np.unique(edges.splits)] != 0).all()
    assert (edges.psp[..., 1] >= 0).all()  # the upper side is always an internal node
    assert ((edges.psp[..., 0] >= 0) == (np.arange(9) >= 6)).all()  # tips have no lower PSP


def test_psp_features_do_not_depend_on_the_encoding_root():
    parents, sbn, _ = branch_setup("psp")
    tree = parents[5]
    lengths = np.arange(1.0, 10.0)
    reference = None
    for node in range(6, 10):
        p, length = reroot(tree, lengths, node)
        edges = edge_features(sbn.tables(p[None]))
        by_length = {  # branch lengths travel with their edges, so they label edges
            float(length[e]): (int(edges.splits[0, e]), frozenset(edges.psp[0, e].tolist()))
            for e in range(9)
        }
        reference = reference or by_length
        assert by_length == reference


def test_reparameterised_samples_have_the_model_moments():
    parents, sbn, model = branch_setup("psp")
    edges = edge_features(sbn.tables(parents[:1]))
    many = edge_features(sbn.tables(np.repeat(parents[:1], 20000, 0)))
    log_b = model.rsample(
        many, np.ones(20000, dtype=np.int64), torch.Generator().manual_seed(3)
    ).log()
    mean, log_std = model.mean_and_log_std(edges)
    standard_error = log_std[1, 0].exp() / math.sqrt(20000)
    assert ((log_b.mean(0) - mean[1, 0]).abs() < 5 * standard_error).all()


# --- priors and KL ----------------------------------------------------------------------------


@pytest.mark.parametrize("n_taxa", [4, 5, 6, 7])
def test_topology_prior_is_one_over_the_number_of_topologies(n_taxa):
    assert log_topology_prior(n_taxa) == pytest.approx(
        -math.log(sum(1 for _ in all_parents(n_taxa)))
    )


def test_branch_prior_is_exponential():
    b = torch.tensor([[0.01, 0.2, 1.5], [0.3, 0.3, 0.0]], dtype=torch.float64)
    expected = torch.distributions.Exponential(10.0).log_prob(b).sum(-1)
    torch.testing.assert_close(log_branch_prior(b), expected)
    torch.testing.assert_close(
        log_branch_prior(b, rate=2.0), torch.distributions.Exponential(2.0).log_prob(b).sum(-1)
    )


def test_kl_from_golden_against_closed_forms():
    sbn = full_support_sbn(5, components=2, seed=8)
    parents = enumerated(5)
    topologies = [topology_from_parents(p, TAXA[:5]) for p in parents]
    log_q = (torch.logsumexp(sbn.log_prob(parents), 0) - math.log(2)).detach()
    golden_q = {t: float(p) for t, p in zip(topologies, log_q.exp(), strict=True)}
    same = kl_from_golden(sbn, golden_q)
    assert same.kl_reachable == pytest.approx(0.0, abs=1e-10)
    assert same.kl_floored == pytest.approx(0.0, abs=1e-10)
    delta = kl_from_golden(sbn, {topologies[3]: 1.0})
    assert delta.kl_reachable == pytest.approx(-float(log_q[3]))
    assert delta.kl_floored == pytest.approx(-float(log_q[3]))
    assert delta.unreachable_mass == 0.0


def test_kl_from_golden_with_golden_mass_outside_the_support():
    """An SBN on one topology gives it probability 1. Golden 0.7 on it and 0.3 on a topology
    outside the support: the reachable-set KL is 0 with 0.3 unreachable, and the published
    convention floors q at machine epsilon: 0.7 log 0.7 + 0.3 (log 0.3 - log eps)."""
    parents = enumerated(5)
    index = build_subsplit_index(parents[:1], np.ones(1), 5)
    sbn = SBN(index, 2, perturbation=1.0, generator=torch.Generator().manual_seed(3))
    inside, outside = (topology_from_parents(p, TAXA[:5]) for p in parents[:2])
    kl = kl_from_golden(sbn, {inside: 0.7, outside: 0.3})
    assert kl.unreachable_mass == pytest.approx(0.3)
    assert kl.kl_reachable == pytest.approx(0.0, abs=1e-12)
    eps = np.finfo(np.float64).eps
    expected = 0.7 * math.log(0.7) + 0.3 * (math.log(0.3) - math.log(eps))
    assert kl.kl_floored == pytest.approx(expected, rel=1e-12)


def test_mixture_draw_and_scores_match_sampling_and_scoring_apart():
    """sample_and_score shares normalisers between the draw and the scores: the particles are
    those `sample` draws, the scores those of the SBN and branch model called on their own."""
    from vbpi_mix.variational.mixture import Mixture

    parents = enumerated(6)
    index = build_subsplit_index(parents, np.ones(len(parents)), 6)
    mixture = Mixture(index, n_components=4, seed=12)
    drawn = np.array([3, 1, 3, 3, 1])
    particles, log_q_topology, log_q_branches = mixture.sample_and_score(
        drawn, torch.Generator().manual_seed(13)
    )
    sampled = mixture.sample(drawn, torch.Generator().manual_seed(13))
    np.testing.assert_array_equal(particles.parents, sampled.parents)
    torch.testing.assert_close(particles.branch_lengths, sampled.branch_lengths)
    torch.testing.assert_close(log_q_topology, mixture.sbn.log_prob(particles.parents).T)
    torch.testing.assert_close(
        log_q_branches,
        branch_log_prob(mixture.branches, particles.edges, particles.branch_lengths).T,
    )
