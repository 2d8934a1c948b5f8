"""A2A / S2A / S2S and VIMCO on an enumerable toy: topologies of 5 taxa under a mixture of
SBNs, a fixed random target over them, exact expectations by enumeration (Hotti et al. 2024,
Theorem 4.1; Mnih & Rezende 2016)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.inference.estimators import (
    A2A,
    RWS,
    S2A,
    S2S,
    VIMCO,
    LogWeights,
    component_terms,
    estimate,
    make_estimator,
    vimco_baselines,
)
from vbpi_mix.trees.random_tree import all_parents
from vbpi_mix.trees.subsplits import build_subsplit_index
from vbpi_mix.variational.sbn import SBN

N_TAXA = 5
PARENTS = np.stack(list(all_parents(N_TAXA)))  # all 15 topologies
TARGET = torch.as_tensor(np.random.default_rng(0).normal(0.0, 2.0, len(PARENTS)))
LOG_Z = float(torch.logsumexp(TARGET, 0))


def mixture(n_components: int, seed: int = 1) -> SBN:
    index = build_subsplit_index(PARENTS, np.ones(len(PARENTS)), N_TAXA)
    return SBN(index, n_components, perturbation=1.0, generator=torch.Generator().manual_seed(seed))


def record_for(sbn: SBN, drawn, topologies, log_q: torch.Tensor | None = None) -> LogWeights:
    """Particles `topologies [S, K]` (indices into PARENTS) drawn by components `drawn [S]`;
    `log_q [15, A]`: the SBN's densities when already computed."""
    topologies = torch.as_tensor(np.asarray(topologies))
    log_q = sbn.log_prob(PARENTS).T if log_q is None else log_q  # [15, A], differentiable
    return LogWeights(
        drawn=np.asarray(drawn),
        log_likelihood=TARGET[topologies],
        log_prior=torch.zeros(topologies.shape, dtype=torch.float64),
        log_q_topology=log_q[topologies],
        log_q_branches=torch.zeros(*topologies.shape, log_q.shape[-1], dtype=torch.float64),
    )


def s2s_record(sbn: SBN, drawn, topologies, log_q: torch.Tensor | None = None) -> LogWeights:
    """As record_for, in the terms of S2S's family: the sub-mixture of the (sorted, distinct)
    drawn components, whose component s is drawn[s]."""
    log_q = sbn.log_prob(PARENTS).T if log_q is None else log_q
    return record_for(sbn, np.arange(len(drawn)), topologies, log_q[:, np.asarray(drawn)])


def test_s2a_averaged_over_all_subsets_equals_a2a():
    sbn, n_components, k = mixture(4), 4, 3
    particles = np.random.default_rng(2).integers(0, 15, (n_components, k))
    full = record_for(sbn, np.arange(n_components), particles)
    a2a = estimate(A2A(n_components), full).bound
    for subset_size in (1, 2, 3):
        values = []
        for subset in itertools.combinations(range(n_components), subset_size):
            rows = list(subset)
            values.append(
                estimate(
                    S2A(n_components, subset_size), record_for(sbn, rows, particles[rows])
                ).bound
            )
        assert float(torch.stack(values).mean()) == pytest.approx(float(a2a), abs=1e-12)


def test_s2s_with_every_component_is_a2a():
    """Why S2S refuses S = A: weighed against the mixture of all drawn components, a record
    in which every component drew gives A2A's bound."""
    sbn = mixture(3)
    full = record_for(sbn, np.arange(3), np.random.default_rng(3).integers(0, 15, (3, 4)))
    assert float(estimate(S2S(3, 2), full).bound) == pytest.approx(
        float(estimate(A2A(3), full).bound), abs=1e-14
    )
    with pytest.raises(VbpiMixError, match="that is A2A"):
        S2S(3, 3)


def expected_bound(sbn, estimator, subsets, k) -> float:
    """E[bound] of `estimator` by enumeration: a subset of drawing components uniformly from
    `subsets`, each drawing component's K particles from its own q_a, every combination of
    particles enumerated and passed to the estimator as one record."""
    log_q = sbn.log_prob(PARENTS).detach().T  # [15, A]
    total = 0.0
    for subset in subsets:
        per_component = list(itertools.product(range(15), repeat=k))
        for particles in itertools.product(per_component, repeat=len(subset)):
            index = torch.as_tensor(particles)  # [S, K]
            probability = float(log_q[index, torch.as_tensor(subset)[:, None]].sum().exp())
            build = s2s_record if isinstance(estimator, S2S) else record_for
            record = build(sbn, list(subset), particles, log_q)
            bound = estimate(estimator, record, gradient=RWS()).bound  # VIMCO needs K >= 2
            total += probability * float(bound) / len(subsets)
    return total


def test_s2a_is_unbiased_for_the_a2a_objective():
    """Hotti et al. (2024), Theorem 4.1, by enumeration: A2A with all three components drawing
    jointly (15^3 particle triples) against S2A over its uniform subsets of S = 1 and S = 2;
    S2S is a looser bound and every bound lies below log Z."""
    sbn, components = mixture(3, seed=4), range(3)
    a2a = expected_bound(sbn, A2A(3), [tuple(components)], k=1)
    for s in (1, 2):
        subsets = list(itertools.combinations(components, s))
        assert expected_bound(sbn, S2A(3, s), subsets, k=1) == pytest.approx(a2a, abs=1e-12)
    s2s = expected_bound(sbn, S2S(3, 1), [(a,) for a in components], k=1)
    assert s2s < a2a - 0.01 and a2a < LOG_Z
    with_two = expected_bound(sbn, S2A(3, 1), [(a,) for a in components], k=2)
    assert a2a < with_two < LOG_Z  # more particles, tighter bound


@pytest.mark.parametrize(("n_components", "estimator"), [(1, "a2a"), (2, "a2a"), (3, "s2a")])
def test_vimco_gradient_is_unbiased_for_the_k_sample_bound(n_components, estimator):
    """E[grad surrogate] over the drawn subsets and all particle pairs equals the gradient of
    the exactly enumerated A2A bound. A2A: every component's pairs in one record; S2A with
    S = 1: one record per (component, pair), as the trainer makes them, weighted by the
    subset's probability 1/A."""
    sbn, k = mixture(n_components, seed=5), 2
    pairs = list(itertools.product(range(15), repeat=k))
    log_q_all = sbn.log_prob(PARENTS)  # [A, 15]
    log_mix = torch.logsumexp(log_q_all, 0) - math.log(n_components)
    index = torch.as_tensor(pairs)  # [225, 2]
    exact, expected_surrogate = 0.0, 0.0
    for a in range(n_components):
        probability = log_q_all[a, index].sum(-1).exp()  # q_a(t1) q_a(t2)
        log_w = TARGET[index] - log_mix[index]
        exact = exact + (probability * (torch.logsumexp(log_w, -1) - math.log(k))).sum()
    exact = exact / n_components
    if estimator == "a2a":  # one record: every component draws one pair, all pairs enumerated
        for a in range(n_components):
            probability = log_q_all[a, index].sum(-1).exp().detach()
            _, surrogate = component_terms(A2A(n_components), record_for(sbn, [a] * 225, pairs))
            expected_surrogate = expected_surrogate + (probability * surrogate).sum()
        expected_surrogate = expected_surrogate / n_components
    else:
        s2a, log_q = S2A(n_components, 1), log_q_all.T
        for a in range(n_components):
            for pair in pairs:
                probability = float(log_q_all[a, list(pair)].sum().exp().detach())
                result = estimate(s2a, record_for(sbn, [a], [pair], log_q))
                expected_surrogate = expected_surrogate + probability * result.surrogate
        expected_surrogate = expected_surrogate / n_components
    parameters = [sbn.root_logits, sbn.entry_logits]
    exact_gradient = torch.autograd.grad(exact, parameters, retain_graph=True)
    estimated_gradient = torch.autograd.grad(expected_surrogate, parameters)
    for want, got in zip(exact_gradient, estimated_gradient, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


def test_rws_gradient_is_the_self_normalised_score():
    """RWS (wake phase) for the topology parameters: per drawn component s, the gradient is
    sum_k softmax_k(log w_s) grad log q_s(tau_sk), averaged over the drawn components; each
    particle's score gradient taken on its own by autograd, the weights from the target and
    the mixture density directly."""
    sbn, drawn = mixture(3, seed=12), [0, 2]
    particles = np.random.default_rng(13).integers(0, 15, (2, 4))
    got = torch.autograd.grad(
        estimate(S2A(3, 2), record_for(sbn, drawn, particles), gradient=RWS()).surrogate,
        sbn.entry_logits,
    )[0]
    log_q = sbn.log_prob(PARENTS).detach()  # [3, 15]
    log_mix = torch.logsumexp(log_q, 0) - math.log(3)
    want = torch.zeros_like(sbn.entry_logits)
    for row, component in enumerate(drawn):
        log_w = np.array([float(TARGET[t] - log_mix[t]) for t in particles[row]])
        weights = np.exp(log_w - log_w.max()) / np.exp(log_w - log_w.max()).sum()
        for weight, t in zip(weights, particles[row], strict=True):
            score = torch.autograd.grad(sbn.log_prob(PARENTS[t : t + 1])[component, 0],
                                        sbn.entry_logits)[0]  # fmt: skip
            want += weight * score / len(drawn)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_one_particle_one_component_is_the_elbo():
    sbn = mixture(1)
    record = record_for(sbn, [0], [[7]])
    value = estimate(A2A(1), record, gradient=RWS()).bound
    expected = TARGET[7] - sbn.log_prob(PARENTS)[0, 7]
    assert float(value) == pytest.approx(float(expected.detach()), abs=1e-14)


def test_vimco_baselines_replace_one_weight_by_the_others_mean():
    log_w = torch.tensor([[0.0, 1.0, 3.0]], dtype=torch.float64)
    baselines = vimco_baselines(log_w)
    expected = torch.logsumexp(torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64), 0) - math.log(3)
    assert float(baselines[0, 0]) == pytest.approx(float(expected))
    with pytest.raises(VbpiMixError, match="at least 2 particles"):
        VIMCO(particles=1)


def test_invalid_configurations_name_the_fix():
    with pytest.raises(VbpiMixError, match="between 1 and --components"):
        make_estimator("s2a", 3, 4)
    for name in ("s2s", "s2a"):
        with pytest.raises(VbpiMixError, match="use --estimator a2a"):
            make_estimator(name, 3, 3)
    with pytest.raises(VbpiMixError, match="drop --subset"):
        make_estimator("a2a", 3, 2)


def test_s2a_draws_uniform_subsets():
    estimator, generator = S2A(4, 2), torch.Generator().manual_seed(6)
    counts = np.zeros(4)
    for _ in range(4000):
        drawn = estimator.draw(generator)
        assert len(set(drawn.tolist())) == 2
        counts[drawn] += 1
    # each component is drawn with probability S/A = 1/2: binomial sd sqrt(4000/4) ~ 32
    assert np.abs(counts - 2000).max() < 5 * 32


def test_s2s_weighs_against_the_sub_mixture_of_the_drawn_components():
    """S2S's family is the drawn components' mixture (Mixture.select): its bound and VIMCO
    surrogate gradient equal those written out on the full mixture's densities, log w = log p
    - log (1/S) sum_{j in I} q_j, with each particle's score under the component that drew it."""

    class WrittenOut(S2A):
        def log_denominator(self, record):
            drawn = record.log_q[..., torch.as_tensor(record.drawn)]
            return torch.logsumexp(drawn, -1) - math.log(len(record.drawn))

    sbn, drawn = mixture(5, seed=10), np.array([1, 3])
    particles = np.random.default_rng(11).integers(0, 15, (2, 4))
    results = [
        estimate(S2S(5, 2), s2s_record(sbn, drawn, particles)),
        estimate(WrittenOut(5, 2), record_for(sbn, drawn, particles)),
    ]
    assert float(results[0].bound) == pytest.approx(float(results[1].bound), abs=1e-12)
    gradients = [torch.autograd.grad(r.surrogate, sbn.entry_logits)[0] for r in results]
    torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-12, atol=1e-14)
    s2a = estimate(S2A(5, 2), record_for(sbn, drawn, particles))
    assert abs(float(s2a.bound) - float(results[0].bound)) > 0.01  # the denominators differ


def test_a_sub_mixture_draws_and_scores_as_its_parent_restricted_to_its_components():
    from vbpi_mix.variational.mixture import Mixture

    parents = np.stack(list(all_parents(6)))
    index = build_subsplit_index(parents, np.ones(len(parents)), 6)
    parent = Mixture(index, n_components=4, seed=12)
    chosen, local = np.array([1, 3]), np.array([1, 0, 1, 1, 0])
    particles, *scores = parent.sample_and_score(chosen[local], torch.Generator().manual_seed(13))
    sub_particles, *sub_scores = parent.select(chosen).sample_and_score(
        local, torch.Generator().manual_seed(13)
    )
    np.testing.assert_array_equal(sub_particles.parents, particles.parents)
    torch.testing.assert_close(sub_particles.branch_lengths, particles.branch_lengths)
    for all_columns, some in zip(scores, sub_scores, strict=True):
        assert some.shape == (5, 2)
        torch.testing.assert_close(some, all_columns[:, chosen])


def test_s2a_and_s2s_without_a_subset_ask_for_one():
    for estimator in ("s2a", "s2s"):
        with pytest.raises(VbpiMixError, match="needs --subset S"):
            make_estimator(estimator, 5, None)
