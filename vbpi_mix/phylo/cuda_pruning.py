"""The pruning kernel on an NVIDIA GPU (numba.cuda): log-likelihoods of a batch of trees and
their gradients, with the contract of the CPU kernel (vbpi_mix.phylo.likelihood states the
mathematics), for `TreeLikelihood(..., device="cuda")`.

Only the likelihood runs on the GPU, as BEAGLE offloads it for MrBayes: the caller's tensors
stay on the CPU, transition matrices `[B*E, C, 4, 4]` (under Jukes-Cantor their pairs (a, b)
of P = a I + b J, `[B*E, C, 2]`, as for the CPU kernel) go to the GPU and the log-likelihoods
and gradients come back, up to a few hundred kilobytes each way per training step. The kernel
reads a matrix entry through `_transition`, so one kernel serves both forms; with pairs the
copies and the gradient sums over a block are 8 times smaller, and the caller builds no
4 x 4 matrices.

One GPU thread per (tree, site pattern) walks its tree's nodes children first (inside
vectors, kept in a device buffer `[B, N-3, C, 4, P]` with the patterns contiguous, so that
the threads of a warp read and write adjacent addresses), then parents first (outside vectors
written over the inside vectors, as the CPU kernel does). Each pattern is rescaled on its own
whenever its largest entry leaves the rescaling range (RESCALE_RANGE); in the outside pass every
node works out its own site likelihood from the vectors in hand,

    site_u(p) = sum_c w_c sum_i D_u[c, i, p] (P_e0 L_0)[c, i, p] (P_e1 L_1)[c, i, p],

so scale factors cancel without bookkeeping. Sums over patterns (log L, the gradients) are
added up within a block in shared memory and across blocks with atomic adds, so their
rounding, unlike the CPU kernel's, varies from run to run in the last bits.

Patterns are padded to a multiple of the block size with zero-weight patterns whose tips are
all ones (their site likelihood is 1, and they add nothing). Numba's CUDA simulator
(NUMBA_ENABLE_CUDASIM=1) runs the same kernel on the CPU, which is how the tests check it
without a GPU.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from numba import cuda, float64
from numba.cuda.cudadrv.driver import CudaAPIError

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.phylo.pattern_loops import RESCALE_RANGE, TINY
from vbpi_mix.phylo.schedule import Schedule

if TYPE_CHECKING:
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

BLOCK = 64  # threads (site patterns) per block
MAX_CATEGORIES = 8  # a thread keeps three messages `[C, 4]` in fixed-size local memory
_GRADIENT_WIDTH = 16  # most values summed over a block at once: one category's 4 x 4 gradient
_KEPT_CALL_SHAPES = 8  # a training run uses two or three (training, evaluation chunks)


@cuda.jit(device=True)
def _entry(tips, inner, b, first_row, row, c, i, p):
    """Entry (c, i, p) of the vector of schedule row `row` in tree b: a tip's partial (shared
    by the categories) or the tree's inside (or outside) vector."""
    if row < tips.shape[0]:
        return tips[row, i, p]
    return inner[b, row - first_row, c, i, p]


@cuda.jit(device=True)
def _transition(transitions, edge, c, i, j):
    """P_edge[c, i, j] from transitions `[B*E, C, W]`: the matrix row by row (W = 16) or the
    Jukes-Cantor pair (a, b) of P = a I + b J (W = 2). The test is the same for every thread
    of a launch, so the threads of a warp never diverge on it."""
    if transitions.shape[2] == 2:
        return transitions[edge, c, 1] + (transitions[edge, c, 0] if i == j else 0.0)
    return transitions[edge, c, 4 * i + j]


@cuda.jit(device=True)
def _message(messages, slot, transitions, edge, tips, inner, b, first_row, row, p):
    """messages[slot, c, i] = sum_j P_edge[c, i, j] L_row[c, j, p] for every category c."""
    for c in range(transitions.shape[1]):
        x0 = _entry(tips, inner, b, first_row, row, c, 0, p)
        x1 = _entry(tips, inner, b, first_row, row, c, 1, p)
        x2 = _entry(tips, inner, b, first_row, row, c, 2, p)
        x3 = _entry(tips, inner, b, first_row, row, c, 3, p)
        for i in range(4):
            messages[slot, c, i] = (
                _transition(transitions, edge, c, i, 0) * x0
                + _transition(transitions, edge, c, i, 1) * x1
                + _transition(transitions, edge, c, i, 2) * x2
                + _transition(transitions, edge, c, i, 3) * x3
            )


@cuda.jit(device=True)
def _child_messages(
    messages, transitions, child_edges, child_rows, k, tips, inner, b, first_row, p
):
    """messages[s] = the message from child s (0, 1) of internal schedule row k, for the
    inside pass (their product) and the outside pass (each child's U needs the other's)."""
    for s in range(2):
        _message(messages, s, transitions, child_edges[k, s], tips, inner, b, first_row,
                 child_rows[k, s], p)  # fmt: skip


@cuda.jit(device=True)
def _rescale(inner, b, j, p, largest, n_categories):
    """Divide pattern p of inside/outside vector j of tree b by its largest entry (at least
    TINY); return the log of the factor taken out."""
    largest = max(largest, TINY)
    factor = 1.0 / largest
    for c in range(n_categories):
        for i in range(4):
            inner[b, j, c, i, p] *= factor
    return math.log(largest)


@cuda.jit(device=True)
def _block_add(shared, column, n_values, out, offset):
    """out[offset + k] += sum over the block's threads of shared[thread, column + k], for
    k < n_values. Every thread of the block must call it (it synchronises the block)."""
    cuda.syncthreads()
    t = cuda.threadIdx.x
    if t < n_values:
        total = 0.0
        for r in range(BLOCK):
            total += shared[r, column + t]
        cuda.atomic.add(out, offset + t, total)
    cuda.syncthreads()


@cuda.jit(device=True)
def _edge_gradient(
    shared, messages, first, second, frequencies, use_frequencies, coefficient, weights,
    transitions, edge, tips, inner, b, first_row, row, p, below, above, grad_transitions,
):  # fmt: skip
    """Gradient of the edge above schedule row `row`, with U = f * messages[first] *
    messages[second] (f = pi at the root, else 1):

        d log L / d P_edge[c, i, j] += coefficient w_c U[c, i] L_row[c, j]   (summed over p),

    coefficient being n_p / site(p) computed from the same (rescaled) vectors; for a
    Jukes-Cantor pair its two sums, d / d a = sum_i G_ii and d / d b = sum_ij G_ij,

    and, for an internal node, its outside vector D = P_edge^T U written over its inside
    vector (read first, category by category), rescaled when out of range."""
    t = cuda.threadIdx.x
    n_categories, width = transitions.shape[1], transitions.shape[2]
    internal = row >= tips.shape[0]
    largest = 0.0
    for c in range(n_categories):
        u = cuda.local.array(4, float64)
        for i in range(4):
            factor = frequencies[i] if use_frequencies else 1.0
            u[i] = factor * messages[first, c, i] * messages[second, c, i]
        scale = coefficient * weights[c]
        if width == 2:
            diagonal = sum_u = sum_lower = 0.0
            for i in range(4):
                lower = scale * _entry(tips, inner, b, first_row, row, c, i, p)
                diagonal += u[i] * lower
                sum_u += u[i]
                sum_lower += lower
            shared[t, 0], shared[t, 1] = diagonal, sum_u * sum_lower
        else:
            for j in range(4):
                lower = scale * _entry(tips, inner, b, first_row, row, c, j, p)
                for i in range(4):
                    shared[t, 4 * i + j] = u[i] * lower
        _block_add(shared, 0, width, grad_transitions, (edge * n_categories + c) * width)
        if internal:
            for j in range(4):
                down = (
                    _transition(transitions, edge, c, 0, j) * u[0]
                    + _transition(transitions, edge, c, 1, j) * u[1]
                    + _transition(transitions, edge, c, 2, j) * u[2]
                    + _transition(transitions, edge, c, 3, j) * u[3]
                )
                inner[b, row - first_row, c, j, p] = down
                largest = max(largest, down)
    if internal and (largest < below or largest > above):
        _rescale(inner, b, row - first_row, p, largest, n_categories)


@cuda.jit
def _pruning_kernel(
    tips, inner, n_inner, transitions, child_rows, child_edges, root_rows, root_edges,
    frequencies, weights, pattern_weights, below, above, with_gradient, log_likelihood,
    grad_transitions, grad_frequencies, grad_weights,
):  # fmt: skip
    """Block (x, b) handles patterns x*BLOCK ... of tree b; outputs are flat and zeroed by the
    caller: log_likelihood `[B]`, grad_transitions `[B*E*C*W]`, grad_frequencies `[B*4]`,
    grad_weights `[B*C]`."""
    b = cuda.blockIdx.y
    t = cuda.threadIdx.x
    p = cuda.blockIdx.x * BLOCK + t
    shared = cuda.shared.array((BLOCK, _GRADIENT_WIDTH), float64)
    messages = cuda.local.array((3, MAX_CATEGORIES, 4), float64)
    n_categories = transitions.shape[1]
    first_row = tips.shape[0] + b * n_inner
    log_scale = 0.0
    for j in range(n_inner):
        k = b * n_inner + j
        _child_messages(messages, transitions, child_edges, child_rows, k, tips, inner, b,
                        first_row, p)  # fmt: skip
        largest = 0.0
        for c in range(n_categories):
            for i in range(4):
                value = messages[0, c, i] * messages[1, c, i]
                inner[b, j, c, i, p] = value
                largest = max(largest, value)
        if largest < below or largest > above:
            log_scale += _rescale(inner, b, j, p, largest, n_categories)
    for s in range(3):
        _message(messages, s, transitions, root_edges[b, s], tips, inner, b, first_row,
                 root_rows[b, s], p)  # fmt: skip
    site = 0.0
    for c in range(n_categories):
        for i in range(4):
            product = messages[0, c, i] * messages[1, c, i] * messages[2, c, i]
            site += weights[c] * frequencies[i] * product
    shared[t, 0] = pattern_weights[p] * (math.log(site) + log_scale)
    _block_add(shared, 0, 1, log_likelihood, b)
    if not with_gradient:
        return
    # root: pi, category weights, the three root edges (U of child s: pi times the others)
    coefficient = pattern_weights[p] / site
    for i in range(4):
        shared[t, i] = 0.0
    for c in range(n_categories):
        shared[t, 4] = 0.0
        for i in range(4):
            term = coefficient * messages[0, c, i] * messages[1, c, i] * messages[2, c, i]
            shared[t, i] += weights[c] * term
            shared[t, 4] += frequencies[i] * term
        _block_add(shared, 4, 1, grad_weights, b * n_categories + c)
    _block_add(shared, 0, 4, grad_frequencies, b * 4)
    for s in range(3):
        _edge_gradient(
            shared, messages, 1 if s == 0 else 0, 1 if s == 2 else 2, frequencies, True,
            coefficient, weights, transitions, root_edges[b, s], tips, inner, b, first_row,
            root_rows[b, s], p, below, above, grad_transitions,
        )  # fmt: skip
    # internal nodes parents first: node j holds its D; U(child s) = D * message of the other
    for j in range(n_inner - 1, -1, -1):
        k = b * n_inner + j
        _child_messages(messages, transitions, child_edges, child_rows, k, tips, inner, b,
                        first_row, p)  # fmt: skip
        site = 0.0
        for c in range(n_categories):
            for i in range(4):
                down = inner[b, j, c, i, p]
                messages[2, c, i] = down
                site += weights[c] * down * messages[0, c, i] * messages[1, c, i]
        coefficient = pattern_weights[p] / site
        for s in range(2):
            _edge_gradient(
                shared, messages, 2, 1 - s, frequencies, False, coefficient, weights,
                transitions, child_edges[k, s], tips, inner, b, first_row, child_rows[k, s], p,
                below, above, grad_transitions,
            )  # fmt: skip


@cuda.jit
def _zero(values):
    """values[:] = 0 for a flat device array."""
    index = cuda.grid(1)
    if index < values.size:
        values[index] = 0.0


@contextmanager
def _quiet_about_occupancy():
    """Silence numba's warning that a small grid leaves the GPU idle: small batches are the
    caller's choice, and the warning would be printed for every new grid size. (Matched by
    its text: numba-cuda raises its own copy of NumbaPerformanceWarning.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*under-utilization")
        yield


def cuda_available() -> bool:
    """Whether numba finds a CUDA GPU (or runs its CUDA simulator)."""
    return bool(cuda.is_available())


@dataclass(frozen=True)
class _CallArrays:
    """Everything a call of one shape launches with, made once and reused: device views of
    the workspace's buffers (inputs, outputs, inside vectors), pinned host staging for the
    inputs and the configured kernels. numba-cuda builds each device-array view in Python,
    and making a call's 19 views afresh each time was most of its cost
    (benchmarks/results/gpu.md)."""

    host_floats: np.ndarray  # transition matrices, frequencies, category weights, flat
    host_integers: np.ndarray  # child rows, child edges, root rows, root edges, flat
    floats: DeviceNDArray
    integers: DeviceNDArray
    outputs: DeviceNDArray  # log L, then (with a gradient) the three gradients, flat
    output_bounds: list[tuple[int, int]]
    kernel_arguments: tuple
    zero_outputs: Callable
    pruning: Callable


class CudaWorkspace:
    """Device memory for repeated kernel calls, the GPU's counterpart of
    vbpi_mix.phylo.likelihood.Workspace: the padded tips and pattern weights (uploaded once
    per alignment) and grow-only buffers for the inside vectors, the call's inputs (one float
    and one integer array, so that a call makes two copies to the GPU) and its outputs (one
    array, zeroed by one launch and copied back once). The views and staging arrays of a call
    are kept per call shape (`_CallArrays`), so that a training step, whose shape repeats,
    builds none of them."""

    def __init__(self) -> None:
        if not cuda_available():
            raise VbpiMixError(
                "--likelihood-device cuda: numba finds no CUDA GPU (check the NVIDIA driver, "
                "or use --likelihood-device cpu)"
            )
        try:  # compiling and running a trivial kernel shows whether numba's CUDA target works
            _zero[1, 1](cuda.device_array(1))
        except Exception as error:
            first_line = (str(error).strip().splitlines() or [""])[0]
            raise VbpiMixError(
                f"--likelihood-device cuda: numba cannot run a CUDA kernel here "
                f"({type(error).__name__}: {first_line}); check numba-cuda against numpy "
                "(numba-cuda 0.68 fails under numpy 2.5) or use --likelihood-device cpu"
            ) from error
        self._source: tuple[torch.Tensor, torch.Tensor] | None = None
        self._tips = self._pattern_weights = None
        self._buffers: dict[str, DeviceNDArray] = {}
        self._calls: dict[tuple, _CallArrays] = {}

    def _upload(self, tip_partials: torch.Tensor, pattern_weights: torch.Tensor) -> None:
        """Pad and upload tips `[N, 4, P]` and pattern weights `[P]`, unless these very
        tensors are the ones uploaded last."""
        if self._source is not None and all(
            a is b for a, b in zip(self._source, (tip_partials, pattern_weights), strict=True)
        ):
            return
        n_taxa, _, n_patterns = tip_partials.shape
        padded = -(-n_patterns // BLOCK) * BLOCK
        tips = np.ones((n_taxa, 4, padded))
        tips[:, :, :n_patterns] = tip_partials.detach().cpu().numpy()
        weights = np.zeros(padded)
        weights[:n_patterns] = pattern_weights.detach().cpu().numpy()
        self._tips, self._pattern_weights = cuda.to_device(tips), cuda.to_device(weights)
        self._source = (tip_partials, pattern_weights)
        self._calls.clear()

    def _take(self, name: str, size: int, dtype: type = np.float64) -> DeviceNDArray:
        """A flat device array of `size` elements from buffer `name` (contents undefined).
        Growing a buffer drops the kept call arrays, whose views are of the old one."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = cuda.device_array(max(size, 1), dtype=dtype)
            self._buffers[name] = buffer
            self._calls.clear()
        return buffer[:size]

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
        `[B, C]`) for transition matrices `[B*E, C, 4, 4]` or Jukes-Cantor pairs `[B*E, C,
        2]`, tips `[N, 4, P]` and pattern weights `[P]` (uploaded when they are other tensors
        than last time); without a gradient the three gradients are empty. `rescale_range`
        is for tests."""
        n_categories = matrices.shape[1]
        if matrices.shape[2:] not in ((4, 4), (2,)):
            raise ValueError("the CUDA kernel takes 4 x 4 matrices or Jukes-Cantor pairs")
        if n_categories > MAX_CATEGORIES:
            raise VbpiMixError(
                f"the CUDA likelihood takes at most {MAX_CATEGORIES} rate categories; "
                f"got {n_categories} (use --likelihood-device cpu)"
            )
        try:
            self._upload(tip_partials, pattern_weights)
            with _quiet_about_occupancy():
                log_likelihood, grad_matrices, grad_frequencies, grad_weights = self._launch(
                    schedule, [matrices.reshape(*matrices.shape[:2], -1), frequencies,
                    category_weights], with_gradient, rescale_range,
                )  # fmt: skip
        except CudaAPIError as error:  # out of GPU memory, above all
            raise VbpiMixError(
                f"the GPU likelihood of {schedule.n_trees} trees failed ({error}); use fewer "
                "particles per call or --likelihood-device cpu"
            ) from error
        n_trees = schedule.n_trees
        if not with_gradient:
            return log_likelihood, matrices[:0], np.zeros((0, 4)), np.zeros((0, n_categories))
        return (
            log_likelihood,
            grad_matrices.reshape(matrices.shape),
            grad_frequencies.reshape(n_trees, 4),
            grad_weights.reshape(n_trees, n_categories),
        )

    def _launch(
        self,
        schedule: Schedule,
        floats: list[np.ndarray],
        with_gradient: bool,
        rescale_range: tuple[float, float],
    ) -> list[np.ndarray]:
        """Copy the call's inputs (matrices, frequencies, category weights; the schedule's
        arrays) to the GPU, run the kernel, copy the four flat outputs back."""
        integers = [schedule.child_rows, schedule.child_edges, schedule.root_child_rows,
                    schedule.root_child_edges]  # fmt: skip
        key = (schedule.n_trees, schedule.n_taxa, floats[0].shape, with_gradient, rescale_range)
        call = self._calls.get(key)
        if call is None:
            if len(self._calls) >= _KEPT_CALL_SHAPES:  # pinned host memory is scarce
                self._calls.clear()
            call = self._calls[key] = self._call_arrays(schedule, floats, integers, *key[3:])
        np.concatenate([np.ravel(a) for a in floats], out=call.host_floats)
        np.concatenate([np.ravel(a) for a in integers], out=call.host_integers)
        call.floats.copy_to_device(call.host_floats)
        call.integers.copy_to_device(call.host_integers)
        call.zero_outputs(call.outputs)
        call.pruning(*call.kernel_arguments)
        host = call.outputs.copy_to_host()
        return [host[a:b] for a, b in call.output_bounds]

    def _call_arrays(
        self,
        schedule: Schedule,
        floats: list[np.ndarray],
        integers: list[np.ndarray],
        with_gradient: bool,
        rescale_range: tuple[float, float],
    ) -> _CallArrays:
        """The views, staging arrays and configured kernels for calls shaped like this one."""
        n_trees, n_categories = schedule.n_trees, floats[0].shape[1]
        n_inner, padded = schedule.n_taxa - 3, self._pattern_weights.size
        inner_shape = (n_trees, max(n_inner, 1), n_categories, 4, padded)
        sizes = [n_trees, floats[0].size, n_trees * 4, n_trees * n_categories]
        ends = np.cumsum(sizes if with_gradient else [n_trees, 1, 1, 1]).tolist()
        bounds = list(zip([0, *ends[:-1]], ends, strict=True))
        # taken before any view is made: a buffer that grows drops the kept call arrays
        inner = self._take("inner", math.prod(inner_shape))
        device_floats = self._take("floats", sum(a.size for a in floats))
        device_integers = self._take("integers", sum(a.size for a in integers), np.int64)
        outputs = self._take("outputs", ends[-1])
        transitions, frequencies, category_weights = _views(device_floats, floats)
        kernel_arguments = (
            self._tips, inner.reshape(inner_shape), n_inner, transitions,
            *_views(device_integers, integers), frequencies, category_weights,
            self._pattern_weights, rescale_range[0], rescale_range[1], with_gradient,
            *(outputs[a:b] for a, b in bounds),
        )  # fmt: skip
        return _CallArrays(
            host_floats=cuda.pinned_array(device_floats.size),
            host_integers=cuda.pinned_array(device_integers.size, dtype=np.int64),
            floats=device_floats,
            integers=device_integers,
            outputs=outputs,
            output_bounds=bounds,
            kernel_arguments=kernel_arguments,
            zero_outputs=_zero[(outputs.size + 255) // 256, 256],
            pruning=_pruning_kernel[(padded // BLOCK, n_trees), BLOCK],
        )


def _views(device: DeviceNDArray, arrays: list[np.ndarray]) -> list[DeviceNDArray]:
    """Views of the flat device array holding `arrays` one after the other, in their shapes."""
    views, start = [], 0
    for array in arrays:
        views.append(device[start : start + array.size].reshape(array.shape))
        start += array.size
    return views
