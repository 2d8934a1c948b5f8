"""Posterior export: samples read back by DendroPy and ete3, topology and split probabilities
against exact enumeration over all 5-taxon topologies, mean branch lengths against Monte
Carlo, consensus against the exact majority splits, and the `sample`/`summarize` commands."""

from __future__ import annotations

import math
from collections import Counter

import dendropy
import ete3
import numpy as np
import pytest
import torch

from tests.conftest import EXAMPLE_FASTA
from tests.test_inference import example_support
from vbpi_mix.cli import main
from vbpi_mix.export.api import Posterior
from vbpi_mix.export.posterior import (
    consensus_tree,
    draw_trees,
    mean_branch_lengths,
    split_frequencies,
    topology_probabilities,
)
from vbpi_mix.export.report import credible_set_size
from vbpi_mix.export.tree_writers import sample_newick, sample_nexus, trprobs_nexus
from vbpi_mix.inference.runs import ModelConfig, create_run
from vbpi_mix.inference.trainer import TrainingConfig
from vbpi_mix.trees.conversions import topology_from_dendropy, topology_from_ete3
from vbpi_mix.trees.random_tree import all_parents
from vbpi_mix.trees.subsplits import build_subsplit_index
from vbpi_mix.trees.support import golden_probabilities
from vbpi_mix.trees.topology import topology_from_parents
from vbpi_mix.variational.mixture import Mixture

TAXA = ("alpha", "beta", "gamma delta", "eps", "zeta")  # one name needs quoting
N_DRAWS = 20_000


@pytest.fixture(scope="module")
def toy():
    """A 2-component mixture over all 15 topologies of 5 taxa, far from uniform."""
    parents = np.stack(list(all_parents(5)))
    index = build_subsplit_index(parents, np.ones(len(parents)), 5)
    mixture = Mixture(index, 2, "psp", perturbation=1.0, seed=5)
    topologies = [topology_from_parents(p, TAXA) for p in parents]
    exact = mixture.sbn.mixture_log_prob(parents)
    sample = draw_trees(mixture, TAXA, N_DRAWS, torch.Generator().manual_seed(6))
    return mixture, topologies, np.exp(exact), sample


def test_enumerated_probabilities_sum_to_one(toy):
    _, _, exact, _ = toy
    assert exact.sum() == pytest.approx(1.0, abs=1e-10)


def test_topology_table_is_exact_and_frequencies_agree(toy):
    mixture, topologies, exact, sample = toy
    table = topology_probabilities(mixture, sample)
    truth = dict(zip(topologies, exact, strict=True))
    assert [row.probability for row in table] == sorted(
        (row.probability for row in table), reverse=True
    )
    for row in table:
        assert row.probability == pytest.approx(truth[row.topology], rel=1e-12)
        sd = math.sqrt(N_DRAWS * row.probability * (1 - row.probability))
        assert abs(row.count - N_DRAWS * row.probability) < 4.5 * sd
    assert sum(row.count for row in table) == N_DRAWS


def test_split_frequencies_agree_with_exact_split_probabilities(toy):
    _, topologies, exact, sample = toy
    exact_splits: Counter[int] = Counter()
    for topology, probability in zip(topologies, exact, strict=True):
        for split in topology.splits():
            if 1 < split.bit_count() < 4:  # both sides hold two taxa or more
                exact_splits[split] += probability
    frequencies = split_frequencies(sample.topologies)
    assert set(frequencies) == set(exact_splits)
    for split, frequency in frequencies.items():
        p = exact_splits[split]
        assert abs(frequency - p) < 4.5 * math.sqrt(p * (1 - p) / N_DRAWS) + 1e-12


def test_mean_branch_lengths_match_monte_carlo():
    """E[b | tau] mixes the components by q_a(tau); light-tailed log-normals here, so that the
    Monte Carlo mean of the draws of one topology is a sharp reference."""
    parents = np.stack(list(all_parents(5)))
    index = build_subsplit_index(parents, np.ones(len(parents)), 5)
    mixture = Mixture(index, 2, "psp", perturbation=0.3, seed=7)
    sample = draw_trees(mixture, TAXA, N_DRAWS, torch.Generator().manual_seed(8))
    table = topology_probabilities(mixture, sample)
    topology = table[0].topology
    drawn = [i for i, t in enumerate(sample.topologies) if t == topology]
    # lengths indexed by each draw's own node numbering: compare as split -> length maps
    per_split = [dict(_split_lengths(sample, i)) for i in drawn]
    expected = dict(
        zip(_splits_by_edge(topology.parents, TAXA), mean_branch_lengths(mixture, topology),
            strict=True)
    )  # fmt: skip
    for split, mean in expected.items():
        values = np.array([lengths[split] for lengths in per_split])
        assert abs(values.mean() - mean) < 4.5 * values.std() / math.sqrt(len(values))


def _splits_by_edge(parents: np.ndarray, taxa) -> list[int]:
    """The split (smaller side's bitset) across the edge above each node of a parent array."""
    n, full = len(taxa), (1 << len(taxa)) - 1
    children: dict[int, list[int]] = {}
    for child, parent in enumerate(parents.tolist()):
        children.setdefault(parent, []).append(child)

    def below(node: int) -> int:
        return 1 << node if node < n else sum(below(c) for c in children[node])

    return [min(below(v), full ^ below(v)) for v in range(2 * n - 3)]


def _split_lengths(sample, i):
    return zip(_splits_by_edge(sample.parents[i], TAXA), sample.branch_lengths[i], strict=True)


def test_consensus_holds_exactly_the_majority_splits(toy):
    mixture, topologies, exact, sample = toy
    table = topology_probabilities(mixture, sample)
    tree = consensus_tree(table)
    frequencies = split_frequencies(sample.topologies)
    majority = {s for s, f in frequencies.items() if f > 0.5}
    tree.encode_bipartitions()
    found = {}
    for node in tree.postorder_internal_node_iter():
        if node is tree.seed_node:
            continue
        mask = sum(1 << TAXA.index(leaf.taxon.label) for leaf in node.leaf_iter())
        found[min(mask, 31 ^ mask)] = float(node.label)
    assert set(found) == majority
    for split, label in found.items():
        assert label == pytest.approx(frequencies[split], abs=5e-4)


def test_nexus_and_newick_samples_read_back_with_dendropy_and_ete3(toy):
    _, _, _, sample = toy
    small = type(sample)(sample.taxa, sample.parents[:50], sample.branch_lengths[:50],
                         sample.topologies[:50])  # fmt: skip
    trees = dendropy.TreeList.get(data=sample_nexus(small), schema="nexus")
    assert len(trees) == 50
    assert sorted(t.label for t in trees.taxon_namespace) == sorted(TAXA)
    for i, tree in enumerate(trees):
        topology, lengths = topology_from_dendropy(tree, TAXA)
        assert topology == small.topologies[i]
        assert sorted(lengths) == pytest.approx(sorted(small.branch_lengths[i]), rel=1e-9)
    for i, line in enumerate(sample_newick(small).splitlines()):
        topology, lengths = topology_from_ete3(ete3.Tree(line, format=1, quoted_node_names=True),
                                               TAXA)  # fmt: skip
        assert topology == small.topologies[i]
        assert sorted(lengths) == pytest.approx(sorted(small.branch_lengths[i]), rel=1e-9)


def test_trprobs_reads_back_as_golden_probabilities(toy, tmp_path):
    mixture, _, _, sample = toy
    table = topology_probabilities(mixture, sample)
    path = tmp_path / "q.trprobs"
    path.write_text(trprobs_nexus(table))
    back = golden_probabilities([path], TAXA)
    total = sum(row.probability for row in table)
    for row in table:
        assert back[row.topology] == pytest.approx(row.probability / total, rel=1e-8)
    assert len(dendropy.TreeList.get(path=str(path), schema="nexus")) == len(table)


def test_credible_set_size():
    rows = [type("Row", (), {"probability": p})() for p in (0.6, 0.3, 0.07, 0.03)]
    assert credible_set_size(rows) == 3
    assert credible_set_size(rows[:2]) is None


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    model = ModelConfig(alignment=str(EXAMPLE_FASTA), components=2)
    training = TrainingConfig(iterations=30, particles=3, topology_lr=0.01, branch_lr=0.01,
                              warmup=5, seed=1)  # fmt: skip
    create_run(folder, model, training, example_support()).trainer.run(progress=False)
    return folder


def test_sample_and_summarize_commands(example_run, tmp_path, capsys):
    out = tmp_path / "trees.nex"
    assert main(["sample", str(example_run), "-n", "40", "-o", str(out), "--quiet",
                 "--topologies", str(tmp_path / "top.tsv")]) == 0  # fmt: skip
    assert len(dendropy.TreeList.get(path=str(out), schema="nexus")) == 40
    assert (tmp_path / "top.tsv").read_text().startswith("rank\tprobability")
    assert main(["summarize", str(example_run), "-n", "300", "-o", str(tmp_path / "post"),
                 "--quiet"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "MAP topology" in printed and "95% credible set" in printed
    assert (tmp_path / "post" / "training_curves.png").is_file()
    posterior = Posterior.open(example_run)
    map_tree = dendropy.Tree.get(path=str(tmp_path / "post" / "map_tree.nwk"), schema="newick",
                                 preserve_underscores=True)  # fmt: skip
    best = posterior.map_topology()[0]
    assert topology_from_dendropy(map_tree, posterior.taxa)[0] == best
    ete_topology, ete_lengths = topology_from_ete3(posterior.map_tree_ete3(), posterior.taxa)
    assert ete_topology == best
    assert ete_lengths == pytest.approx(mean_branch_lengths(posterior.run.mixture, best), rel=1e-9)
    consensus = ete3.Tree(str(tmp_path / "post" / "consensus.nwk"), format=0)
    assert len(consensus) == len(posterior.taxa)


def test_sample_into_a_missing_folder_is_a_one_line_error(example_run, tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nothing"), "-n", "5", "-o", str(tmp_path / "t")]) == 2
    assert "not a vbpi-mix run folder" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
