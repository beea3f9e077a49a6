"""What opening a database refuses, for every backend: a schema this version of the code
does not match, or a database that is not Kitchen Table's. Each says so in one line for
the operator (`str()`); `storage.failures` hands them out, and backends raise them.
"""

from __future__ import annotations

UPGRADE = "kitchen-table db upgrade"


class SchemaBehind(Exception):
    """The database's schema is older than this version of the code needs: it will not
    be changed behind the operator's back (a backup first, then `db upgrade`)."""

    def __init__(self, current: int, latest: int) -> None:
        super().__init__(current, latest)
        self.current = current
        self.latest = latest

    def __str__(self) -> str:
        return (
            f"The database's schema is version {self.current}, and this version of Kitchen"
            f" Table needs {self.latest}: run `{UPGRADE}` after a backup."
        )


class SchemaAhead(SchemaBehind):
    """The database's schema is newer than this code knows (a newer Kitchen Table wrote
    it): refused too, since this code would misread it. A subclass of `SchemaBehind`, so
    that whoever refuses to start on one refuses on the other, with this message."""

    def __str__(self) -> str:
        return (
            f"The database's schema is version {self.current}, newer than this version of"
            f" Kitchen Table knows ({self.latest}): run the newer Kitchen Table that wrote it."
        )


class NotOurs(Exception):
    """The database holds tables, but no Kitchen Table schema version: some other
    program's data, which opening must not add tables to."""

    def __str__(self) -> str:
        return f"{self.args[0]} holds tables but is not a Kitchen Table database."
