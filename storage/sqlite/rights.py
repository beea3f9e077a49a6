"""Rights and retention on SQLite: erasure with a tombstone, /mydata, old text blanked.

What is erased must live on nowhere: deleted pages are zeroed (`secure_delete`)
and the journal is checkpointed after each erasure.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from storage.rows import (
    KeptAbout,
    KeptAnswer,
    KeptConsent,
    KeptMembership,
    KeptPreference,
    KeptRole,
    KeptRun,
)
from storage.sqlite.connection import Connections, dt, ts


def erase(db: sqlite3.Connection, participant_id: str, now: datetime) -> None:
    """Erase everything that refers to a participant, leaving a tombstone."""
    p = (participant_id,)
    db.execute("DELETE FROM answers WHERE participant = ?", p)
    db.execute("DELETE FROM answers WHERE run_id IN (SELECT id FROM runs WHERE participant = ?)", p)
    db.execute("DELETE FROM runs WHERE participant = ?", p)
    db.execute("DELETE FROM consents WHERE participant = ?", p)
    db.execute("DELETE FROM outbox WHERE participant = ?", p)
    # Messages owed to others that name them: a report that quotes them lists them in
    # its payload (bot/reports/quotes.py), and goes unsent rather than keep their words.
    db.execute("DELETE FROM outbox WHERE instr(payload, ?) > 0", p)
    db.execute("DELETE FROM members WHERE participant = ?", p)
    db.execute("DELETE FROM preferences WHERE participant = ?", p)
    db.execute("DELETE FROM deliveries WHERE participant = ?", p)
    db.execute("DELETE FROM records WHERE key = ?", p)  # roles
    # Other records that name them (the console's audit entries, sessions, sign-in
    # links) keep what happened, no longer who: left, they linked the tombstone back to
    # gatherings and changes (found by review).
    db.execute(
        "UPDATE records SET value = CAST(replace(CAST(value AS TEXT), ?, 'forgotten') AS BLOB)"
        " WHERE instr(value, CAST(? AS BLOB)) > 0",
        (participant_id, participant_id),
    )
    db.execute("DELETE FROM wrong_codes WHERE participant = ?", p)
    db.execute("DELETE FROM participants WHERE id = ?", p)
    # Keys of prompts and reminders name the pseudonym: they go too.
    db.execute("DELETE FROM inbound WHERE instr(key, ?) > 0", p)
    # Their gatherings stay (others answered in them) but no longer name them, nor keep
    # how to reach them (their private chat; the room, if the room was theirs); their
    # open ones close, since nobody can run them now.
    db.execute(
        "UPDATE gatherings SET status = 'closed', closed_at = ?"
        " WHERE facilitator = ? AND status = 'open'",
        (ts(now), participant_id),
    )
    db.execute("UPDATE gatherings SET private_address = x'' WHERE facilitator = ?", p)
    db.execute("UPDATE gatherings SET address = x'' WHERE place = ?", p)
    db.execute(
        "UPDATE gatherings SET facilitator = 'forgotten', place = 'forgotten'"
        " WHERE facilitator = ? OR place = ?",
        (participant_id, participant_id),
    )
    db.execute(
        "INSERT OR REPLACE INTO tombstones (participant, at) VALUES (?, ?)",
        (participant_id, ts(now)),
    )


class RightsSQL(Connections):
    """`storage.protocol.RightsStore` on SQLite."""

    async def forget(self, participant_id: str, now: datetime) -> None:
        """Erase everything that refers to a participant, leaving a tombstone; then
        checkpoint the WAL so no copy of the data survives in the journal."""

        await self._w.run(lambda db: erase(db, participant_id, now))
        await self._checkpoint()

    async def _checkpoint(self) -> None:
        """Copy the journal into the database and empty it, so what was just erased
        lives on nowhere (secure_delete has zeroed the freed pages)."""
        # Outside any transaction, so from the reader's connection, not the writer's.
        await self._r.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")

    async def expire_texts(self, kinds: Sequence[str], before: datetime) -> int:
        """Blank free-text answers older than `before`, keeping the rows (so counts stay),
        and the copy of each that its run's state keeps (`answers` in the state's JSON)."""
        marks = ", ".join("?" for _ in kinds)

        def blank(db: sqlite3.Connection) -> int:
            old = db.execute(
                f"UPDATE answers SET value = '\"\"' WHERE kind IN ({marks})"
                " AND answered_at < ? AND value NOT IN ('\"\"', 'null') RETURNING run_id, step",
                (*kinds, ts(before)),
            ).fetchall()
            # The run's state carries each answer too (for the guide's texts): blanked
            # with it, or a copy of the database kept the words (found by review).
            db.executemany(
                "UPDATE runs SET state = json_set(state, '$.answers.' || json_quote(?), '')"
                " WHERE id = ? AND json_type(state, '$.answers.' || json_quote(?)) = 'text'",
                [(step, run_id, step) for run_id, step in old],
            )
            return len(old)

        blanked: int = await self._w.run(blank)
        if blanked:
            await self._checkpoint()
        return blanked

    async def tombstone(self, participant_id: str) -> datetime | None:
        row = await self._one("SELECT at FROM tombstones WHERE participant = ?", (participant_id,))
        return None if row is None else dt(row[0])

    async def mine(self, participant_id: str) -> KeptAbout:
        """Everything kept about one participant, table by table (for /mydata)."""
        p = (participant_id,)
        runs = await self._all(
            "SELECT id, guide_id, guide_version, status, started_at, updated_at"
            " FROM runs WHERE participant = ? ORDER BY started_at",
            p,
        )
        answers = await self._all(
            "SELECT run_id, guide_id, step, kind, value, answered_at FROM answers"
            " WHERE participant = ? ORDER BY answered_at, rowid",
            p,
        )
        consents = await self._all(
            "SELECT guide_id, guide_version, given, at FROM consents"
            " WHERE participant = ? ORDER BY at",
            p,
        )
        cohorts = await self._all("SELECT cohort, joined_at FROM members WHERE participant = ?", p)
        preferences = await self._all(
            "SELECT tz, paused_until FROM preferences WHERE participant = ?", p
        )
        roles = await self._all(
            "SELECT CAST(value AS TEXT) FROM records WHERE kind = 'role' AND key = ?", p
        )
        return KeptAbout(
            runs=[KeptRun(r[0], r[1], r[2], r[3], dt(r[4]), dt(r[5])) for r in runs],
            answers=[KeptAnswer(r[0], r[1], r[2], r[3], r[4], dt(r[5])) for r in answers],
            consents=[KeptConsent(r[0], r[1], bool(r[2]), dt(r[3])) for r in consents],
            cohorts=[KeptMembership(r[0], dt(r[1])) for r in cohorts],
            preferences=[
                KeptPreference(r[0], None if r[1] is None else dt(r[1])) for r in preferences
            ],
            roles=[KeptRole(r[0]) for r in roles],
        )
