"""Conversations and the outbox on SQLite: a turn's reads and commit, and delivery's.

A conversation (was the message seen, who is it, what is their run) is the first
read of every turn: under load, those asked for together go as one query
(`ReadBatch`). Commits go to the writer, merged with others where they only add
rows (`merged.py`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from storage.read_batch import ReadBatch
from storage.rows import (
    AnswerRow,
    Commit,
    ConsentRow,
    Conversation,
    OutboxRow,
    ParticipantRow,
    RunRow,
)
from storage.sqlite.commits import apply
from storage.sqlite.connection import JSON_LIST, MAX_MARKS, Connections, dt, ts
from storage.sqlite.merged import NOT_MERGEABLE, Merged, apply_many, sets
from storage.sqlite.writer import Duplicate, Mergeable


class _Sent(Mergeable):
    """Messages the platform took, deleted from the outbox. Delivery records each one as
    soon as it is accepted (so a crash repeats only what was in flight), and the many
    queued beside each other go as one statement, not one per id: the writer thread takes
    the GIL back after every statement it steps, and under load each take waits for the
    event loop (measured: 58 ms for a round of 450 sent, one by one)."""

    def __init__(self, message_ids: Sequence[int]) -> None:
        self.message_ids = list(message_ids)

    def __call__(self, db: sqlite3.Connection) -> None:
        self.delete(db, self.message_ids)

    @classmethod
    def together(cls, db: sqlite3.Connection, operations: Sequence[_Sent]) -> list[Any]:
        cls.delete(db, [i for operation in operations for i in operation.message_ids])
        return [None] * len(operations)

    @staticmethod
    def delete(db: sqlite3.Connection, message_ids: list[int]) -> None:
        db.execute(f"DELETE FROM outbox WHERE id IN ({JSON_LIST})", (json.dumps(message_ids),))


class ConversationsSQL(Connections):
    """`storage.protocol.ConversationStore` on SQLite."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path)
        # Under load, the conversations of many people's messages are read together.
        self._conversation_reads: ReadBatch[tuple[str, str | None], Conversation] = ReadBatch(
            self._conversations_apart
        )

    async def commit(self, commit: Commit) -> bool:
        mergeable = not sets(commit, NOT_MERGEABLE)
        try:
            await self._w.run(Merged(commit) if mergeable else lambda db: apply(db, commit))
        except Duplicate:
            return False
        if commit.forget is not None:
            await self._checkpoint()  # what was erased must live on nowhere, not even the WAL
        return True

    async def commit_many(self, commits: Sequence[Commit]) -> list[bool]:
        written: list[bool] = await self._w.run(lambda db: apply_many(db, commits))
        return written

    async def outbox_sent(self, message_ids: Sequence[int]) -> None:
        # Delivery says so for each message as soon as the platform takes it; those
        # queued together become one statement (see `_Sent`).
        await self._w.run(_Sent(message_ids))

    async def outbox_retry(
        self, message_id: int, not_before: datetime, attempts: int, payload: str | None = None
    ) -> None:
        await self._w.run(
            lambda db: db.execute(
                "UPDATE outbox SET not_before = ?, attempts = ?, payload = coalesce(?, payload)"
                " WHERE id = ?",
                (ts(not_before), attempts, payload, message_id),
            )
        )

    async def outbox_owed(self, message_ids: Sequence[int]) -> set[int]:
        rows = await self._all(
            f"SELECT id FROM outbox WHERE id IN ({JSON_LIST})", (json.dumps(list(message_ids)),)
        )
        return {row[0] for row in rows}

    async def mark_unreachable(self, participant_id: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("UPDATE participants SET unreachable = 1 WHERE id = ?", (participant_id,))
            db.execute("DELETE FROM outbox WHERE participant = ?", (participant_id,))

        await self._w.run(write)

    async def conversation(self, participant_id: str, inbound_key: str | None) -> Conversation:
        return await self._conversation_reads.get((participant_id, inbound_key))

    async def conversations(self, wanted: Sequence[tuple[str, str | None]]) -> list[Conversation]:
        return [self._conversation_row(row) for row in await self._conversation_rows(wanted)]

    async def _conversations_apart(
        self, wanted: Sequence[tuple[str, str | None]]
    ) -> list[Conversation | Exception]:
        """As `conversations`, but a row that can't be read (a damaged run) is the error
        of that look-up alone, not of everyone's read alongside it."""
        found: list[Conversation | Exception] = []
        for row in await self._conversation_rows(wanted):
            try:
                found.append(self._conversation_row(row))
            except Exception as error:  # handed to the one caller it belongs to
                found.append(error)
        return found

    async def _conversation_rows(
        self, wanted: Sequence[tuple[str, str | None]]
    ) -> list[sqlite3.Row]:
        found: list[sqlite3.Row] = []
        for start in range(0, len(wanted), MAX_MARKS):
            part = wanted[start : start + MAX_MARKS]
            # For each (n, participant, key): was the key seen, who is it, what's their run.
            found += await self._all(
                "WITH wanted (n, participant, key) AS (VALUES "
                + ", ".join(["(?, ?, ?)"] * len(part))
                + ") SELECT EXISTS (SELECT 1 FROM inbound WHERE key = w.key),"
                " p.id, p.channel, p.address, p.language, p.current_run, p.unreachable,"
                " r.id, r.participant, r.guide_id, r.guide_version, r.guide_hash, r.status,"
                " r.state, r.started_at, r.updated_at, r.gathering, p.pending"
                " FROM wanted AS w LEFT JOIN participants AS p ON p.id = w.participant"
                " LEFT JOIN runs AS r ON r.id = p.current_run ORDER BY w.n",
                tuple(v for n, (p, key) in enumerate(part) for v in (n, p, key)),
            )
        return found

    @classmethod
    def _conversation_row(cls, row: sqlite3.Row) -> Conversation:
        person = None
        if row[1] is not None:
            person = ParticipantRow(
                row[1], row[2], bytes(row[3]), row[4], row[5], bool(row[6]), row[17]
            )
        run = cls._run_row(row[7:17]) if row[7] is not None else None
        return Conversation(bool(row[0]), person, run)

    async def open_runs_of(
        self, participant_ids: Sequence[str], guide_id: str
    ) -> dict[str, RunRow]:
        rows = await self._all(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE participant IN ({JSON_LIST})"
            " AND guide_id = ? AND status IN ('consent', 'active') ORDER BY updated_at",
            (json.dumps(list(participant_ids)), guide_id),
        )
        return {row[1]: self._run_row(row) for row in rows}  # the latest of each is last

    async def inbound_seen(self, key: str) -> bool:
        return await self._one("SELECT 1 FROM inbound WHERE key = ?", (key,)) is not None

    async def participant(self, participant_id: str) -> ParticipantRow | None:
        row = await self._one(
            "SELECT id, channel, address, language, current_run, unreachable, pending"
            " FROM participants WHERE id = ?",
            (participant_id,),
        )
        if row is None:
            return None
        return ParticipantRow(row[0], row[1], bytes(row[2]), row[3], row[4], bool(row[5]), row[6])

    async def run(self, run_id: str) -> RunRow | None:
        row = await self._one(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return None if row is None else self._run_row(row)

    async def open_run(self, participant_id: str, guide_id: str) -> RunRow | None:
        row = await self._one(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE participant = ? AND guide_id = ?"
            " AND status IN ('consent', 'active') ORDER BY updated_at DESC LIMIT 1",
            (participant_id, guide_id),
        )
        return None if row is None else self._run_row(row)

    async def open_runs(self, participant_id: str) -> list[RunRow]:
        rows = await self._all(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE participant = ?"
            " AND status IN ('consent', 'active') ORDER BY updated_at DESC",
            (participant_id,),
        )
        return [self._run_row(row) for row in rows]

    async def count_runs(self, participant_id: str) -> int:
        row = await self._one("SELECT count(*) FROM runs WHERE participant = ?", (participant_id,))
        return int(row[0]) if row else 0

    async def answers(self, run_id: str) -> list[AnswerRow]:
        rows = await self._all(
            "SELECT run_id, step, participant, guide_id, guide_version, kind, value, answered_at"
            " FROM answers WHERE run_id = ? ORDER BY answered_at, step",
            (run_id,),
        )
        return [AnswerRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], dt(r[7])) for r in rows]

    async def consents(self, participant_id: str) -> list[ConsentRow]:
        rows = await self._all(
            "SELECT participant, guide_id, guide_version, given, at FROM consents"
            " WHERE participant = ? ORDER BY at",
            (participant_id,),
        )
        return [ConsentRow(r[0], r[1], r[2], bool(r[3]), dt(r[4])) for r in rows]

    async def guide_source(self, guide_hash: str) -> str | None:
        row = await self._one("SELECT source FROM guide_sources WHERE hash = ?", (guide_hash,))
        return None if row is None else str(row[0])

    def claim_holds(self, message_id: int) -> bool:
        return True  # one process drains this outbox: what it read stays its own

    async def claim_due(self, channel: str, now: datetime, limit: int) -> list[OutboxRow]:
        # One process drains this outbox (SQLite is the one-process backend): claiming
        # is reading, and no lease is needed.
        # Up to `limit` people whose first message owed is due, oldest first, each with
        # their messages in order up to the first that must still wait: one person's
        # messages are never sent out of order. Picking people by (not_before, id) walks
        # the outbox_due index and stops at the limit; "the oldest due messages by id"
        # sorted every due row first (169 ms per batch with 200,000 waiting, now ~3 ms).
        # Handed over packed (see `_packed`): row by row, a batch of 450 took 38 ms.
        rows = await self._packed(
            "WITH heads AS (SELECT participant FROM outbox AS o WHERE channel = ?"
            " AND not_before <= ? AND NOT EXISTS (SELECT 1 FROM outbox AS e"
            " WHERE e.participant = o.participant AND e.id < o.id)"
            " ORDER BY not_before, id LIMIT ?)"
            " SELECT id, channel, participant, hex(address), payload, not_before, attempts"
            " FROM outbox WHERE participant IN heads AND +channel = ? ORDER BY id",
            (channel, ts(now), limit, channel),
            columns=7,
        )
        rows.sort(key=lambda r: int(r[0]))  # by id, whatever order the aggregate kept
        due: list[OutboxRow] = []
        waiting: set[str] = set()
        for r in rows:
            if r[2] in waiting:
                continue
            if dt(r[5]) > now:
                waiting.add(r[2])  # this one waits, and so does everything after it
                continue
            due.append(OutboxRow(r[1], r[2], bytes.fromhex(r[3]), r[4], dt(r[5]), r[6], id=r[0]))
        return due

    async def next_due(self, channel: str) -> datetime | None:
        row = await self._one("SELECT min(not_before) FROM outbox WHERE channel = ?", (channel,))
        return None if row is None or row[0] is None else dt(row[0])

    def watch_outbox(self, wake: Callable[[], None]) -> None:
        """Nothing to watch: this process is the only one that queues."""
