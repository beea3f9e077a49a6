"""The tombstone rule, as both backends' report queries read it: an answer written before
its author asked to be forgotten is never read, even where an older copy of it came back
(a backup restored by other means than `kitchen-table restore`). What someone with the
same pseudonym writes afterwards is theirs, and is read."""

from __future__ import annotations


def not_forgotten(answers: str) -> str:
    """The SQL condition, for the answers table named (or aliased) `answers`."""
    return (
        "NOT EXISTS (SELECT 1 FROM tombstones AS t"
        f" WHERE t.participant = {answers}.participant AND t.at >= {answers}.answered_at)"
    )
