"""A fast Newick reader for bulk tree sets (support building reads ~10^5 trees).

DendroPy's full tree objects are too slow for 100,000 UFBoot trees; this tokenizer does the
least that support building needs (benchmarks/results/support_sbn.md). It returns a flat
node list, not a tree object; the trees layer turns it into a topology. Tested against
DendroPy on the same strings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vbpi_mix.errors import VbpiMixError

_TOKEN = re.compile(r"\[[^\]]*\]|'(?:[^']|'')*'|[(),:;]|[^\s(),:;\[\]']+")


@dataclass(frozen=True)
class ParsedTree:
    """Nodes in pre-order: `parents[i]` (-1 for the root), leaf `labels[i]` (None for internal
    nodes), and `lengths[i]` of the edge above node i (nan where none was given)."""

    parents: list[int]
    labels: list[str | None]
    lengths: list[float]


def parse_newick(text: str, translate: dict[str, str] | None = None) -> ParsedTree:
    """Parse one Newick tree; comments are skipped, quoted labels unquoted, internal labels
    (support values) ignored, leaf labels mapped through `translate` when given."""
    parents: list[int] = []
    labels: list[str | None] = []
    lengths: list[float] = []
    stack: list[int] = []
    current = -1  # the node a label or length applies to
    expect_length = False
    for token in _TOKEN.findall(text):
        first = token[0]
        if first == "[":
            continue
        if expect_length:
            try:
                lengths[current] = float(token)
            except ValueError:
                raise VbpiMixError(f"branch length {token!r} is not a number") from None
            expect_length = False
        elif first == "(":
            parents.append(stack[-1] if stack else -1)
            labels.append(None)
            lengths.append(math.nan)
            stack.append(len(parents) - 1)
            current = -1
        elif first == ",":
            current = -1
        elif first == ")":
            if not stack:
                raise VbpiMixError("unbalanced parentheses in Newick")
            current = stack.pop()
        elif first == ":":
            if current < 0:
                raise VbpiMixError("a branch length without a node in Newick")
            expect_length = True
        elif first == ";":
            break
        elif current < 0:  # a leaf label (a label after ')' names an internal node: ignored)
            label = token[1:-1].replace("''", "'") if first == "'" else token
            if translate is not None:
                label = translate.get(label, label)
            parents.append(stack[-1] if stack else -1)
            labels.append(label)
            lengths.append(math.nan)
            current = len(parents) - 1
    if stack or not parents:
        raise VbpiMixError("incomplete Newick tree (unbalanced parentheses or empty)")
    return ParsedTree(parents, labels, lengths)
