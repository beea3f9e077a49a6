"""When to refresh a table's statistics as an instance fills it: at a first count of rows
written, then each time the count has doubled.

A prepared statement's plan (and a PL/pgSQL function's) is made once per connection, from
the table's statistics; made while the table was empty and never analyzed (autovacuum
off, or not yet round) it reads the whole table at every call. An ANALYZE as the table
grows invalidates those plans in every session, and doubling keeps the ANALYZEs few (a
dozen for a million rows).
"""

from __future__ import annotations


class Growth:
    """Rows an instance wrote to a table, and whether it is time to analyze it."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.count = 0
        self.at = first

    def add(self, count: int) -> bool:
        """Count rows written; True when the table is due an ANALYZE (then call `done`)."""
        self.count += count
        return self.count >= self.at

    def done(self) -> None:
        """Analyzed (or asked to be): the next time is at twice the rows counted."""
        self.at = 2 * self.count

    def restart(self) -> None:
        """Count afresh from nothing (the writing that grew the table has ended)."""
        self.count, self.at = 0, self.first
