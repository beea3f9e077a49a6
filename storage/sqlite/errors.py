"""What SQLite raises when it is failing (a full or read-only disk, a locked or damaged
file), for `storage.failures` to compose: nothing outside storage names `sqlite3`."""

from __future__ import annotations

import sqlite3

SQLITE_FAILURES: tuple[type[Exception], ...] = (sqlite3.Error,)
