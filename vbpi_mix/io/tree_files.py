"""Read tree files: Newick and NEXUS (translate blocks, comments, quoted labels), MrBayes `.t`
(with burn-in) and `.trprobs` (with `[&W p]` weights), IQ-TREE `.ufboot`; gzip accepted.

Two entry points: `read_tree_file` gives DendroPy trees (full objects, for a handful of trees
with branch lengths), `read_tree_strings` gives the raw Newick strings with weights and the
translate table, for bulk reading where each distinct string is parsed once.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass

import dendropy

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.io.text_files import read_text

_TREE_STATEMENT = re.compile(r"\btree\s+(?:[^=;\[]|\[[^\]]*\])*=(?P<body>[^;]*);", re.IGNORECASE)
_TRANSLATE = re.compile(r"\btranslate\s+(?P<body>[^;]*);", re.IGNORECASE)
_WEIGHT = re.compile(r"\[&W\s+(?P<weight>[-+0-9.eE]+)\s*\]", re.IGNORECASE)
_COMMENT = re.compile(r"\[[^\]]*\]")


def is_nexus(text: str) -> bool:
    return text.lstrip().lower().startswith("#nexus")


def parse_tree_text(text: str, source: str) -> dendropy.TreeList:
    """Parse tree text as NEXUS when it starts with `#NEXUS`, else as Newick, with DendroPy."""
    schema = "nexus" if is_nexus(text) else "newick"
    try:
        trees = dendropy.TreeList.get(
            data=text, schema=schema, preserve_underscores=True, rooting="default-unrooted"
        )
    except Exception as error:  # DendroPy raises many types for malformed input
        message = " ".join(str(error).split()) or type(error).__name__
        raise VbpiMixError(f"{source}: cannot parse as {schema.upper()} trees: {message}") from None
    if len(trees) == 0:
        raise VbpiMixError(f"{source}: no trees found")
    return trees


def read_tree_file(path: str | os.PathLike[str]) -> dendropy.TreeList:
    """All trees of a Newick or NEXUS file (one or many; `.gz` accepted) as DendroPy trees."""
    return parse_tree_text(read_text(path), str(path))


@dataclass(frozen=True)
class TreeStrings:
    """Distinct Newick strings of a file with their total weight (a count, or the sum of
    `[&W p]` weights for MrBayes .trprobs), and the NEXUS translate table (or None)."""

    weights: Counter[str]
    translate: dict[str, str] | None


def read_tree_strings(path: str | os.PathLike[str], burnin: float = 0) -> TreeStrings:
    """The trees of a file as distinct Newick strings with weights.

    `burnin` drops the first trees: a fraction of them when below 1, else a count (as for
    MrBayes `.t` files). Trees carrying `[&W p]` weigh p, others 1.
    """
    text = read_text(path)
    source = str(path)
    if is_nexus(text):
        translate = _translate_table(text, source)
        bodies = [match.group("body") for match in _TREE_STATEMENT.finditer(text)]
    else:
        translate = None
        bodies = [part for part in text.split(";") if part.strip()]
    if not bodies:
        raise VbpiMixError(f"{source}: no trees found")
    drop = _burnin_count(burnin, len(bodies), source)
    weights: Counter[str] = Counter()
    for body in bodies[drop:]:
        match = _WEIGHT.search(body)
        newick = _COMMENT.sub("", body).strip()
        weights[newick] += float(match.group("weight")) if match else 1.0
    return TreeStrings(weights, translate)


def _burnin_count(burnin: float, n_trees: int, source: str) -> int:
    if burnin < 0:
        raise VbpiMixError(f"burn-in must be at least 0; got {burnin}")
    drop = int(burnin * n_trees) if burnin < 1 else int(burnin)
    if drop >= n_trees:
        raise VbpiMixError(f"{source}: burn-in {burnin} removes all {n_trees} trees")
    return drop


def _translate_table(text: str, source: str) -> dict[str, str] | None:
    match = _TRANSLATE.search(text)
    if match is None:
        return None
    table = {}
    for entry in match.group("body").split(","):
        parts = entry.split(None, 1)
        if len(parts) != 2:
            raise VbpiMixError(f"{source}: malformed translate entry {entry.strip()!r}")
        key, label = parts[0], parts[1].strip()
        if label.startswith("'") and label.endswith("'"):
            label = label[1:-1].replace("''", "'")
        table[key] = label
    return table
