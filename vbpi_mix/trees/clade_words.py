"""Clades as fixed-width multi-word bitsets, the last axis of every clade array.

A clade of an alignment's N taxa is W = ceil(N / 64) uint64 words: bit i mod 64 of word
i // 64 is taxon i. W is chosen once per support (vbpi_mix.trees.subsplits), so N <= 64 keeps
single-word clades. The clade read as an integer (sum_i 2^i over its taxa) orders clades
everywhere: the smaller side of a split, the sorted clade table. As the top word decides
that order, a clade with zero words added on top keeps its place, which is what lets a
support built with more words than it needs give the same ids.

The compiled helpers work on one clade (a `[W]` view) inside the compiled walks; the numpy
helpers on `[..., W]` arrays when a support is built.
"""

from __future__ import annotations

import numpy as np

from vbpi_mix.compile_presets import compiled

WORD_BITS = 64
_ONE = np.uint64(1)
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio (Fibonacci hashing)


def word_count(n_taxa: int) -> int:
    """Words per clade: ceil(N / 64), at least one."""
    return max(1, -(-n_taxa // WORD_BITS))


@compiled
def fill_all_taxa(n_taxa: int, out: np.ndarray) -> None:
    """Write the clade of taxa 0..N-1 into `out [W]`."""
    out[:] = 0
    for taxon in range(n_taxa):
        out[taxon >> 6] |= _ONE << np.uint64(taxon & 63)


def all_taxa(n_taxa: int, words: int) -> np.ndarray:
    """The clade of every taxon, `[W]`."""
    out = np.empty(words, dtype=np.uint64)
    fill_all_taxa(n_taxa, out)
    return out


@compiled
def add_taxon(clade: np.ndarray, taxon: int) -> None:
    clade[taxon >> 6] |= _ONE << np.uint64(taxon & 63)


@compiled
def has_taxon(clade: np.ndarray, taxon: int) -> bool:
    return (clade[taxon >> 6] >> np.uint64(taxon & 63)) & _ONE == _ONE


@compiled
def taxon_count(clade: np.ndarray) -> int:
    count = 0
    for w in range(clade.size):
        word = clade[w]
        while word:
            word &= word - _ONE
            count += 1
    return count


@compiled
def first_taxon(clade: np.ndarray) -> int:
    """The smallest taxon of a non-empty clade."""
    for w in range(clade.size):
        word = clade[w]
        if word:
            index = 0
            while not (word >> np.uint64(index)) & _ONE:
                index += 1
            return WORD_BITS * w + index
    return -1


@compiled
def same_clade(a: np.ndarray, b: np.ndarray) -> bool:
    for w in range(a.size):
        if a[w] != b[w]:
            return False
    return True


@compiled
def hash_word(word: np.uint64) -> np.uint64:
    """Fibonacci hash of one word (its top bits pick a slot)."""
    return np.uint64(word) * _MULTIPLIER


@compiled
def hash_words(clade: np.ndarray) -> np.uint64:
    """h <- hash_word(h xor word) over the words, so a one-word clade hashes as its word."""
    h = np.uint64(0)
    for w in range(clade.size):
        h = hash_word(h ^ clade[w])
    return h


@compiled
def split_side_into(clade: np.ndarray, full: np.ndarray, n_taxa: int, out: np.ndarray) -> None:
    """The canonical side of the split {W, X minus W} into `out`: the smaller as an integer,
    which is the side without taxon N-1 (that taxon is the top bit of the other)."""
    complement = has_taxon(clade, n_taxa - 1)
    for w in range(clade.size):
        out[w] = full[w] ^ clade[w] if complement else clade[w]


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
