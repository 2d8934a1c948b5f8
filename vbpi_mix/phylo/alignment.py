"""The immutable `Alignment` value: taxa in file order, compressed site patterns, weights.

DNA states are bit masks over (A, C, G, T): an IUPAC ambiguity code is the set of states it
stands for, `-`, `?`, `N` (and `X`) are missing data (all four states), U reads as T, case is
ignored. Identical columns are merged into one pattern with an integer weight.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from vbpi_mix.choices import AlignmentFormat
from vbpi_mix.errors import VbpiMixError
from vbpi_mix.io.alignment_file import read_sequences

STATES = "ACGT"
MIN_TAXA = 4
_EM_STEPS = 1000  # empirical frequencies: EM iterations at most

_IUPAC_STATES: dict[str, str] = {
    "A": "A", "C": "C", "G": "G", "T": "T", "U": "T",
    "R": "AG", "Y": "CT", "S": "CG", "W": "AT", "K": "GT", "M": "AC",
    "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG",
    "N": "ACGT", "X": "ACGT", "?": "ACGT", "-": "ACGT",
}  # fmt: skip


def _mask_of(states: str) -> int:
    return sum(1 << STATES.index(state) for state in states)


_CODE_TABLE = np.zeros(256, dtype=np.uint8)  # 0 marks a character that is not DNA
for _symbol, _states in _IUPAC_STATES.items():
    _CODE_TABLE[ord(_symbol)] = _CODE_TABLE[ord(_symbol.lower())] = _mask_of(_states)


@dataclass(frozen=True, eq=False)
class Alignment:
    """Taxa (file order), site patterns as state masks `[N, P]` and their counts `[P]`.

    Legend: N taxa, P distinct site patterns, L = sum(weights) sites.
    """

    taxa: tuple[str, ...]
    patterns: np.ndarray
    weights: np.ndarray
    source: str = "<memory>"

    @classmethod
    def from_sequences(
        cls, records: list[tuple[str, str]], source: str = "<memory>", compress: bool = True
    ) -> Alignment:
        """Validate and encode (name, sequence) pairs; `compress=False` keeps every site."""
        names = [name for name, _ in records]
        _check_taxa(names, source)
        lengths = {name: len(sequence) for name, sequence in records}
        if len(set(lengths.values())) > 1:
            common = Counter(lengths.values()).most_common(1)[0][0]
            odd = ", ".join(f"{name} ({n})" for name, n in lengths.items() if n != common)
            raise VbpiMixError(
                f"{source}: sequences differ in length: most have {common} sites, but {odd}"
            )
        if next(iter(lengths.values())) == 0:
            raise VbpiMixError(f"{source}: sequences are empty")
        codes = np.stack([_encode(name, sequence, source) for name, sequence in records])
        if compress:
            columns, counts = np.unique(codes.T, axis=0, return_counts=True)
            patterns, weights = columns.T, counts
        else:
            patterns, weights = codes, np.ones(codes.shape[1], dtype=np.int64)
        patterns = np.ascontiguousarray(patterns, dtype=np.uint8)
        weights = np.ascontiguousarray(weights, dtype=np.int64)
        patterns.setflags(write=False)
        weights.setflags(write=False)
        return cls(tuple(names), patterns, weights, source)

    @property
    def n_taxa(self) -> int:
        return len(self.taxa)

    @property
    def n_patterns(self) -> int:
        return self.patterns.shape[1]

    @property
    def n_sites(self) -> int:
        return int(self.weights.sum())

    def tip_partials(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Tip conditional likelihoods `[N, 4, P]`: 1 for each state a tip's character allows."""
        bits = torch.as_tensor(self.patterns.astype(np.int64))
        states = torch.arange(len(STATES))
        return ((bits[:, None, :] >> states[None, :, None]) & 1).to(dtype)

    def pattern_weights(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Pattern counts `[P]` as a float tensor."""
        return torch.tensor(self.weights, dtype=dtype)

    def empirical_frequencies(self) -> list[float]:
        """Base frequencies counted from the alignment, as IQ-TREE's "+F": the maximum-
        likelihood frequencies of the characters as independent draws, an ambiguity code
        counting as any one of its states. By EM: each code's count is shared among its
        states in proportion to the current frequencies, pi <- sum_m c_m pi|m / sum; missing
        data (all four states) changes nothing. A state that never occurs is an error."""
        counts = np.bincount(
            self.patterns.ravel(),
            weights=np.broadcast_to(self.weights, self.patterns.shape).ravel(),
            minlength=16,
        )
        members = (np.arange(16)[:, None] >> np.arange(len(STATES))) & 1  # [mask, state]
        frequencies = np.full(len(STATES), 1.0 / len(STATES))
        for _ in range(_EM_STEPS):
            shares = members * frequencies
            totals = shares.sum(axis=1, keepdims=True)
            shares = np.divide(shares, totals, out=np.zeros_like(shares), where=totals > 0)
            updated = counts @ shares
            updated /= updated.sum()
            converged = np.abs(updated - frequencies).max() < 1e-15
            frequencies = updated
            if converged:
                break
        absent = [state for state, f in zip(STATES, frequencies, strict=True) if f == 0]
        if absent:
            raise VbpiMixError(
                f"{self.source}: no {', '.join(absent)} in the alignment, so empirical base "
                "frequencies would be zero; give --freqs A,C,G,T"
            )
        return frequencies.tolist()


def load_alignment(
    path: str | os.PathLike[str], fmt: AlignmentFormat | None = None, compress: bool = True
) -> Alignment:
    """Read and encode an alignment file (FASTA, NEXUS, PHYLIP; gzip accepted)."""
    return Alignment.from_sequences(read_sequences(path, fmt), source=str(path), compress=compress)


def _check_taxa(names: list[str], source: str) -> None:
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise VbpiMixError(f"{source}: duplicate taxon names: {', '.join(duplicates)}")
    if len(names) < MIN_TAXA:
        raise VbpiMixError(
            f"{source}: {len(names)} taxa; an unrooted tree analysis needs at least {MIN_TAXA}"
        )


def _encode(name: str, sequence: str, source: str) -> np.ndarray:
    raw = np.frombuffer(sequence.encode("latin-1", errors="replace"), dtype=np.uint8)
    codes = _CODE_TABLE[raw]
    bad = np.flatnonzero(codes == 0)
    if bad.size:
        position = int(bad[0])
        raise VbpiMixError(
            f"{source}: taxon {name}, site {position + 1}: {sequence[position]!r} is not a DNA "
            "character (expected ACGTU, IUPAC codes, '-', '?' or 'N')"
        )
    return codes
