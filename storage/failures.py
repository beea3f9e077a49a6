"""What storage raises when it is failing (a full or read-only disk, a locked or damaged
file, a database server that is away), as against a bug in one message: whoever meets
it says "try again later" (a webhook answers 503, a scheduled prompt's occurrence is
taken up again).

Composed from each backend's own errors, kept next to the backend, so that nothing
outside storage names a database driver. A backend on another database adds its
driver's errors here.

Also what opening refuses: a database whose schema this version of the code does not
match (`SchemaBehind`, `SchemaAhead`), with a one-line message for the operator.
"""

from __future__ import annotations

from storage.postgres.errors import POSTGRES_FAILURES
from storage.schema import NotOurs, SchemaAhead, SchemaBehind
from storage.sqlite.errors import SQLITE_FAILURES

__all__ = ["STORAGE_FAILURES", "NotOurs", "SchemaAhead", "SchemaBehind"]

STORAGE_FAILURES: tuple[type[Exception], ...] = (OSError, *SQLITE_FAILURES, *POSTGRES_FAILURES)
