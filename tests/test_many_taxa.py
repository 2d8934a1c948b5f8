"""Clades of more than 64 taxa (multi-word bitsets, vbpi_mix.trees.clade_words): the word
helpers against Python integers, a 130-taxon tree against DendroPy's bipartitions, and a fit
that gives the same numbers whether its clades take one word or two."""

from __future__ import annotations

import functools

import dendropy
import numpy as np
import pytest
import torch

from vbpi_mix.inference import runs
from vbpi_mix.inference.runs import ModelConfig, create_run, read_metrics
from vbpi_mix.inference.trainer import TrainingConfig
from vbpi_mix.phylo.models import JC69
from vbpi_mix.phylo.simulate import simulate_sequences
from vbpi_mix.trees import clade_words
from vbpi_mix.trees.clade_words import as_int, from_ints
from vbpi_mix.trees.random_tree import random_parents
from vbpi_mix.trees.subsplits import build_subsplit_index
from vbpi_mix.trees.support import Support
from vbpi_mix.trees.topology import reroot, topology_from_parents
from vbpi_mix.variational.sbn import SBN


@pytest.mark.parametrize("n_taxa", [5, 64, 65, 130, 192])
def test_word_helpers_agree_with_python_integers(n_taxa):
    """Integer order, canonical split sides, taxon counts and round trips of random clades
    against the same operations on Python ints."""
    rng = np.random.default_rng(n_taxa)
    words = clade_words.word_count(n_taxa)
    assert words == -(-n_taxa // 64)
    full = (1 << n_taxa) - 1
    values = [int(rng.integers(1, 2**63)) for _ in range(3)] + [1 << (n_taxa - 1), full]
    values += [sum(1 << t for t in range(n_taxa) if rng.random() < p) for p in (0.1, 0.5, 0.9)]
    values = [v & full or 1 for v in values]
    clades = from_ints(values, words)
    assert [as_int(c) for c in clades] == values
    assert clade_words.taxon_counts(clades).tolist() == [v.bit_count() for v in values]
    sides = clade_words.split_sides(clades, n_taxa)
    assert [as_int(s) for s in sides] == [min(v, full ^ v) for v in values]
    less = clade_words.integer_less(clades[:, None], clades[None, :])
    assert less.tolist() == [[a < b for b in values] for a in values]
    table, inverse = clade_words.unique_clades(clades)
    assert [as_int(c) for c in table] == sorted(set(values))
    assert [as_int(table[i]) for i in inverse] == values
    np.testing.assert_array_equal(clade_words.clade_ids(table, clades), inverse)
    padded = from_ints(values, words + 1)  # a zero word on top keeps every clade's place
    np.testing.assert_array_equal(clade_words.unique_clades(padded)[1], inverse)


def dendropy_splits(newick: str, taxa: tuple[str, ...]) -> set[int]:
    """The non-trivial splits (smaller side as an integer, bit i = taxa[i]) DendroPy finds."""
    tree = dendropy.Tree.get(data=newick, schema="newick", preserve_underscores=True)
    full = (1 << len(taxa)) - 1
    splits = set()
    for bipartition in tree.encode_bipartitions():
        side = sum(1 << taxa.index(x.label) for x in bipartition.leafset_taxa(tree.taxon_namespace))
        if 1 < side.bit_count() < len(taxa) - 1:
            splits.add(min(side, full ^ side))
    return splits


def test_a_130_taxon_tree_is_read_scored_and_sampled_as_dendropy_and_rerooting_say():
    """The support built from one 130-taxon tree (three clade words) holds exactly the
    tree's splits as DendroPy reads them from its Newick; its SBN samples only that tree,
    scores it and a re-rooted copy at log-probability 0, and a tree outside at -inf."""
    n_taxa = 130
    rng = np.random.default_rng(130)
    taxa = tuple(f"t{i}" for i in range(n_taxa))
    parents = random_parents(n_taxa, rng)
    topology = topology_from_parents(parents, taxa)
    index = build_subsplit_index(parents[None], np.ones(1), n_taxa)
    assert index.words == 3
    splits = {as_int(s) for s in index.root_splits}
    non_trivial = {s for s in splits if 1 < s.bit_count() < n_taxa - 1}
    assert non_trivial == dendropy_splits(topology.newick(), taxa)
    assert len(splits) == 2 * n_taxa - 3 and splits == set(topology.splits())

    sbn = SBN(index, 1)
    draws = sbn.sample(np.zeros(4, dtype=np.int64), torch.Generator().manual_seed(1))
    assert all(topology_from_parents(p, taxa) == topology for p in draws.parents)
    rerooted, _ = reroot(parents, np.ones(len(parents)), n_taxa + 7)
    other = random_parents(n_taxa, rng)
    log_probs = sbn.log_prob(np.stack([parents, rerooted, other]))[0]
    torch.testing.assert_close(log_probs[:2], torch.zeros(2, dtype=torch.float64))
    assert log_probs[2] == -torch.inf


def test_a_fit_gives_the_same_numbers_with_one_and_with_two_clade_words(tmp_path, monkeypatch):
    """A 40-taxon mixture (S2A, A = 2) trained for a few iterations from the same seed:
    bounds, MLL estimates and every parameter identical whether the support's clades take
    the one word they need or two (the upper one zero)."""
    n_taxa, rng = 40, np.random.default_rng(40)
    taxa = tuple(f"taxon_{i}" for i in range(n_taxa))
    true_tree = random_parents(n_taxa, rng)
    lengths = rng.uniform(0.01, 0.1, len(true_tree))
    sequences = simulate_sequences(true_tree, lengths, JC69(), 200, rng)
    fasta = tmp_path / "forty.fasta"
    fasta.write_text("".join(f">{t}\n{s}\n" for t, s in zip(taxa, sequences, strict=True)))
    trees = [true_tree] + [random_parents(n_taxa, rng) for _ in range(6)]
    topologies = tuple(topology_from_parents(p, taxa) for p in trees)
    support = Support(taxa, topologies, tuple(float(k) for k in range(7, 0, -1)))
    model = ModelConfig(alignment=str(fasta), components=2)
    training = TrainingConfig(
        iterations=12, particles=3, estimator="s2a", subset=1, warmup=4, eval_every=6,
        eval_particles=20, seed=5, split_at=0,
    )  # fmt: skip
    results = []
    for words in (1, 2):
        monkeypatch.setattr(
            runs, "build_subsplit_index", functools.partial(build_subsplit_index, words=words)
        )
        run = create_run(tmp_path / f"w{words}", model, training, support)
        assert run.mixture.sbn.index.words == words
        run.trainer.run()
        metrics = [(m["iteration"], m.get("bound"), m.get("mll")) for m in read_metrics(run.folder)]
        state = {k: v.clone() for k, v in run.mixture.state_dict().items()}
        results.append((metrics, state))
    (metrics_1, state_1), (metrics_2, state_2) = results
    assert metrics_1 == metrics_2 and any(m[2] is not None for m in metrics_1)
    assert state_1.keys() == state_2.keys()
    for name, value in state_1.items():
        assert torch.equal(value, state_2[name]), name
