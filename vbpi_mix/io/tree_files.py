"""Read Newick and NEXUS tree files with DendroPy (gzip accepted), taxon labels kept verbatim."""

from __future__ import annotations

import os

import dendropy

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.io.text_files import read_text


def parse_tree_text(text: str, source: str) -> dendropy.TreeList:
    """Parse tree text as NEXUS when it starts with `#NEXUS`, else as Newick."""
    schema = "nexus" if text.lstrip().lower().startswith("#nexus") else "newick"
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
    """All trees of a Newick or NEXUS file (one or many; `.gz` accepted)."""
    return parse_tree_text(read_text(path), str(path))
