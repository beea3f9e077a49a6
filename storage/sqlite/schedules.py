"""Schedules, cohorts and deliveries on SQLite: what the scheduler reads and claims."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from storage.rows import (
    CohortRow,
    DeliveryRow,
    MemberRow,
    OccurrenceRow,
    PreferenceRow,
    ScheduleRow,
)
from storage.sqlite.connection import Connections, dt, ts


def save_schedule_row(db: sqlite3.Connection, s: ScheduleRow) -> None:
    db.execute(
        "INSERT OR REPLACE INTO schedules (id, guide_id, cohort, cron, tz, paused,"
        " created_at, checked_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (s.id, s.guide_id, s.cohort, s.cron, s.tz, int(s.paused), ts(s.created_at),
         ts(s.checked_until)),
    )  # fmt: skip


class SchedulesSQL(Connections):
    """`storage.protocol.ScheduleStore` on SQLite."""

    async def save_cohort(self, name: str, code: str, now: datetime) -> None:
        await self._w.run(
            lambda db: db.execute(
                "INSERT INTO cohorts (name, code, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, code, ts(now)),
            )
        )

    async def save_schedule(self, schedule: ScheduleRow) -> None:
        await self._w.run(lambda db: save_schedule_row(db, schedule))

    async def remove_schedule(self, schedule_id: str) -> bool:
        def remove(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount > 0

        removed: bool = await self._w.run(remove)
        return removed

    async def advance_schedule(self, schedule_id: str, checked_until: datetime) -> None:
        """Occurrences up to `checked_until` have been dealt with (never moves back)."""
        await self._w.run(
            lambda db: db.execute(
                "UPDATE schedules SET checked_until = max(checked_until, ?) WHERE id = ?",
                (ts(checked_until), schedule_id),
            )
        )

    async def claim_occurrence(
        self, schedule_id: str, tz: str, due_at: datetime, now: datetime, lease: timedelta
    ) -> str:
        def claim(db: sqlite3.Connection) -> str:
            cursor = db.execute(
                "INSERT INTO occurrences (schedule, tz, due_at, status, claimed_at)"
                " VALUES (?, ?, ?, 'claimed', ?) ON CONFLICT (schedule, tz, due_at)"
                " DO UPDATE SET claimed_at = excluded.claimed_at"
                " WHERE occurrences.status = 'claimed' AND occurrences.claimed_at < ?",
                (schedule_id, tz, ts(due_at), ts(now), ts(now - lease)),
            )
            if cursor.rowcount == 1:
                return "claimed"
            status = db.execute(
                "SELECT status FROM occurrences WHERE schedule = ? AND tz = ? AND due_at = ?",
                (schedule_id, tz, ts(due_at)),
            ).fetchone()[0]
            return "held" if status == "claimed" else "done"

        claimed: str = await self._w.run(claim)
        return claimed

    async def finish_occurrence(
        self, schedule_id: str, tz: str, due_at: datetime, status: str
    ) -> None:
        await self._w.run(
            lambda db: db.execute(
                "UPDATE occurrences SET status = ? WHERE schedule = ? AND tz = ? AND due_at = ?",
                (status, schedule_id, tz, ts(due_at)),
            )
        )

    async def cohort(self, name: str) -> CohortRow | None:
        row = await self._one("SELECT name, code FROM cohorts WHERE name = ?", (name,))
        return None if row is None else CohortRow(row[0], row[1])

    async def cohorts(self) -> list[CohortRow]:
        rows = await self._all("SELECT name, code FROM cohorts ORDER BY name", ())
        return [CohortRow(row[0], row[1]) for row in rows]

    async def cohort_by_code(self, code: str) -> str | None:
        row = await self._one("SELECT name FROM cohorts WHERE code = ?", (code,))
        return None if row is None else str(row[0])

    async def cohorts_of(self, participant_id: str) -> list[str]:
        rows = await self._all(
            "SELECT cohort FROM members WHERE participant = ? ORDER BY cohort", (participant_id,)
        )
        return [str(row[0]) for row in rows]

    async def members(self, cohort: str) -> list[MemberRow]:
        rows = await self._all(
            "SELECT m.participant, f.tz, f.paused_until, coalesce(p.unreachable, 1)"
            " FROM members AS m LEFT JOIN preferences AS f ON f.participant = m.participant"
            " LEFT JOIN participants AS p ON p.id = m.participant"
            " WHERE m.cohort = ? ORDER BY m.participant",
            (cohort,),
        )
        return [MemberRow(r[0], r[1], None if r[2] is None else dt(r[2]), bool(r[3])) for r in rows]

    async def preference(self, participant_id: str) -> PreferenceRow | None:
        row = await self._one(
            "SELECT participant, tz, paused_until FROM preferences WHERE participant = ?",
            (participant_id,),
        )
        if row is None:
            return None
        return PreferenceRow(row[0], row[1], None if row[2] is None else dt(row[2]))

    async def schedules(self) -> list[ScheduleRow]:
        rows = await self._all(
            "SELECT id, guide_id, cohort, cron, tz, paused, created_at, checked_until"
            " FROM schedules ORDER BY created_at, id",
            (),
        )
        return [
            ScheduleRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), dt(r[6]), dt(r[7])) for r in rows
        ]

    async def occurrences(self, schedule_id: str) -> list[OccurrenceRow]:
        rows = await self._all(
            "SELECT tz, due_at, status FROM occurrences WHERE schedule = ? ORDER BY due_at, tz",
            (schedule_id,),
        )
        return [OccurrenceRow(r[0], dt(r[1]), r[2]) for r in rows]

    async def due_reminders(
        self, delivered_before: datetime, max_reminders: int
    ) -> list[DeliveryRow]:
        """Prompts delivered long enough ago whose run is still under way."""
        rows = await self._all(
            "SELECT d.key, d.schedule, d.participant, d.run_id, d.delivered_at, d.reminders"
            " FROM deliveries AS d JOIN runs AS r ON r.id = d.run_id"
            " WHERE d.delivered_at <= ? AND d.reminders < ?"
            " AND r.status IN ('consent', 'active') ORDER BY d.delivered_at",
            (ts(delivered_before), max_reminders),
        )
        return [DeliveryRow(r[0], r[1], r[2], r[3], dt(r[4]), r[5]) for r in rows]

    async def deliveries(self, schedule_id: str) -> list[DeliveryRow]:
        rows = await self._all(
            "SELECT key, schedule, participant, run_id, delivered_at, reminders"
            " FROM deliveries WHERE schedule = ? ORDER BY delivered_at, key",
            (schedule_id,),
        )
        return [DeliveryRow(r[0], r[1], r[2], r[3], dt(r[4]), r[5]) for r in rows]
