"""The PostgreSQL backend: one database shared by every instance, through asyncpg.

Split by concern as the protocol is (`storage.protocol`), as the SQLite backend is:
each module is a mixin over the same pool (`connection.py`); `PostgresStorage` is all
of them together. Chosen by `KT_DATABASE_URL=postgresql://...`.

Beside it, and sharing its pool (`PostgresStorage.pool`), live the pieces that let
several instances work as one: conversation locks (locks.py), named leases
(leases.py) and shared send limits (limits.py, its tables in coordination_schema.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.postgres.conversations import ConversationsPG
from storage.postgres.gatherings import GatheringsPG
from storage.postgres.records import RecordsPG
from storage.postgres.reports import ReportsPG
from storage.postgres.rights import RightsPG
from storage.postgres.schedules import SchedulesPG

__all__ = ["PostgresStorage"]


class PostgresStorage(ConversationsPG, SchedulesPG, GatheringsPG, RecordsPG, RightsPG, ReportsPG):
    """Storage in one PostgreSQL database (in `schema`, if given: tests use one each)."""


if TYPE_CHECKING:
    from storage.protocol import Storage

    def _is_storage(backend: PostgresStorage) -> Storage:
        return backend  # mypy: PostgresStorage provides every concern's protocol
