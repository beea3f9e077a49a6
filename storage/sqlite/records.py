"""Roles and invitations on SQLite: small keyed records, and wrong codes counted."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from storage.rows import RecordRow, WrongCodes
from storage.sqlite.connection import Connections, dt, ts


class RecordsSQL(Connections):
    """`storage.protocol.RecordStore` on SQLite."""

    async def put_record(
        self, kind: str, key: str, value: bytes, expires_at: datetime | None = None
    ) -> None:
        expiry = None if expires_at is None else ts(expires_at)
        await self._w.run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO records (kind, key, value, expires_at) VALUES (?, ?, ?, ?)",
                (kind, key, value, expiry),
            )
        )

    async def replace_record(self, kind: str, key: str, was: bytes | None, value: bytes) -> bool:
        def replace(db: sqlite3.Connection) -> bool:
            if was is None:
                written = db.execute(
                    "INSERT INTO records (kind, key, value) VALUES (?, ?, ?)"
                    " ON CONFLICT (kind, key) DO NOTHING",
                    (kind, key, value),
                )
            else:
                written = db.execute(
                    "UPDATE records SET value = ?, expires_at = NULL"
                    " WHERE kind = ? AND key = ? AND value = ?",
                    (value, kind, key, was),
                )
            return written.rowcount == 1

        kept: bool = await self._w.run(replace)
        return kept

    async def take_record(self, kind: str, key: str, now: datetime) -> bytes | None:
        def take(db: sqlite3.Connection) -> bytes | None:
            row = db.execute(
                "DELETE FROM records WHERE kind = ? AND key = ? RETURNING value, expires_at",
                (kind, key),
            ).fetchone()
            if row is None or (row[1] is not None and row[1] <= ts(now)):
                return None
            return bytes(row[0])

        taken: bytes | None = await self._w.run(take)
        return taken

    async def clear_expired_records(self, now: datetime) -> int:
        cleared: int = await self._w.run(
            lambda db: (
                db.execute(
                    "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?",
                    (ts(now),),
                ).rowcount
            )
        )
        return cleared

    async def delete_records(self, kind: str, key: str) -> None:
        await self._w.run(
            lambda db: db.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))
        )

    async def wrong_codes(self, participant_id: str, since: datetime) -> WrongCodes:
        row = await self._one(
            "SELECT count(*), coalesce(sum(participant = ?), 0) FROM wrong_codes WHERE at >= ?",
            (participant_id, ts(since)),
        )
        assert row is not None
        return WrongCodes(theirs=int(row[1]), everyone=int(row[0]))

    async def record(self, kind: str, key: str, now: datetime) -> bytes | None:
        row = await self._one(
            "SELECT value FROM records WHERE kind = ? AND key = ?"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (kind, key, ts(now)),
        )
        return None if row is None else bytes(row[0])

    async def records_of(self, kind: str, now: datetime) -> list[RecordRow]:
        rows = await self._all(
            "SELECT key, value, expires_at FROM records WHERE kind = ?"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY key",
            (kind, ts(now)),
        )
        return [
            RecordRow(kind, row[0], bytes(row[1]), None if row[2] is None else dt(row[2]))
            for row in rows
        ]
