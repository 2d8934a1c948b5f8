"""Which SBN conditional entries a batch reads, and the families that normalise them.

    log q_a(e) = logit[a, e] - log sum_{m in family(e)} exp(logit[a, m])

with family(e) the entries sharing e's parent subsplit. Scoring B trees reads the entries of
their rootings: ten DS1 trees read about 1,200 of the support's M = 11,744 entries, from 850
families with 4,200 members. Normalising every family of every component instead costs
O(A M) forward and backward, which made scoring ten particles under ten components (S2A,
A = 10) cost as much as their likelihood. The SBN normalises only the members listed here
(vbpi_mix.variational.family_softmax); the gradient of the other logits is zero.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from vbpi_mix.compile_presets import compiled


class ReadEntries(NamedTuple):
    """`members [S]`: every entry of the F families read, family by family; `family_starts
    [F+1]`: where each family's run of members starts (and, last, S); `member_family [S]`:
    the position of its family among those read; `entry_slot [U]`: where each entry read
    lies in `members`; `remapped`: the batch's entry ids (their shape, -1 kept) as positions
    among the U entries read, numbered in the order they first appear."""

    members: np.ndarray
    family_starts: np.ndarray
    member_family: np.ndarray
    entry_slot: np.ndarray
    remapped: np.ndarray


@compiled
def _read_entries(entry_ids, entry_parent, members):
    """ReadEntries' arrays (see there); one pass over the ids numbers the entries read in the
    order they first appear (`position`) and remaps the ids."""
    n_entries = entry_parent.size
    position = np.full(n_entries, -1, dtype=np.int64)
    flat = entry_ids.ravel()
    remapped = np.empty(flat.size, dtype=np.int64)
    entries = np.empty(min(flat.size, n_entries), dtype=np.int64)
    n_read = 0
    for i in range(flat.size):
        e = flat[i]
        if e < 0:
            remapped[i] = -1
            continue
        if position[e] < 0:
            position[e] = n_read
            entries[n_read] = e
            n_read += 1
        remapped[i] = position[e]
    entries = entries[:n_read]
    is_read = np.zeros(members.shape[0], dtype=np.bool_)
    for u in range(n_read):
        is_read[entry_parent[entries[u]]] = True
    families = np.flatnonzero(is_read)
    n_members = 0
    for f in families:
        for m in members[f]:
            if m == n_entries:
                break
            n_members += 1
    member_ids = np.empty(n_members, dtype=np.int64)
    member_family = np.empty(n_members, dtype=np.int64)
    family_starts = np.empty(families.size + 1, dtype=np.int64)
    entry_slot = np.empty(entries.size, dtype=np.int64)
    slot = 0
    for position_of_family in range(families.size):
        family_starts[position_of_family] = slot
        for m in members[families[position_of_family]]:
            if m == n_entries:
                break
            member_ids[slot], member_family[slot] = m, position_of_family
            if position[m] >= 0:
                entry_slot[position[m]] = slot
            slot += 1
    family_starts[families.size] = slot
    return member_ids, family_starts, member_family, entry_slot, remapped


def read_entries(
    entry_ids: np.ndarray, entry_parent: np.ndarray, members: np.ndarray
) -> ReadEntries:
    """What a batch's entry ids `[...]` read, from the support's `entry_parent [M]` and
    `members [P, W]` (each parent's entries, padded with M); one compiled O(ids + M) pass."""
    ids = np.ascontiguousarray(entry_ids, dtype=np.int64)
    member_ids, family_starts, member_family, entry_slot, remapped = _read_entries(
        ids, entry_parent, members
    )
    return ReadEntries(
        member_ids, family_starts, member_family, entry_slot, remapped.reshape(ids.shape)
    )
