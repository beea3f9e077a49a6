"""Roles and invitations on PostgreSQL: small keyed records, and wrong codes counted."""

from __future__ import annotations

from datetime import datetime

from storage.postgres.connection import Connections, maybe_utc, utc
from storage.rows import RecordRow, WrongCodes


class RecordsPG(Connections):
    """`storage.protocol.RecordStore` on PostgreSQL."""

    async def put_record(
        self, kind: str, key: str, value: bytes, expires_at: datetime | None = None
    ) -> None:
        await self._execute(
            "INSERT INTO records (kind, key, value, expires_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value,"
            " expires_at = excluded.expires_at",
            kind,
            key,
            value,
            maybe_utc(expires_at),
        )

    async def replace_record(self, kind: str, key: str, was: bytes | None, value: bytes) -> bool:
        if was is None:
            row = await self._one(
                "INSERT INTO records (kind, key, value) VALUES ($1, $2, $3)"
                " ON CONFLICT (kind, key) DO NOTHING RETURNING 1",
                kind,
                key,
                value,
            )
        else:
            row = await self._one(
                "UPDATE records SET value = $4, expires_at = NULL"
                " WHERE kind = $1 AND key = $2 AND value = $3 RETURNING 1",
                kind,
                key,
                was,
                value,
            )
        return row is not None

    async def take_record(self, kind: str, key: str, now: datetime) -> bytes | None:
        # Deleted whether or not it had expired (an expired one is no use to anyone):
        # one statement, so at most one caller gets it.
        row = await self._one(
            "DELETE FROM records WHERE kind = $1 AND key = $2 RETURNING value, expires_at",
            kind,
            key,
        )
        if row is None or (row[1] is not None and row[1] <= utc(now)):
            return None
        return bytes(row[0])

    async def clear_expired_records(self, now: datetime) -> int:
        status = await self._execute(
            "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= $1", utc(now)
        )
        return int(status.split()[-1])

    async def delete_records(self, kind: str, key: str) -> None:
        await self._execute("DELETE FROM records WHERE kind = $1 AND key = $2", kind, key)

    async def wrong_codes(self, participant_id: str, since: datetime) -> WrongCodes:
        row = await self._one(
            "SELECT count(*), count(*) FILTER (WHERE participant = $1) FROM wrong_codes"
            " WHERE at >= $2",
            participant_id,
            utc(since),
        )
        assert row is not None
        return WrongCodes(theirs=int(row[1]), everyone=int(row[0]))

    async def record(self, kind: str, key: str, now: datetime) -> bytes | None:
        found: bytes | None = await self._value(
            "SELECT value FROM records WHERE kind = $1 AND key = $2"
            " AND (expires_at IS NULL OR expires_at > $3)",
            kind,
            key,
            utc(now),
        )
        return found

    async def records_of(self, kind: str, now: datetime) -> list[RecordRow]:
        rows = await self._all(
            "SELECT key, value, expires_at FROM records WHERE kind = $1"
            " AND (expires_at IS NULL OR expires_at > $2) ORDER BY key",
            kind,
            utc(now),
        )
        return [RecordRow(kind, row[0], row[1], row[2]) for row in rows]
