"""The batched pruning kernel against IQ-TREE, enumeration, autograd and finite differences."""

from __future__ import annotations

import csv
import itertools
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from vbpi_mix.io.tree_files import parse_tree_text, read_tree_file
from vbpi_mix.phylo.alignment import Alignment, load_alignment
from vbpi_mix.phylo.likelihood import TreeLikelihood, Workspace, pruning_log_likelihood
from vbpi_mix.phylo.models import GTR, HKY, JC69, K80, SubstitutionModel, build_model
from vbpi_mix.phylo.pattern_loops import RESCALE_RANGE
from vbpi_mix.phylo.reference_pruning import reference_log_likelihood
from vbpi_mix.phylo.schedule import build_schedule
from vbpi_mix.phylo.simulate import simulate_sequences
from vbpi_mix.trees.conversions import topology_from_dendropy
from vbpi_mix.trees.random_tree import random_parents
from vbpi_mix.trees.topology import newick_from_parents, reroot

FREQS = [0.3, 0.2, 0.2, 0.3]
GTR_RATES = [1.0, 2.5, 0.8, 1.2, 3.0, 1.0]


def reference_model(name: str) -> SubstitutionModel:
    """The models of ../shared/reference/iqtree_loglik.tsv (see its README)."""
    if name == "JC":
        return build_model("JC")
    if name == "HKY":
        return build_model("HKY", kappa=2.5, frequencies=FREQS)
    if name == "GTR+G4":
        return build_model("GTR", rates=GTR_RATES, frequencies=FREQS, gamma_categories=4, alpha=0.5)
    raise ValueError(name)


def small_problem(n_taxa: int, n_sites: int, seed: int, model: SubstitutionModel | None = None):
    """A simulated alignment with ambiguity codes, and a random tree with lengths."""
    rng = np.random.default_rng(seed)
    parents = random_parents(n_taxa, rng)
    lengths = rng.uniform(0.01, 0.5, len(parents))
    sequences = simulate_sequences(parents, lengths, model or JC69(), n_sites, rng)
    noisy = [
        "".join(c if rng.random() > 0.1 else rng.choice(list("RYN-?")) for c in s)
        for s in sequences
    ]
    taxa = [f"t{i}" for i in range(n_taxa)]
    return Alignment.from_sequences(list(zip(taxa, noisy, strict=True))), parents, lengths


def kernel_outputs(
    workspace, model, alignment, parents, lengths, pairs=False, tensors=None, **options
):
    """(log L, and d log L_b / d transitions, pi, category weights) from one workspace, for
    4 x 4 matrices or (pairs) Jukes-Cantor pairs; `tensors`: the alignment's tips and
    pattern weights made once (the GPU workspace uploads other tensors anew)."""
    tip_partials, pattern_weights = tensors or (
        alignment.tip_partials(),
        alignment.pattern_weights(),
    )
    lengths = torch.as_tensor(lengths)
    transitions = (
        model.jukes_cantor_coefficients(lengths) if pairs else model.transition_matrices(lengths)
    )
    return workspace.log_likelihoods(
        build_schedule(parents, alignment.n_taxa), transitions.flatten(0, 1).numpy(),
        model.frequencies.numpy(), model.category_weights.numpy(), tip_partials,
        pattern_weights, True, **options,
    )  # fmt: skip


@pytest.mark.parametrize("pairs", [False, True], ids=["GTR+G2-matrices", "JC+G2-pairs"])
def test_where_vectors_are_rescaled_changes_no_result(pairs):
    """The rescaling range only decides where scale factors are taken out, which the
    likelihood adds back and the gradients' ratios cancel: rescaling almost every vector,
    inside and outside ((0.5, 1.5)), or none ((0, inf); a 6-taxon tree does not underflow)
    gives the default range's log L and gradients in every transition matrix (or pair), pi
    and the category weights; and log L equals the reference pruning's."""
    model = (
        JC69(gamma_categories=2, alpha=0.6)
        if pairs
        else GTR(torch.tensor(GTR_RATES, dtype=torch.float64), None, 2, 0.6)
    )
    alignment, parents, _ = small_problem(6, 110, seed=21, model=model)
    rng = np.random.default_rng(22)
    parents = np.stack([parents, random_parents(6, rng), random_parents(6, rng)])
    lengths = rng.uniform(0.01, 0.8, parents.shape)
    default = kernel_outputs(Workspace(), model, alignment, parents, lengths, pairs)
    for rescale_range in [(0.5, 1.5), (0.0, np.inf)]:
        outputs = kernel_outputs(
            Workspace(), model, alignment, parents, lengths, pairs, rescale_range=rescale_range
        )
        for values, expected in zip(outputs, default, strict=True):
            np.testing.assert_allclose(values, expected, rtol=1e-11, atol=1e-11)
    reference = [
        reference_log_likelihood(alignment, model, tree, torch.as_tensor(tree_lengths)).item()
        for tree, tree_lengths in zip(parents, lengths, strict=True)
    ]
    np.testing.assert_allclose(default[0], reference, rtol=1e-10)


# --- Independent software: IQ-TREE 2.0.7 --------------------------------------------------
# Values made with `iqtree2 -s DSn.fasta -te TREE -blfix -m MODEL` (fixed topology and branch
# lengths; MODEL as in the iqtree_model column), see ../shared/reference/README.md.


def test_reproduces_every_iqtree_reference_row(data_dir, reference_dir):
    rows = list(csv.DictReader(open(reference_dir / "iqtree_loglik.tsv"), delimiter="\t"))
    assert len(rows) == 24
    by_dataset_model = itertools.groupby(
        sorted(rows, key=lambda r: (r["dataset"], r["model"])),
        key=lambda r: (r["dataset"], r["model"]),
    )
    for (dataset, model_name), group in by_dataset_model:
        group = list(group)
        alignment = load_alignment(data_dir / dataset / f"{dataset}.fasta")
        converted = [
            topology_from_dendropy(parse_tree_text(r["newick"], dataset)[0], alignment.taxa)
            for r in group
        ]
        parents = np.stack([t.parents for t, _ in converted])  # different topologies in one batch
        lengths = torch.as_tensor(np.stack([length for _, length in converted]))
        values = TreeLikelihood(alignment, reference_model(model_name))(parents, lengths)
        for row, value in zip(group, values.tolist(), strict=True):
            expected = float(row["loglik"])
            assert value == pytest.approx(expected, rel=1e-6), (dataset, row["tree"], model_name)


@pytest.mark.parametrize("dataset", [f"DS{i}" for i in range(1, 9)])
def test_ml_tree_matches_iqtree_log_likelihood(data_dir, dataset):
    """DS1-DS8 ML trees (JC) against IQ-TREE's printed log-likelihood; DS5-DS8 check underflow."""
    folder = data_dir / dataset / "ufboot"
    alignment = load_alignment(data_dir / dataset / f"{dataset}.fasta")
    tree = read_tree_file(folder / "ml_rep_1.treefile")[0]
    topology, lengths = topology_from_dendropy(tree, alignment.taxa)
    parents = topology.parents
    expected = float(re.search(r"-?\d+\.\d+", (folder / "ml_rep_1.lnl.txt").read_text()).group())
    value = float(TreeLikelihood(alignment, JC69())(parents[None], torch.as_tensor(lengths)[None]))
    # the treefile prints 10 significant digits of each branch length
    assert value == pytest.approx(expected, rel=1e-6)


# --- Closed form: enumeration of internal states ---------------------------------------------


def enumerated_log_likelihood(alignment, model, parents, lengths) -> float:
    """sum_p n_p log sum over all internal-state assignments of the joint probability."""
    n = alignment.n_taxa
    q = model.rate_matrix()
    tips = alignment.tip_partials().numpy()
    total = 0.0
    for p in range(alignment.n_patterns):
        site = 0.0
        for c, rate in enumerate(model.category_rates.tolist()):
            matrices = [torch.linalg.matrix_exp(q * float(t) * rate).numpy() for t in lengths]
            for assignment in itertools.product(range(4), repeat=n - 2):
                state = dict(enumerate(assignment, start=n))
                probability = float(model.frequencies[state[2 * n - 3]])
                for child, parent in enumerate(parents):
                    if child < n:
                        probability *= matrices[child][state[parent]] @ tips[child, :, p]
                    else:
                        probability *= matrices[child][state[parent], state[child]]
                site += float(model.category_weights[c]) * probability
        total += float(alignment.weights[p]) * np.log(site)
    return total


@pytest.mark.parametrize("n_taxa", [4, 5])
@pytest.mark.parametrize("model_name", ["JC", "GTR+G4"])
def test_matches_enumeration_over_internal_states(n_taxa, model_name):
    model = reference_model(model_name)
    alignment, parents, lengths = small_problem(n_taxa, 12, seed=n_taxa, model=model)
    value = TreeLikelihood(alignment, model)(parents[None], torch.as_tensor(lengths)[None])
    assert float(value) == pytest.approx(
        enumerated_log_likelihood(alignment, model, parents, lengths), rel=1e-12
    )


def test_single_site_two_cherries_closed_form():
    """((a,b),(c,d)) with one site A,A,C,C under JC, all branches t, written out by hand."""
    t = 0.1
    same = 0.25 + 0.75 * np.exp(-4 * t / 3)
    diff = (1 - same) / 3
    p = np.full((4, 4), diff) + np.eye(4) * (same - diff)
    # root at the internal node above a,b; u = the other internal node
    total = sum(0.25 * p[x, 0] ** 2 * p[x, y] * p[y, 1] ** 2 for x in range(4) for y in range(4))
    alignment = Alignment.from_sequences([("a", "A"), ("b", "A"), ("c", "C"), ("d", "C")])
    parents = np.array([5, 5, 4, 4, 5])  # node 4 joins c, d; root 5 holds a, b, 4
    value = TreeLikelihood(alignment, JC69())(
        parents[None], torch.full((1, 5), t, dtype=torch.float64)
    )
    assert float(value) == pytest.approx(np.log(total), rel=1e-13)


# --- Invariances ---------------------------------------------------------------------------


def test_invariant_to_rerooting():
    model = HKY(2.5, torch.tensor(FREQS))
    alignment, parents, lengths = small_problem(9, 60, seed=1, model=model)
    values, encodings = [], set()
    for new_root in range(9, 16):
        p, length = reroot(parents, lengths, new_root)
        encodings.add(tuple(p))
        values.append(
            float(TreeLikelihood(alignment, model)(p[None], torch.as_tensor(length)[None]))
        )
    assert len(encodings) == 7  # the encodings really differ
    np.testing.assert_allclose(values, values[0], rtol=1e-12)


def site_records(alignment: Alignment) -> list[tuple[str, str]]:
    """The alignment written back out site by site (ambiguity codes as N)."""
    columns = alignment.patterns.repeat(alignment.weights, axis=1)
    letters = {1: "A", 2: "C", 4: "G", 8: "T"}
    return [
        (name, "".join(letters.get(int(b), "N") for b in row))
        for name, row in zip(alignment.taxa, columns, strict=True)
    ]


def test_invariant_to_taxon_order_in_file():
    alignment, parents, lengths = small_problem(8, 80, seed=2)
    newick = newick_from_parents(parents, alignment.taxa, lengths)
    records = site_records(alignment)
    values = []
    for order in (records, records[::-1]):
        reordered = Alignment.from_sequences(order)
        topology, length = topology_from_dendropy(parse_tree_text(newick, "t")[0], reordered.taxa)
        p = topology.parents
        values.append(
            float(TreeLikelihood(reordered, JC69())(p[None], torch.as_tensor(length)[None]))
        )
    assert values[0] == pytest.approx(values[1], rel=1e-13)


def test_compressed_patterns_equal_uncompressed_sites():
    alignment, parents, lengths = small_problem(7, 200, seed=3)
    records = site_records(alignment)
    full = Alignment.from_sequences(records, compress=False)
    packed = Alignment.from_sequences(records)
    assert packed.n_patterns < full.n_patterns
    bl = torch.as_tensor(lengths)[None]
    assert float(TreeLikelihood(full, JC69())(parents[None], bl)) == pytest.approx(
        float(TreeLikelihood(packed, JC69())(parents[None], bl)), rel=1e-13
    )


# --- Batching and gradients ----------------------------------------------------------------


def test_batch_of_different_topologies_equals_one_at_a_time_reference():
    model = GTR(
        torch.tensor(GTR_RATES, dtype=torch.float64),
        torch.tensor(FREQS, dtype=torch.float64),
        4,
        0.5,
    )
    alignment, _, _ = small_problem(10, 150, seed=4, model=model)
    rng = np.random.default_rng(5)
    parents = np.stack([random_parents(10, rng) for _ in range(6)])
    lengths = torch.as_tensor(rng.uniform(0.001, 0.8, (6, 17))).requires_grad_()
    batched = TreeLikelihood(alignment, model)(parents, lengths)
    batched.sum().backward()
    for b in range(6):
        single = lengths.detach()[b].clone().requires_grad_()
        expected = reference_log_likelihood(alignment, model, parents[b], single)
        expected.backward()
        assert float(batched[b].detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
        torch.testing.assert_close(lengths.grad[b], single.grad, rtol=1e-8, atol=1e-8)


def test_leading_dimensions_share_topologies():
    alignment, _, _ = small_problem(6, 50, seed=6)
    rng = np.random.default_rng(7)
    parents = np.stack([random_parents(6, rng) for _ in range(3)])
    lengths = torch.as_tensor(rng.uniform(0.01, 0.3, (2, 4, 3, 9)))
    likelihood = TreeLikelihood(alignment, JC69())
    values = likelihood(parents, lengths)
    assert values.shape == (2, 4, 3)
    torch.testing.assert_close(values[1, 2], likelihood(parents, lengths[1, 2]), rtol=1e-14, atol=0)


def test_branch_length_gradient_equals_central_finite_differences():
    alignment, parents, lengths = small_problem(8, 100, seed=8, model=HKY(2.5, torch.tensor(FREQS)))
    likelihood = TreeLikelihood(alignment, HKY(2.5, torch.tensor(FREQS)))
    bl = torch.as_tensor(lengths)[None].clone().requires_grad_()
    likelihood(parents[None], bl).sum().backward()
    h = 1e-6
    for e in range(len(lengths)):
        up, down = bl.detach().clone(), bl.detach().clone()
        up[0, e] += h
        down[0, e] -= h
        numeric = (
            float(likelihood(parents[None], up)) - float(likelihood(parents[None], down))
        ) / (2 * h)
        # central differences: truncation O(h^2 f''') and rounding O(eps |f| / h) ~ 1e-7
        assert float(bl.grad[0, e]) == pytest.approx(numeric, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("per_category", [(4, 4), (2,)], ids=["4x4", "jc-pairs"])
def test_gradcheck_in_transitions_frequencies_and_category_weights(per_category):
    """Any positive transitions will do: 4 x 4 matrices for the general loops, pairs (a, b)
    of P = a I + b J for the Jukes-Cantor ones."""
    alignment, parents, _ = small_problem(5, 8, seed=9)
    rng = np.random.default_rng(10)
    parents = np.stack([parents, random_parents(5, rng)])
    schedule = build_schedule(parents, 5)
    transitions = torch.as_tensor(rng.uniform(0.05, 1.0, (2, 7, 2, *per_category)))
    frequencies = torch.as_tensor(rng.uniform(0.1, 1.0, 4)).requires_grad_()
    weights = torch.as_tensor([0.3, 0.7], dtype=torch.float64).requires_grad_()

    def function(t, f, w):
        return pruning_log_likelihood(
            schedule, t, f, w, alignment.tip_partials(), alignment.pattern_weights()
        )

    assert torch.autograd.gradcheck(function, (transitions.requires_grad_(), frequencies, weights))


def test_jukes_cantor_pairs_equal_the_4x4_matrices():
    """JC+G4 on a batch of trees: the (a, b) loops give the value and the gradient in the
    branch lengths, frequencies and category weights of the general 4 x 4 loops."""
    model = JC69(gamma_categories=4, alpha=0.4)
    alignment, _, _ = small_problem(12, 200, seed=18, model=model)
    rng = np.random.default_rng(19)
    schedule = build_schedule(np.stack([random_parents(12, rng) for _ in range(6)]), 12)
    lengths = torch.as_tensor(rng.uniform(1e-4, 1.5, (6, 21)))
    upstream = torch.as_tensor(rng.normal(size=6))
    results = []
    for transitions in (model.jukes_cantor_coefficients, model.transition_matrices):
        inputs = [t.clone().requires_grad_() for t in (lengths, model.frequencies)]
        weights = model.category_weights.clone().requires_grad_()
        value = pruning_log_likelihood(
            schedule, transitions(inputs[0]), inputs[1], weights, alignment.tip_partials(),
            alignment.pattern_weights(),
        )  # fmt: skip
        gradients = torch.autograd.grad((value * upstream).sum(), [*inputs, weights])
        results.append((value.detach(), *gradients))
    for pairs, matrices in zip(*results, strict=True):
        torch.testing.assert_close(pairs, matrices, rtol=1e-11, atol=1e-11)


def test_graphs_sharing_a_workspace_keep_their_own_gradients():
    """The gradient is computed in the forward call; a later forward on the same buffers must
    not change what an earlier graph's backward returns."""
    alignment, parents, lengths = small_problem(6, 30, seed=11)
    model, workspace = JC69(), Workspace()
    args = (model.frequencies, model.category_weights, alignment.tip_partials())
    schedule = build_schedule(parents[None], 6)
    gradients = []
    for shared in (True, False):
        first = torch.as_tensor(lengths)[None].clone().requires_grad_()
        second = (2 * torch.as_tensor(lengths)[None]).requires_grad_()
        values = [
            pruning_log_likelihood(
                schedule,
                model.transition_matrices(bl),
                *args,
                alignment.pattern_weights(),
                workspace if shared else None,
            )  # fmt: skip
            for bl in (first, second)
        ]
        values[0].sum().backward()
        gradients.append(first.grad)
    torch.testing.assert_close(gradients[0], gradients[1], rtol=0, atol=0)


def balanced_parents(group_sizes: tuple[int, int, int]) -> np.ndarray:
    """Parent array of a tree whose root joins three balanced subtrees of the given sizes."""
    n = sum(group_sizes)
    parents = np.empty(2 * n - 3, dtype=np.int64)
    free = iter(range(n, 2 * n - 3))

    def subtree(tips: list[int]) -> int:
        if len(tips) == 1:
            return tips[0]
        node = next(free)
        for half in (tips[: len(tips) // 2], tips[len(tips) // 2 :]):
            parents[subtree(half)] = node
        return node

    start = 0
    for size in group_sizes:
        parents[subtree(list(range(start, start + size)))] = 2 * n - 3
        start += size
    return parents


# JC69 takes the Jukes-Cantor loops, K80 (kappa 3) the general 4 x 4 ones.
KERNEL_PATHS = pytest.mark.parametrize("model", [JC69(), K80(3.0)], ids=["jc-pairs", "4x4"])


@KERNEL_PATHS
def test_outside_vectors_rescaled_below_unrescaled_inside_vectors(model):
    """160 taxa in root subtrees of 32, 64 and 64 tips, long branches, random states: every
    message is about 1/4, so inside vectors stay above the rescaling range's 2^-256 (at most
    4^-64) while outside vectors fall below it (the 32-tip subtree's top, 4^-129, and the
    other subtrees' nodes with fewer than 32 tips below): the outside pass must work out its
    own n_p / site at those nodes and may reuse the root's elsewhere. Value and gradient
    against the reference recursion (site likelihoods about 4^-160, within double range)."""
    assert RESCALE_RANGE[0] == 4.0**-128  # the design above
    rng = np.random.default_rng(16)
    parents = balanced_parents((32, 64, 64))
    records = [(f"t{i}", "".join(rng.choice(list("ACGT"), 30))) for i in range(160)]
    alignment = Alignment.from_sequences(records)
    lengths = torch.as_tensor(rng.uniform(1.5, 2.5, (1, 317))).requires_grad_()
    value = TreeLikelihood(alignment, model)(parents[None], lengths)
    (gradient,) = torch.autograd.grad(value.sum(), lengths)
    reference_lengths = lengths.detach()[0].clone().requires_grad_()
    expected = reference_log_likelihood(alignment, model, parents, reference_lengths)
    (expected_gradient,) = torch.autograd.grad(expected, reference_lengths)
    assert float(value.detach()) == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(gradient[0], expected_gradient, rtol=1e-9, atol=1e-12)


@KERNEL_PATHS
def test_site_likelihoods_below_double_range_do_not_underflow(model):
    """64 taxa, random states, branches of about 1e-10: every site needs dozens of changes, so
    its likelihood is far below 1e-308 and only rescaling (inside and outside vectors) keeps
    the value and the branch-length gradient finite; both against the reference recursion."""
    rng = np.random.default_rng(12)
    parents = random_parents(64, rng)
    records = [(f"t{i}", "".join(rng.choice(list("ACGT"), 40))) for i in range(64)]
    alignment = Alignment.from_sequences(records)
    lengths = torch.as_tensor(rng.uniform(1e-10, 2e-10, (1, 125))).requires_grad_()
    value = TreeLikelihood(alignment, model)(parents[None], lengths)
    (gradient,) = torch.autograd.grad(value.sum(), lengths)
    value = value.detach()
    assert float(value) / alignment.n_sites < np.log(np.finfo(np.float64).tiny)  # out of range
    reference_lengths = lengths.detach()[0].clone().requires_grad_()
    expected = reference_log_likelihood(alignment, model, parents, reference_lengths)
    (expected_gradient,) = torch.autograd.grad(expected, reference_lengths)
    assert float(value) == pytest.approx(expected.item(), rel=1e-10)
    torch.testing.assert_close(gradient[0], expected_gradient, rtol=1e-8, atol=0)


def test_a_batch_gives_each_tree_its_own_value_and_gradient():
    """Trees are split into blocks, one per thread, sharing scratch rows; batched results
    must equal those of each tree alone."""
    model = GTR(torch.tensor(GTR_RATES, dtype=torch.float64), None, 2, 0.7)
    alignment, _, _ = small_problem(9, 60, seed=14, model=model)
    rng = np.random.default_rng(15)
    parents = np.stack([random_parents(9, rng) for _ in range(5)])
    lengths = torch.as_tensor(rng.uniform(0.01, 0.4, (5, 15)))
    upstream = torch.as_tensor(rng.normal(size=5))

    def value_and_gradient(trees, branch_lengths, weights):
        bl = branch_lengths.clone().requires_grad_()
        value = pruning_log_likelihood(
            build_schedule(trees, 9), model.transition_matrices(bl), model.frequencies,
            model.category_weights, alignment.tip_partials(), alignment.pattern_weights(),
        )  # fmt: skip
        (value * weights).sum().backward()
        return value.detach(), bl.grad

    batch_value, batch_gradient = value_and_gradient(parents, lengths, upstream)
    for b in range(5):
        value, gradient = value_and_gradient(parents[b : b + 1], lengths[b : b + 1], upstream[b])
        torch.testing.assert_close(batch_value[b : b + 1], value, rtol=1e-14, atol=0)
        torch.testing.assert_close(batch_gradient[b : b + 1], gradient, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(shutil.which("iqtree2") is None, reason="IQ-TREE 2 (iqtree2) not installed")
def test_empirical_frequencies_and_their_likelihood_are_iqtree_plus_f(tmp_path):
    """--freqs empirical is IQ-TREE's +F: on an alignment with ambiguity codes and gaps, the
    counted frequencies (IQ-TREE prints four decimals) and the HKY log-likelihood of a fixed
    tree, branch lengths and kappa with them (`iqtree2 -te TREE -blfix -m 'HKY{2.5}+F'`)."""
    model = HKY(2.5, torch.tensor([0.4, 0.1, 0.2, 0.3], dtype=torch.float64))
    alignment, parents, lengths = small_problem(8, 300, seed=21, model=model)
    records = alignment_records(alignment)
    fasta, tree = tmp_path / "aln.fasta", tmp_path / "tree.nwk"
    fasta.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in records))
    tree.write_text(newick_from_parents(parents, alignment.taxa, lengths) + "\n")
    command = ["iqtree2", "-s", fasta, "-st", "DNA", "-te", tree, "-blfix", "-m", "HKY{2.5}+F",
               "-pre", tmp_path / "iq", "-redo", "-nt", "1"]  # fmt: skip
    subprocess.run([str(part) for part in command], check=True, capture_output=True)
    report = (tmp_path / "iq.iqtree").read_text()
    expected = [float(re.search(rf"pi\({s}\) = ([0-9.]+)", report)[1]) for s in "ACGT"]
    expected_log_likelihood = float(re.search(r"Log-likelihood of the tree: (\S+)", report)[1])

    counted = load_alignment(fasta).empirical_frequencies()
    np.testing.assert_allclose(counted, expected, atol=6e-5)
    substitution = build_model("HKY", 2.5, "empirical", alignment=load_alignment(fasta))
    value = TreeLikelihood(load_alignment(fasta), substitution)(
        parents[None], torch.as_tensor(lengths)[None]
    )
    assert float(value) == pytest.approx(expected_log_likelihood, abs=6e-4)


def alignment_records(alignment: Alignment) -> list[tuple[str, str]]:
    """The alignment's sequences back as text (each pattern written out `weight` times)."""
    symbols = {mask: symbol for symbol, mask in ALIGNMENT_SYMBOLS.items()}
    columns = np.repeat(alignment.patterns, alignment.weights, axis=1)
    return [
        (name, "".join(symbols[int(m)] for m in row))
        for name, row in zip(alignment.taxa, columns, strict=True)
    ]


ALIGNMENT_SYMBOLS = {"A": 1, "C": 2, "G": 4, "T": 8, "R": 5, "Y": 10, "N": 15}


def test_empirical_frequencies_share_an_ambiguity_code_in_proportion():
    """Closed forms: unambiguous characters give their proportions; with A, G and R only, the
    EM fixed point keeps A:G at their unambiguous ratio (R adds to both in proportion)."""
    plain = Alignment.from_sequences([("a", "AACG"), ("b", "TTTA"), ("c", "GGCA"), ("d", "ACGT")])
    np.testing.assert_allclose(plain.empirical_frequencies(), [5 / 16, 3 / 16, 4 / 16, 4 / 16])
    mixed = Alignment.from_sequences([("a", "AAAG"), ("b", "RRGC"), ("c", "AC--"), ("d", "NNTT")])
    frequencies = np.array(mixed.empirical_frequencies())
    # unambiguous: A 4, C 2, G 2, T 2 (10); R x2 split A:G = 2:1, so A 4 + 4/3, G 2 + 2/3
    np.testing.assert_allclose(frequencies, np.array([16 / 3, 2, 8 / 3, 2]) / 12, rtol=1e-12)
