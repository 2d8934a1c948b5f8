"""The GPU pruning kernel (vbpi_mix.phylo.cuda_pruning) against the CPU kernel, which the
likelihood tests check against IQ-TREE, enumeration and finite differences, and against the
reference recursion where only rescaling keeps sites in double range.

Without an NVIDIA GPU, conftest.py runs numba's CUDA simulator, the same kernel code executed
thread by thread on the CPU (slow: small problems only); on a GPU these tests run the
compiled kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numba import config as numba_config

from tests.test_likelihood import GTR_RATES, kernel_outputs, small_problem
from vbpi_mix.errors import VbpiMixError
from vbpi_mix.phylo.alignment import Alignment
from vbpi_mix.phylo.likelihood import TreeLikelihood, Workspace
from vbpi_mix.phylo.models import GTR, JC69, K80
from vbpi_mix.phylo.reference_pruning import reference_log_likelihood
from vbpi_mix.trees.random_tree import random_parents

cuda_pruning = pytest.importorskip("vbpi_mix.phylo.cuda_pruning")
SIMULATED = bool(numba_config.ENABLE_CUDASIM)
pytestmark = pytest.mark.skipif(
    not cuda_pruning.cuda_available(), reason="no CUDA GPU and no numba CUDA simulator"
)


@pytest.mark.parametrize(
    "rescale_range", [None, (0.5, 1.5)], ids=["double-range", "rescale-every-pattern"]
)
@pytest.mark.parametrize("pairs", [False, True], ids=["GTR+G2-matrices", "JC+G2-pairs"])
def test_gpu_kernel_equals_cpu_kernel(rescale_range, pairs):
    """Three different 6-taxon trees, more patterns than one block of threads (sums across
    blocks), GTR+G2 as 4 x 4 matrices or JC+G2 as Jukes-Cantor pairs: log L and the gradients
    in every transition matrix (or pair), pi and the category weights equal the CPU
    kernel's. The narrow range rescales almost every vector, inside and outside, on the GPU
    alone, which must not change any result."""
    model = (
        JC69(gamma_categories=2, alpha=0.6)
        if pairs
        else GTR(torch.tensor(GTR_RATES, dtype=torch.float64), None, 2, 0.6)
    )
    alignment, parents, _ = small_problem(6, 110, seed=21, model=model)
    assert alignment.n_patterns > cuda_pruning.BLOCK
    rng = np.random.default_rng(22)
    parents = np.stack([parents, random_parents(6, rng), random_parents(6, rng)])
    lengths = rng.uniform(0.01, 0.8, parents.shape)
    options = {} if rescale_range is None else {"rescale_range": rescale_range}
    gpu = kernel_outputs(
        cuda_pruning.CudaWorkspace(), model, alignment, parents, lengths, pairs, **options
    )
    cpu = kernel_outputs(Workspace(), model, alignment, parents, lengths, pairs)
    for gpu_values, cpu_values in zip(gpu, cpu, strict=True):
        assert gpu_values.shape == cpu_values.shape
        np.testing.assert_allclose(gpu_values, cpu_values, rtol=1e-11, atol=1e-11)


def test_tree_likelihood_on_cuda_equals_cpu_under_jukes_cantor():
    """Through TreeLikelihood, both kernels taking Jukes-Cantor pairs: values and
    branch-length gradients (random upstream weights) agree, with
    leading dimensions sharing the topologies, in a first call and in a second one that reuses
    each workspace's buffers, and values without a gradient."""
    alignment, parents, _ = small_problem(5, 40, seed=23)
    rng = np.random.default_rng(24)
    parents = np.stack([parents, random_parents(5, rng)])
    upstream = torch.as_tensor(rng.normal(size=(2, 2)))
    cpu, gpu = TreeLikelihood(alignment, JC69()), TreeLikelihood(alignment, JC69(), "cuda")
    for _ in range(2):
        lengths = rng.uniform(0.01, 0.5, (2, 2, 7))
        outcomes = []
        for likelihood in (cpu, gpu):
            branch_lengths = torch.as_tensor(lengths).requires_grad_()
            value = likelihood(parents, branch_lengths)
            (gradient,) = torch.autograd.grad((value * upstream).sum(), branch_lengths)
            outcomes.append((value.detach(), gradient))
        (cpu_value, cpu_gradient), (gpu_value, gpu_gradient) = outcomes
        torch.testing.assert_close(gpu_value, cpu_value, rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(gpu_gradient, cpu_gradient, rtol=1e-10, atol=1e-10)
    with torch.no_grad():  # the kernel's likelihood-only path
        lengths = torch.as_tensor(rng.uniform(0.01, 0.5, (2, 2, 7)))
        torch.testing.assert_close(gpu(parents, lengths), cpu(parents, lengths), rtol=1e-12, atol=0)


def test_calls_of_other_shapes_reuse_or_replace_the_kept_call_arrays(monkeypatch):
    """The workspace keeps each call shape's views of its buffers (here at most two shapes);
    a larger batch grows the buffers and drops them. Batches of one tree, three (growth),
    one (kept beside three), two (a third shape: the kept ones dropped) and one after another
    alignment's tips were uploaded: each equals the CPU kernel."""
    monkeypatch.setattr(cuda_pruning, "_KEPT_CALL_SHAPES", 2)
    model = JC69()
    first, parents, _ = small_problem(5, 30, seed=26)
    other, _, _ = small_problem(5, 30, seed=27)
    rng = np.random.default_rng(28)
    parents = np.stack([parents, random_parents(5, rng), random_parents(5, rng)])
    tensors = {id(a): (a.tip_partials(), a.pattern_weights()) for a in (first, other)}
    gpu, cpu = cuda_pruning.CudaWorkspace(), Workspace()
    steps = ((first, 1, 1), (first, 3, 1), (first, 1, 2), (first, 2, 1), (other, 1, 1))
    for alignment, batch, kept in steps:
        lengths = rng.uniform(0.01, 0.5, (batch, 7))
        outputs = [
            kernel_outputs(workspace, model, alignment, parents[:batch], lengths, True,
                           tensors[id(alignment)])
            for workspace in (gpu, cpu)
        ]  # fmt: skip
        for gpu_values, cpu_values in zip(*outputs, strict=True):
            np.testing.assert_allclose(gpu_values, cpu_values, rtol=1e-11, atol=1e-11)
        assert len(gpu._calls) == kept


@pytest.mark.skipif(SIMULATED, reason="64 taxa take minutes in numba's CUDA simulator")
@pytest.mark.parametrize("model", [JC69(), K80(3.0)], ids=["JC", "K80"])
def test_site_likelihoods_below_double_range_do_not_underflow_on_the_gpu(model):
    """As the CPU kernel's test: 64 taxa, random states, branches of about 1e-10, so that only
    rescaling keeps sites (far below 1e-308) and their gradients finite; value and
    branch-length gradient against the reference recursion."""
    rng = np.random.default_rng(12)
    parents = random_parents(64, rng)
    records = [(f"t{i}", "".join(rng.choice(list("ACGT"), 40))) for i in range(64)]
    alignment = Alignment.from_sequences(records)
    lengths = torch.as_tensor(rng.uniform(1e-10, 2e-10, (1, 125))).requires_grad_()
    value = TreeLikelihood(alignment, model, "cuda")(parents[None], lengths)
    (gradient,) = torch.autograd.grad(value.sum(), lengths)
    assert float(value.detach()) / alignment.n_sites < np.log(np.finfo(np.float64).tiny)
    reference_lengths = lengths.detach()[0].clone().requires_grad_()
    expected = reference_log_likelihood(alignment, model, parents, reference_lengths)
    (expected_gradient,) = torch.autograd.grad(expected, reference_lengths)
    assert float(value.detach()) == pytest.approx(expected.item(), rel=1e-10)
    torch.testing.assert_close(gradient[0], expected_gradient, rtol=1e-8, atol=0)


def test_more_rate_categories_than_the_kernel_holds_are_refused():
    model = JC69(gamma_categories=cuda_pruning.MAX_CATEGORIES + 1, alpha=0.5)
    alignment, parents, lengths = small_problem(4, 10, seed=25)
    with pytest.raises(VbpiMixError, match=f"at most {cuda_pruning.MAX_CATEGORIES} rate"):
        TreeLikelihood(alignment, model, "cuda")(parents[None], torch.as_tensor(lengths)[None])


def test_a_cuda_target_that_cannot_compile_is_a_one_line_error(monkeypatch):
    """As numba-cuda 0.68 under numpy 2.5: the workspace's trial kernel fails to compile."""

    def failing_launch(*_):
        raise AttributeError("module 'numpy' has no attribute 'row_stack'\n(traceback lines)")

    class Uncompilable:
        def __getitem__(self, configuration):
            return failing_launch

    monkeypatch.setattr(cuda_pruning, "_zero", Uncompilable())
    with pytest.raises(VbpiMixError, match="row_stack'\\); check numba-cuda") as caught:
        cuda_pruning.CudaWorkspace()
    assert "\n" not in str(caught.value)
