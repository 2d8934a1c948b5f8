"""Clades as fixed-width multi-word bitsets, the last axis of every clade array.

A clade of an alignment's N taxa is W = ceil(N / 64) uint64 words: bit i mod 64 of word
i // 64 is taxon i. W is chosen once per support (vbpi_mix.trees.subsplits), so N <= 64 keeps
single-word clades. The clade read as an integer (sum_i 2^i over its taxa) orders clades
everywhere: the smaller side of a split, the sorted clade table. As the top word decides
that order, a clade with zero words added on top keeps its place, which is what lets a
support built with more words than it needs give the same ids.

The compiled helpers work on one clade, named by its table `[n, W]` and row, inside the
compiled walks; the numpy helpers on `[..., W]` arrays when a support is built.
"""

from __future__ import annotations

import numpy as np

from vbpi_mix.compile_presets import compiled, compiled_into_caller

WORD_BITS = 64
_ONE = np.uint64(1)
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio (Fibonacci hashing)


def word_count(n_taxa: int) -> int:
    """Words per clade: ceil(N / 64), at least one."""
    return max(1, -(-n_taxa // WORD_BITS))


@compiled
def all_taxa_row(n_taxa: int, words: int) -> np.ndarray:
    """The clade of taxa 0..N-1 as a one-row table `[1, W]`."""
    full = np.zeros((1, words), dtype=np.uint64)
    for taxon in range(n_taxa):
        add_taxon(full, 0, taxon)
    return full


def all_taxa(n_taxa: int, words: int) -> np.ndarray:
    """The clade of every taxon, `[W]`."""
    return all_taxa_row(n_taxa, words)[0]


# The compiled helpers name a clade by its table `[n, W]` and row rather than by a view of the
# row: a view costs a reference count update, which in the lookup loops costs more than the
# word arithmetic itself.


@compiled_into_caller
def add_taxon(clades: np.ndarray, row: int, taxon: int) -> None:
    clades[row, taxon >> 6] |= _ONE << np.uint64(taxon & 63)


@compiled_into_caller
def has_taxon(clades: np.ndarray, row: int, taxon: int) -> bool:
    return (clades[row, taxon >> 6] >> np.uint64(taxon & 63)) & _ONE == _ONE


@compiled_into_caller
def taxon_count(clades: np.ndarray, row: int) -> int:
    count = 0
    for w in range(clades.shape[1]):
        word = clades[row, w]
        while word:
            word &= word - _ONE
            count += 1
    return count


@compiled_into_caller
def first_taxon(clades: np.ndarray, row: int) -> int:
    """The smallest taxon of a non-empty clade."""
    for w in range(clades.shape[1]):
        word = clades[row, w]
        if word:
            index = 0
            while not (word >> np.uint64(index)) & _ONE:
                index += 1
            return WORD_BITS * w + index
    return -1


@compiled_into_caller
def same_clade(a: np.ndarray, i: int, b: np.ndarray, j: int) -> bool:
    for w in range(a.shape[1]):
        if a[i, w] != b[j, w]:
            return False
    return True


@compiled_into_caller
def copy_clade(source: np.ndarray, i: int, target: np.ndarray, j: int) -> None:
    for w in range(source.shape[1]):
        target[j, w] = source[i, w]


@compiled_into_caller
def xor_clades(a: np.ndarray, i: int, b: np.ndarray, j: int, out: np.ndarray, k: int) -> None:
    """out[k] = a[i] xor b[j]: the rest of a clade after taking a side from it."""
    for w in range(a.shape[1]):
        out[k, w] = a[i, w] ^ b[j, w]


@compiled_into_caller
def hash_word(word: np.uint64) -> np.uint64:
    """Fibonacci hash of one word (its top bits pick a slot)."""
    return np.uint64(word) * _MULTIPLIER


@compiled_into_caller
def hash_clade(clades: np.ndarray, row: int) -> np.uint64:
    """h <- hash_word(h xor word) over the words, so a one-word clade hashes as its word."""
    h = np.uint64(0)
    for w in range(clades.shape[1]):
        h = hash_word(h ^ clades[row, w])
    return h


@compiled_into_caller
def split_side_into(
    clades: np.ndarray, row: int, full: np.ndarray, n_taxa: int, out: np.ndarray, k: int
) -> None:
    """The canonical side of the split {W, X minus W} into out[k] (`full`: X as `[1, W]`):
    the smaller as an integer, which is the side without taxon N-1 (that taxon is the top bit
    of the other)."""
    if has_taxon(clades, row, n_taxa - 1):
        xor_clades(full, 0, clades, row, out, k)
    else:
        copy_clade(clades, row, out, k)


def from_ints(values, words: int) -> np.ndarray:
    """Python-int clades `[n]` as words `[n, W]`."""
    mask = (1 << WORD_BITS) - 1
    return np.array(
        [[(int(v) >> (WORD_BITS * w)) & mask for w in range(words)] for v in values],
        dtype=np.uint64,
    ).reshape(-1, words)


def as_int(clade: np.ndarray) -> int:
    """One clade `[W]` as a Python int (bit i = taxon i)."""
    return sum(int(word) << (WORD_BITS * w) for w, word in enumerate(clade))


def split_sides(clades: np.ndarray, n_taxa: int) -> np.ndarray:
    """Canonical split side `[..., W]` of each clade `[..., W]`: min(W, X ^ W) as integers,
    the side without taxon N-1."""
    word, bit = divmod(n_taxa - 1, WORD_BITS)
    with_last = (clades[..., word] >> np.uint64(bit)) & _ONE == _ONE
    full = all_taxa(n_taxa, clades.shape[-1])
    return np.where(with_last[..., None], full ^ clades, clades)


def integer_less(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether clade a < clade b as integers, for `[..., W]` arrays: the highest word that
    differs decides."""
    less = np.zeros(a.shape[:-1], dtype=bool)
    for w in range(a.shape[-1]):  # later (higher) words override
        differ = a[..., w] != b[..., w]
        less = np.where(differ, a[..., w] < b[..., w], less)
    return less


def sort_keys(clades: np.ndarray) -> np.ndarray:
    """One sortable value per clade `[..., W]` whose numpy order is the integer order: the
    word itself for W = 1, else the words top first in big-endian bytes, compared as raw
    bytes (a void dtype)."""
    words = clades.shape[-1]
    if words == 1:
        return clades[..., 0]
    big_endian = np.ascontiguousarray(clades[..., ::-1]).astype(">u8")
    return big_endian.view(f"V{8 * words}")[..., 0]


def unique_clades(clades: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct clades of `[n, W]` in integer order, `[Q, W]`, and each row's index
    among them."""
    _, first, inverse = np.unique(sort_keys(clades), return_index=True, return_inverse=True)
    return clades[first], inverse.reshape(-1)


def clade_ids(table: np.ndarray, clades: np.ndarray) -> np.ndarray:
    """Index of each clade `[..., W]` in a sorted clade table `[Q, W]` (clades present)."""
    return np.searchsorted(sort_keys(table), sort_keys(clades)).astype(np.int64)


def taxon_counts(clades: np.ndarray) -> np.ndarray:
    """Number of taxa of each clade `[..., W]`."""
    as_bytes = np.ascontiguousarray(clades).view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1).sum(-1, dtype=np.int64)
