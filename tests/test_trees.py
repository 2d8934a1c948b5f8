"""Topologies, tree files, conversions and support: checked against DendroPy, ete3,
enumeration and the coverage figures published with the data."""

from __future__ import annotations

import gzip
from collections import Counter

import dendropy
import ete3
import numpy as np
import pytest
import torch
from scipy import stats

from vbpi_mix.bench.datasets import golden_paths, ufboot_paths
from vbpi_mix.errors import VbpiMixError
from vbpi_mix.io.newick import parse_newick
from vbpi_mix.io.tree_files import read_tree_file, read_tree_strings
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.trees.clade_words import as_int
from vbpi_mix.trees.conversions import (
    to_dendropy,
    to_ete3,
    topology_from_dendropy,
    topology_from_ete3,
)
from vbpi_mix.trees.random_tree import random_parents
from vbpi_mix.trees.subsplits import build_subsplit_index, rooting_structure, topology_tables
from vbpi_mix.trees.support import TopologyReader, build_support, credible_set, golden_probabilities
from vbpi_mix.trees.topology import (
    reroot,
    split_key,
    topology_from_parents,
    topology_from_parsed,
)
from vbpi_mix.variational.branch_lengths import edge_features
from vbpi_mix.variational.rooting_sums import rooting_log_sum

TAXA = tuple("abcdef")


def topology(newick: str, taxa=TAXA):
    return topology_from_parsed(parse_newick(newick), taxa, "test")[0]


def double_factorial(k: int) -> int:
    return int(np.prod(np.arange(k, 0, -2))) if k > 0 else 1


def test_same_unrooted_tree_written_differently_is_equal():
    variants = [
        "((a,b),c,((d,e),f));",
        "(c,(b,a),(f,(e,d)));",
        "(((a,b),c),((d,e),f));",  # rooted on the middle edge
        "(a,(b,(c,((d,e),f))));",  # rooted at a
        "[&U] ((a:0.1,b:0.2)90:0.3,'c':1,((d,e),f));",
    ]
    topologies = {topology(text) for text in variants}
    assert len(topologies) == 1
    assert topology("((a,c),b,((d,e),f));") not in topologies


def test_splits_newick_round_trip_and_canonical_root():
    t = topology("((a,b),c,((d,e),f));")
    full = 0b111111
    assert len(t.splits()) == 2 * 6 - 3
    assert {0b000011, 0b011000, 0b000111} <= t.splits()  # {a,b}, {d,e}, {a,b,c}|{d,e,f}
    assert all(s <= full ^ s for s in t.splits())
    assert topology(t.newick()) == t
    assert t.parents[0] == 2 * 6 - 3  # taxon 0 hangs from the root


def test_rerooting_changes_the_encoding_not_the_topology():
    rng = np.random.default_rng(0)
    parents = random_parents(9, rng)
    lengths = rng.uniform(0.1, 1.0, len(parents))
    base = topology_from_parents(parents, tuple("abcdefghi"))
    for new_root in range(9, 16):
        p, length = reroot(parents, lengths, new_root)
        assert topology_from_parents(p, base.taxa) == base
        assert sorted(length) == sorted(lengths)


def test_fast_reader_agrees_with_dendropy_on_ufboot_trees(data_dir):
    path = data_dir / "DS1" / "ufboot" / "rep_1.ufboot.gz"
    lines = gzip.open(path, "rt").read().split("\n")[:200]
    trees = read_tree_file(path)[:200]
    taxa = sorted(leaf.taxon.label for leaf in trees[0].leaf_node_iter())
    for line, tree in zip(lines, trees, strict=True):
        fast = topology_from_parsed(parse_newick(line), taxa, "fast")[0]
        slow = topology_from_dendropy(tree, taxa)[0]
        assert fast == slow
        # DendroPy's own bipartitions, translated to our bitsets, give the same split set
        full = (1 << len(taxa)) - 1
        dendropy_splits = {
            split_key(
                sum(1 << taxa.index(x.label) for x in b.leafset_taxa(tree.taxon_namespace)), full
            )
            for b in tree.encode_bipartitions()
        }
        assert fast.splits() == dendropy_splits - {0}  # 0: the root's "split" of all taxa


def test_dendropy_and_ete3_round_trips_keep_lengths():
    newick = "((a:0.1,b:0.2):0.3,c:0.4,((d:0.5,e:0.6):0.7,f:0.8):0.9);"
    t, lengths = topology_from_parsed(parse_newick(newick), TAXA, "test")
    for back in (
        topology_from_dendropy(to_dendropy(t, lengths), TAXA),
        topology_from_ete3(to_ete3(t, lengths), TAXA),
    ):
        assert back[0] == t
        np.testing.assert_allclose(back[1], lengths)
    assert isinstance(to_ete3(t), ete3.Tree)
    assert isinstance(to_dendropy(t), dendropy.Tree)
    assert sorted(lengths) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])


def test_taxa_mismatch_and_polytomy_errors():
    with pytest.raises(VbpiMixError, match="missing from the tree: f; not in the alignment: g"):
        topology("((a,b),c,((d,e),g));")
    with pytest.raises(VbpiMixError, match="polytomy"):
        topology("((a,b,c),d,(e,f));")
    with pytest.raises(VbpiMixError, match="unbalanced|incomplete"):
        parse_newick("((a,b),c")


NEXUS = """#NEXUS
begin trees;
   translate
    1 a,
    2 b,
    3 'c',
    4 d,
    5 e,
    6 f;
   tree tree_1 [p = 0.6, P = 0.6] = [&W 0.6] ((1,2),3,((4,5),6));
   tree tree_2 [p = 0.3, P = 0.9] = [&W 0.3] ((1,3),2,((4,5),6));
   tree tree_3 [p = 0.1, P = 1.0] = [&W 0.1] ((1,2),3,((4,6),5));
end;
"""


def test_trprobs_weights_translate_and_credible_set(tmp_path):
    path = tmp_path / "run.trprobs"
    path.write_text(NEXUS)
    counts = TopologyReader(TAXA).read(path)
    assert sorted(counts.values()) == pytest.approx([0.1, 0.3, 0.6])
    assert counts[topology("((a,b),c,((d,e),f));")] == pytest.approx(0.6)
    assert len(credible_set(counts, 0.95)) == 3
    assert len(credible_set(counts, 0.9)) == 2
    assert len(credible_set(counts, 0.5)) == 1
    assert len(credible_set(counts, 1.0)) == 3


def test_mrbayes_t_file_burnin(tmp_path):
    trees = "\n".join(
        f"   tree gen.{i} = [&U] ((1:0.1,2:0.1):0.1,3:0.1,((4:0.1,5:0.1):0.1,6:0.1):0.1);"
        for i in range(8)
    )
    path = tmp_path / "run.t"
    path.write_text(NEXUS.split("   tree tree_1")[0] + trees + "\nend;\n")
    assert sum(read_tree_strings(path).weights.values()) == 8
    assert sum(read_tree_strings(path, burnin=0.25).weights.values()) == 6
    assert sum(read_tree_strings(path, burnin=3).weights.values()) == 5
    with pytest.raises(VbpiMixError, match="removes all 8 trees"):
        read_tree_strings(path, burnin=8)


def test_support_is_union_of_credible_sets_with_summed_counts(tmp_path):
    first, second = tmp_path / "rep_1.nwk", tmp_path / "rep_2.nwk"
    first.write_text("((a,b),c,((d,e),f));\n" * 19 + "((a,c),b,((d,e),f));\n")
    second.write_text("(c,(b,a),(f,(e,d)));\n" * 10 + "((a,c),b,((d,e),f));\n" * 10)
    support = build_support([first, second], TAXA, credible=0.95, progress=False)
    assert support.counts == (29.0, 10.0)  # the 1-in-20 tree of rep 1 is outside its 95% set
    support_all = build_support([first, second], TAXA, credible=1.0, progress=False)
    assert support_all.counts == (29.0, 11.0)


def test_random_topologies_are_uniform():
    rng = np.random.default_rng(1)
    taxa = tuple("abcde")
    draws = Counter(topology_from_parents(random_parents(5, rng), taxa) for _ in range(6000))
    n_topologies = double_factorial(2 * 5 - 5)
    assert len(draws) == n_topologies == 15
    assert stats.chisquare(list(draws.values())).pvalue > 1e-3


@pytest.mark.parametrize(
    ("dataset", "coverage"),
    [("DS1", 0.996), ("DS2", 1.0), ("DS3", 0.9999), ("DS4", 0.952)],
)
def test_support_covers_golden_mass_as_published(data_dir, dataset, coverage):
    """Coverage of the golden posterior by the UFBoot support, as stated in the data README
    (DS1 99.6%, DS2 100%, DS3 99.99%, DS4 95.2%)."""
    taxa = load_alignment(data_dir / dataset / f"{dataset}.fasta").taxa
    support = build_support(ufboot_paths(data_dir, dataset), taxa, progress=False)
    golden = golden_probabilities(golden_paths(data_dir, dataset), taxa)
    assert sum(golden.values()) == pytest.approx(1.0, abs=1e-6)
    in_support = set(support.topologies)
    covered = sum(p for t, p in golden.items() if t in in_support)
    assert covered == pytest.approx(coverage, abs=0.001)  # README prints 3-4 digits


def rooted_subsplits(parents: np.ndarray, n_taxa: int, edge: int) -> dict[int, tuple]:
    """Reference by plain recursion: root the tree on the edge above node `edge` and give each
    internal node v (index v - N) its (sister clade, {child clade, child clade})."""
    neighbours: dict[int, list[int]] = {node: [] for node in range(2 * n_taxa - 2)}
    for child, parent in enumerate(parents):
        neighbours[child].append(int(parent))
        neighbours[int(parent)].append(child)

    def clade(node: int, came_from: int) -> int:
        if node < n_taxa:
            return 1 << node
        return sum(clade(x, node) for x in neighbours[node] if x != came_from)

    full = (1 << n_taxa) - 1
    ends = (edge, int(parents[edge]))
    found = {}
    for end, other in (ends, ends[::-1]):
        stack = [(end, other, full ^ clade(end, other))]  # node, rooted parent, sister clade
        while stack:
            node, came_from, sister = stack.pop()
            if node < n_taxa:
                continue
            below = [x for x in neighbours[node] if x != came_from]
            clades = [clade(x, node) for x in below]
            found[node - n_taxa] = (sister, frozenset(clades))
            stack += [(x, node, clades[1 - i]) for i, x in enumerate(below)]
    return found


def entry_key_function(index):
    """The support's key of a (sister, {a, b}) subsplit pair, None where a clade is absent,
    as a function over the index's clade ids (a dictionary built once)."""
    clade_id = {as_int(c): i for i, c in enumerate(index.clades)}
    q = len(clade_id)

    def entry_key(sister: int, sides: frozenset) -> int | None:
        ids = [clade_id.get(x) for x in (sister, *sorted(sides))]
        if None in ids:
            return None
        return (ids[0] * q + min(ids[1:])) * q + max(ids[1:])

    return entry_key


def ancestor_or_self(parents: np.ndarray, node: int, ancestor: int) -> bool:
    """Whether `ancestor` lies on the path from `node` up to the encoding root."""
    while node != ancestor and node != parents.size:
        node = int(parents[node])
    return node == ancestor


WIDTHS = [5, 8, 63, 64, 65, 130]  # one to three clade words, and both sides of 64


@pytest.mark.parametrize("n_taxa", [4, 27, *WIDTHS])
def test_rooting_sums_equal_every_rooting_found_by_recursion(n_taxa):
    """The compiled O(N) sum over rootings, log sum_r exp(root(r) + sum_v entry(v, r)), and
    its gradient, against the plain sum over the 2N-3 rootings, each rooted by recursion and
    its subsplit pairs looked up in Python dictionaries, with random tables for two
    components (every entry its own value: an SBN over so small a support has mostly
    one-member families, whose log-probability 0 would hide a wrong entry), for random trees
    of one to three clade words; the support's SBN-SA counts against counting those
    rootings; the branch model's PSP features of each edge, the entries of its two end nodes
    when rooted on it."""
    rng = np.random.default_rng(n_taxa)
    parents = np.stack([random_parents(n_taxa, rng) for _ in range(3)])
    tree_weights = np.array([1.0, 2.0, 5.0])
    index = build_subsplit_index(parents, tree_weights, n_taxa)
    entry_key = entry_key_function(index)
    generator = torch.Generator().manual_seed(n_taxa)
    roots, entries = (
        torch.randn(2, size, generator=generator, dtype=torch.float64, requires_grad=True)
        for size in (index.n_root_splits, index.n_entries)
    )
    entry_id = {int(k): i for i, k in enumerate(index.entry_keys)}
    root_id = {as_int(k): i for i, k in enumerate(index.root_splits)}
    full, n_edges = (1 << n_taxa) - 1, 2 * n_taxa - 3
    expected_counts = np.zeros(index.n_entries)
    expected, expected_psp = [], np.full((len(parents), n_edges, 2), -1)
    for b, (tree, weight) in enumerate(zip(parents, tree_weights, strict=True)):
        per_rooting = []
        for edge in range(n_edges):
            below = sum(1 << t for t in range(n_taxa) if ancestor_or_self(tree, t, edge))
            rooted = rooted_subsplits(tree, n_taxa, edge)
            ids = [entry_id[entry_key(s, sides)] for s, sides in rooted.values()]
            ends = {v: i for v, i in zip(rooted, ids, strict=True)}
            expected_psp[b, edge] = ends.get(edge - n_taxa, -1), ends[tree[edge] - n_taxa]
            expected_counts[ids] += weight / n_edges
            root = root_id[min(below, full ^ below)]
            per_rooting.append(roots[:, root] + entries[:, ids].sum(-1))
        expected.append(torch.logsumexp(torch.stack(per_rooting, -1), -1))
    expected = torch.stack(expected, -1)
    tables = topology_tables(index, parents)
    values = rooting_log_sum(roots, entries, tables, tables.candidate_ids)
    torch.testing.assert_close(values, expected)
    np.testing.assert_allclose(index.entry_counts, expected_counts)
    np.testing.assert_array_equal(edge_features(tables).psp, expected_psp)
    weights = torch.randn(values.shape, generator=generator, dtype=torch.float64)
    gradients = torch.autograd.grad((weights * values).sum(), (roots, entries))
    reference = torch.autograd.grad((weights * expected).sum(), (roots, entries))
    for gradient, plain in zip(gradients, reference, strict=True):
        torch.testing.assert_close(gradient, plain)


@pytest.mark.parametrize("n_taxa", [27, *WIDTHS])
def test_scoring_ids_match_a_plain_dictionary_lookup(n_taxa):
    """The compiled hash lookups against Python dictionaries of the support's sorted keys, for
    trees inside the support and random trees mostly outside it (ids -1)."""
    rng = np.random.default_rng(n_taxa + 1)
    size = 20 if n_taxa > 6 else 2  # 20 random 5-taxon trees leave no subsplit pair out
    support = np.stack([random_parents(n_taxa, rng) for _ in range(size)])
    index = build_subsplit_index(support, np.ones(size), n_taxa)
    entry_key = entry_key_function(index)
    inside = min(size, 5)
    parents = np.concatenate([support[:inside], [random_parents(n_taxa, rng) for _ in range(5)]])
    tables = topology_tables(index, parents)
    structure = rooting_structure(parents, n_taxa, index.words)
    entry_id = {int(k): i for i, k in enumerate(index.entry_keys)}
    root_id = {as_int(s): i for i, s in enumerate(index.root_splits)}
    full = (1 << n_taxa) - 1
    for b in range(len(parents)):
        for e in range(2 * n_taxa - 3):
            below = as_int(structure.edge_clades[b, e])
            assert tables.root_ids[b, e] == root_id.get(min(below, full ^ below), -1)
        for v in range(n_taxa - 2):
            for slot in range(9):
                sister, a, c = (as_int(x) for x in structure.triples[b, v, slot])
                key = entry_key(sister, frozenset((a, c)))
                found = entry_id.get(key, -1) if structure.valid[b, v, slot] else -1
                assert tables.candidate_ids[b, v, slot] == found
    valid = structure.valid
    assert (tables.candidate_ids[:inside][valid[:inside]] >= 0).all()
    assert (tables.candidate_ids[inside:][valid[inside:]] < 0).any()
