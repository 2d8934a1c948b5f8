"""Alignment reading: formats, encoding, pattern compression, and every bad-input message."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.phylo.alignment import Alignment, load_alignment

SEQUENCES = {
    "alpha": "ACGTACGTAA",
    "beta": "ACGTTCGTAA",
    "gamma": "ACGAACGTCA",
    "delta": "ACG-ACNTA?",
}


def write_formats(tmp_path):
    fasta = "".join(f">{name}\n{seq}\n" for name, seq in SEQUENCES.items())
    nexus = (
        "#NEXUS\nbegin data;\ndimensions ntax=4 nchar=10;\n"
        "format datatype=dna missing=? gap=-;\nmatrix\n"
        + "".join(f"{name} {seq}\n" for name, seq in SEQUENCES.items())
        + ";\nend;\n"
    )
    relaxed = "4 10\n" + "".join(f"{name}   {seq}\n" for name, seq in SEQUENCES.items())
    strict_sequential = "4 10\n" + "".join(
        f"{name:<10}{seq[:6]}\n{seq[6:]}\n" for name, seq in SEQUENCES.items()
    )
    interleaved = (
        "4 10\n"
        + "".join(f"{name:<10}{seq[:5]}\n" for name, seq in SEQUENCES.items())
        + "\n"
        + "".join(f"{seq[5:]}\n" for seq in SEQUENCES.values())
    )
    files = {}
    for label, text in [
        ("fasta", fasta), ("nexus", nexus), ("relaxed", relaxed),
        ("sequential", strict_sequential), ("interleaved", interleaved),
    ]:  # fmt: skip
        path = tmp_path / f"aln_{label}.txt"
        path.write_text(text)
        files[label] = path
    gz = tmp_path / "aln.fasta.gz"
    gz.write_bytes(gzip.compress(fasta.encode()))
    files["gzip"] = gz
    return files


@pytest.mark.parametrize(
    "label", ["fasta", "nexus", "relaxed", "sequential", "interleaved", "gzip"]
)
def test_every_format_reads_the_same_alignment(tmp_path, label):
    path = write_formats(tmp_path)[label]
    alignment = load_alignment(path, compress=False)
    assert alignment.taxa == tuple(SEQUENCES)
    reference = Alignment.from_sequences(list(SEQUENCES.items()), compress=False)
    np.testing.assert_array_equal(alignment.patterns, reference.patterns)


def test_format_override_and_wrong_override(tmp_path):
    files = write_formats(tmp_path)
    assert load_alignment(files["fasta"], fmt="fasta").n_taxa == 4
    with pytest.raises(VbpiMixError, match="cannot parse as NEXUS"):
        load_alignment(files["fasta"], fmt="nexus")


def test_state_masks_iupac_missing_case_and_u():
    records = [("a", "ACGTRYN-?u"), ("b", "acgtswkmbd"), ("c", "hvACGTACGT"), ("d", "ACGTACGTAC")]
    alignment = Alignment.from_sequences(records, compress=False)
    a, b, c, _ = alignment.patterns
    # bits: A=1, C=2, G=4, T=8
    assert a.tolist() == [1, 2, 4, 8, 1 | 4, 2 | 8, 15, 15, 15, 8]
    assert b.tolist() == [1, 2, 4, 8, 2 | 4, 1 | 8, 4 | 8, 1 | 2, 2 | 4 | 8, 1 | 4 | 8]
    assert c[:2].tolist() == [1 | 2 | 8, 1 | 2 | 4]
    tips = alignment.tip_partials()
    assert tips.shape == (4, 4, 10)
    assert tips[0, :, 4].tolist() == [1.0, 0.0, 1.0, 0.0]  # R = A or G
    assert tips[0, :, 6].tolist() == [1.0, 1.0, 1.0, 1.0]  # N


def test_compression_counts_identical_columns():
    records = [("a", "AAAC"), ("b", "AAAC"), ("c", "CCAC"), ("d", "GGAC")]
    alignment = Alignment.from_sequences(records)
    assert alignment.n_patterns == 3
    assert alignment.n_sites == 4
    assert sorted(alignment.weights.tolist()) == [1, 1, 2]
    with pytest.raises(ValueError):
        alignment.weights[0] = 5  # immutable


def test_real_data_set_dimensions(data_dir):
    alignment = load_alignment(data_dir / "DS1" / "DS1.fasta")
    assert alignment.n_taxa == 27
    assert alignment.n_sites == 1949
    assert alignment.taxa[0] == "Alligator_mississippiensis"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "file is empty"),
        (b"\x00\x01\x02\xff\xfe binary", "binary data"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt gzip"),
        (b"hello world\n", "not a FASTA, NEXUS or PHYLIP"),
        (
            b">a\nACGT\n>b\nACGT\n>c\nACG\n>d\nACGT\n",
            r"differ in length: most have 4 sites, but c \(3\)",
        ),
        (b">a\nACGT\n>b\nACGT\n>a\nACGT\n>d\nACGT\n", "duplicate taxon names: a"),
        (
            b">a\nACGT\n>b\nACJT\n>c\nACGT\n>d\nACGT\n",
            "taxon b, site 3: 'J' is not a DNA character",
        ),
        (b">a\nACGT\n>b\nACGT\n>c\nACGT\n", "3 taxa; an unrooted tree analysis needs at least 4"),
    ],
)
def test_bad_input_gives_one_line_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.fasta"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VbpiMixError, match=message) as caught:
        load_alignment(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_directory_is_an_error(tmp_path):
    with pytest.raises(VbpiMixError, match="is a directory"):
        load_alignment(tmp_path)
