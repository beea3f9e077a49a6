"""Schedules, cohorts and deliveries on PostgreSQL: what the scheduler reads and claims."""

from __future__ import annotations

from datetime import datetime, timedelta

from storage.postgres.connection import Connections, utc
from storage.rows import (
    CohortRow,
    DeliveryRow,
    MemberRow,
    OccurrenceRow,
    PreferenceRow,
    ScheduleRow,
)

# Take an occurrence, or take it over from a claimant that held it past its lease; and,
# from the statement's snapshot, what it was if neither. A row another instance made
# after that snapshot is not seen (NULL): it was claimed a moment ago, so it is held.
CLAIM_OCCURRENCE = """
WITH claimed AS (
    INSERT INTO occurrences (schedule, tz, due_at, status, claimed_at)
    VALUES ($1, $2, $3, 'claimed', $4) ON CONFLICT (schedule, tz, due_at)
    DO UPDATE SET claimed_at = excluded.claimed_at
    WHERE occurrences.status = 'claimed' AND occurrences.claimed_at < $5
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM claimed),
    (SELECT status FROM occurrences WHERE schedule = $1 AND tz = $2 AND due_at = $3)
"""

SAVE_SCHEDULE = (
    "INSERT INTO schedules (id, guide_id, cohort, cron, tz, paused, created_at, checked_until)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET"
    " guide_id = excluded.guide_id, cohort = excluded.cohort, cron = excluded.cron,"
    " tz = excluded.tz, paused = excluded.paused, created_at = excluded.created_at,"
    " checked_until = excluded.checked_until"
)


class SchedulesPG(Connections):
    """`storage.protocol.ScheduleStore` on PostgreSQL."""

    async def save_cohort(self, name: str, code: str, now: datetime) -> None:
        await self._execute(
            "INSERT INTO cohorts (name, code, created_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (name) DO NOTHING",
            name,
            code,
            utc(now),
        )

    async def save_schedule(self, schedule: ScheduleRow) -> None:
        s = schedule
        await self._execute(
            SAVE_SCHEDULE, s.id, s.guide_id, s.cohort, s.cron, s.tz, s.paused,
            utc(s.created_at), utc(s.checked_until),
        )  # fmt: skip

    async def remove_schedule(self, schedule_id: str) -> bool:
        status = await self._execute("DELETE FROM schedules WHERE id = $1", schedule_id)
        return status != "DELETE 0"

    async def advance_schedule(self, schedule_id: str, checked_until: datetime) -> None:
        """Occurrences up to `checked_until` have been dealt with (never moves back)."""
        await self._execute(
            "UPDATE schedules SET checked_until = greatest(checked_until, $1) WHERE id = $2",
            utc(checked_until),
            schedule_id,
        )

    async def claim_occurrence(
        self, schedule_id: str, tz: str, due_at: datetime, now: datetime, lease: timedelta
    ) -> str:
        row = await self._one(
            CLAIM_OCCURRENCE, schedule_id, tz, utc(due_at), utc(now), utc(now - lease)
        )
        assert row is not None
        if row[0]:
            return "claimed"
        return "done" if row[1] not in (None, "claimed") else "held"

    async def finish_occurrence(
        self, schedule_id: str, tz: str, due_at: datetime, status: str
    ) -> None:
        await self._execute(
            "UPDATE occurrences SET status = $1 WHERE schedule = $2 AND tz = $3 AND due_at = $4",
            status,
            schedule_id,
            tz,
            utc(due_at),
        )

    async def cohort(self, name: str) -> CohortRow | None:
        row = await self._one("SELECT name, code FROM cohorts WHERE name = $1", name)
        return None if row is None else CohortRow(row[0], row[1])

    async def cohorts(self) -> list[CohortRow]:
        rows = await self._all("SELECT name, code FROM cohorts ORDER BY name")
        return [CohortRow(row[0], row[1]) for row in rows]

    async def cohort_by_code(self, code: str) -> str | None:
        found: str | None = await self._value("SELECT name FROM cohorts WHERE code = $1", code)
        return found

    async def cohorts_of(self, participant_id: str) -> list[str]:
        rows = await self._all(
            "SELECT cohort FROM members WHERE participant = $1 ORDER BY cohort", participant_id
        )
        return [str(row[0]) for row in rows]

    async def members(self, cohort: str) -> list[MemberRow]:
        rows = await self._all(
            "SELECT m.participant, f.tz, f.paused_until, coalesce(p.unreachable, true)"
            " FROM members AS m LEFT JOIN preferences AS f ON f.participant = m.participant"
            " LEFT JOIN participants AS p ON p.id = m.participant"
            " WHERE m.cohort = $1 ORDER BY m.participant",
            cohort,
        )
        return [MemberRow(r[0], r[1], r[2], r[3]) for r in rows]

    async def preference(self, participant_id: str) -> PreferenceRow | None:
        row = await self._one(
            "SELECT participant, tz, paused_until FROM preferences WHERE participant = $1",
            participant_id,
        )
        return None if row is None else PreferenceRow(row[0], row[1], row[2])

    async def schedules(self) -> list[ScheduleRow]:
        rows = await self._all(
            "SELECT id, guide_id, cohort, cron, tz, paused, created_at, checked_until"
            " FROM schedules ORDER BY created_at, id"
        )
        return [ScheduleRow(*r) for r in rows]

    async def occurrences(self, schedule_id: str) -> list[OccurrenceRow]:
        rows = await self._all(
            "SELECT tz, due_at, status FROM occurrences WHERE schedule = $1 ORDER BY due_at, tz",
            schedule_id,
        )
        return [OccurrenceRow(r[0], r[1], r[2]) for r in rows]

    async def due_reminders(
        self, delivered_before: datetime, max_reminders: int
    ) -> list[DeliveryRow]:
        """Prompts delivered long enough ago whose run is still under way."""
        rows = await self._all(
            "SELECT d.key, d.schedule, d.participant, d.run_id, d.delivered_at, d.reminders"
            " FROM deliveries AS d JOIN runs AS r ON r.id = d.run_id"
            " WHERE d.delivered_at <= $1 AND d.reminders < $2"
            " AND r.status IN ('consent', 'active') ORDER BY d.delivered_at",
            utc(delivered_before),
            max_reminders,
        )
        return [DeliveryRow(*r) for r in rows]

    async def deliveries(self, schedule_id: str) -> list[DeliveryRow]:
        rows = await self._all(
            "SELECT key, schedule, participant, run_id, delivered_at, reminders"
            " FROM deliveries WHERE schedule = $1 ORDER BY delivered_at, key",
            schedule_id,
        )
        return [DeliveryRow(*r) for r in rows]
