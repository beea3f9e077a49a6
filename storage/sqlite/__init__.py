"""The SQLite backend: WAL, one writer thread with group commit, aiosqlite for reads.

One file, one process, nothing to install. Split by concern as the protocol is
(`storage.protocol`): each module is a mixin over the same two connections
(`connection.py`); `SQLiteStorage` is all of them together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.sqlite.conversations import ConversationsSQL
from storage.sqlite.gatherings import GatheringsSQL
from storage.sqlite.records import RecordsSQL
from storage.sqlite.reports import ReportsSQL
from storage.sqlite.rights import RightsSQL
from storage.sqlite.schedules import SchedulesSQL

__all__ = ["SQLiteStorage"]


class SQLiteStorage(
    ConversationsSQL, SchedulesSQL, GatheringsSQL, RecordsSQL, RightsSQL, ReportsSQL
):
    """Storage in one SQLite file."""


if TYPE_CHECKING:
    from storage.protocol import Storage

    def _is_storage(backend: SQLiteStorage) -> Storage:
        return backend  # mypy: SQLiteStorage provides every concern's protocol
