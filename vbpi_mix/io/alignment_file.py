"""Read DNA alignments in FASTA, NEXUS or PHYLIP (strict, relaxed, sequential) with Biopython.

The format is detected from the content; `fmt` overrides. Gzip is accepted. The result is
plain (name, sequence) pairs in file order; encoding into site patterns is phylo's job.
"""

from __future__ import annotations

import io
import os
import re

from Bio import AlignIO, SeqIO

from vbpi_mix.choices import ALIGNMENT_FORMATS, AlignmentFormat
from vbpi_mix.errors import VbpiMixError
from vbpi_mix.io.text_files import read_text

_PHYLIP_HEADER = re.compile(r"^\s*\d+\s+\d+\s*$")
# Relaxed names first (whitespace-separated, interleaved or one line per taxon), then
# strict 10-character names in sequential and interleaved layout.
_PHYLIP_VARIANTS = ("phylip-relaxed", "phylip-sequential", "phylip")


def detect_alignment_format(text: str) -> AlignmentFormat | None:
    """Guess the alignment format from the first non-blank line, or None."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(">"):
            return "fasta"
        if stripped.lower().startswith("#nexus"):
            return "nexus"
        if _PHYLIP_HEADER.match(stripped):
            return "phylip"
        return None
    return None


def read_sequences(
    path: str | os.PathLike[str], fmt: AlignmentFormat | None = None
) -> list[tuple[str, str]]:
    """Return the (taxon name, sequence) pairs of an alignment file in file order.

    Sequences are returned as written (case and symbols untouched); lengths are not checked
    here, so that the caller can name the offending taxa.
    """
    text = read_text(path)
    detected = fmt or detect_alignment_format(text)
    if detected is None:
        raise VbpiMixError(
            f"{path}: not a FASTA, NEXUS or PHYLIP alignment "
            "(FASTA starts with '>', NEXUS with '#NEXUS', PHYLIP with 'ntaxa nsites')"
        )
    if detected not in ALIGNMENT_FORMATS:
        raise VbpiMixError(f"unknown alignment format {detected!r}; use one of {ALIGNMENT_FORMATS}")
    if detected == "fasta":
        records = _parse_fasta(path, text)
    elif detected == "nexus":
        records = _parse_with(path, text, "nexus", "NEXUS")
    else:
        records = _parse_phylip(path, text)
    if not records:
        raise VbpiMixError(f"{path}: no sequences found ({detected})")
    return records


def _parse_fasta(path: str | os.PathLike[str], text: str) -> list[tuple[str, str]]:
    try:
        records = list(SeqIO.parse(io.StringIO(text), "fasta"))
    except Exception as error:  # Biopython raises several types for malformed input
        raise VbpiMixError(f"{path}: cannot parse as FASTA: {_one_line(error)}") from None
    return [(record.id, str(record.seq)) for record in records]


def _parse_with(
    path: str | os.PathLike[str], text: str, biopython_format: str, label: str
) -> list[tuple[str, str]]:
    try:
        alignment = AlignIO.read(io.StringIO(text), biopython_format)
    except Exception as error:  # Biopython raises several types for malformed input
        raise VbpiMixError(f"{path}: cannot parse as {label}: {_one_line(error)}") from None
    return [(record.id, str(record.seq)) for record in alignment]


def _parse_phylip(path: str | os.PathLike[str], text: str) -> list[tuple[str, str]]:
    first_error: VbpiMixError | None = None
    for variant in _PHYLIP_VARIANTS:
        try:
            return _parse_with(path, text, variant, "PHYLIP")
        except VbpiMixError as error:
            first_error = first_error or error
    assert first_error is not None
    raise first_error


def _one_line(error: Exception) -> str:
    message = " ".join(str(error).split())
    return message or type(error).__name__
