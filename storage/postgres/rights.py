"""Rights and retention on PostgreSQL: erasure with a tombstone, /mydata, old text blanked.

Erasure deletes every row that refers to the person, in one statement (the server's
`kt_erase`, which a turn's commit calls too). What PostgreSQL still holds of deleted
rows until they are vacuumed, and in its write-ahead log, is a matter for erasure's
own step after the delete, not for these rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from storage.postgres.connection import Connections, utc
from storage.postgres.erasure import BLANKED
from storage.rows import (
    KeptAbout,
    KeptAnswer,
    KeptConsent,
    KeptMembership,
    KeptPreference,
    KeptRole,
    KeptRun,
)


class RightsPG(Connections):
    """`storage.protocol.RightsStore` on PostgreSQL."""

    async def forget(self, participant_id: str, now: datetime) -> None:
        """Erase everything that refers to a participant, leaving a tombstone."""
        await self._execute("SELECT kt_erase($1, $2)", participant_id, utc(now))

    async def expire_texts(self, kinds: Sequence[str], before: datetime) -> int:
        """Blank free-text answers older than `before`, keeping the rows (so counts stay),
        and the copy of each that its run's state keeps; and leave a mark, so that
        erasure's next round rewrites the files that still hold the old values."""
        blanked: int = await self._value(EXPIRE_TEXTS, list(kinds), utc(before), *BLANKED)
        return blanked

    async def tombstone(self, participant_id: str) -> datetime | None:
        found: datetime | None = await self._value(
            "SELECT at FROM tombstones WHERE participant = $1", participant_id
        )
        return found

    async def mine(self, participant_id: str) -> KeptAbout:
        """Everything kept about one participant, table by table (for /mydata)."""
        p = participant_id
        async with self.pool.acquire() as db, db.transaction(readonly=True):
            runs = await db.fetch(
                "SELECT id, guide_id, guide_version, status, started_at, updated_at"
                " FROM runs WHERE participant = $1 ORDER BY started_at",
                p,
            )
            answers = await db.fetch(
                "SELECT run_id, guide_id, step, kind, value, answered_at FROM answers"
                " WHERE participant = $1 ORDER BY answered_at, n",
                p,
            )
            consents = await db.fetch(
                "SELECT guide_id, guide_version, given, at FROM consents"
                " WHERE participant = $1 ORDER BY at, n",
                p,
            )
            cohorts = await db.fetch(
                "SELECT cohort, joined_at FROM members WHERE participant = $1", p
            )
            preferences = await db.fetch(
                "SELECT tz, paused_until FROM preferences WHERE participant = $1", p
            )
            roles = await db.fetch(
                "SELECT convert_from(value, 'UTF8') FROM records WHERE kind = 'role' AND key = $1",
                p,
            )
        return KeptAbout(
            runs=[KeptRun(*r) for r in runs],
            answers=[KeptAnswer(*r) for r in answers],
            consents=[KeptConsent(*r) for r in consents],
            cohorts=[KeptMembership(*r) for r in cohorts],
            preferences=[KeptPreference(*r) for r in preferences],
            roles=[KeptRole(r[0]) for r in roles],
        )


# In one statement: the answers blanked, the copies their runs' states keep (`answers`
# in the state's JSON, for the guide's texts; found by review to outlive retention:
# only a text kept there is blanked, as on SQLite), and, if anything was blanked, a
# mark for erasure's next round to see (a token, not a time: the database's clock and
# the bot's need not agree).
EXPIRE_TEXTS = """
WITH blanked AS (
    UPDATE answers SET value = '""' WHERE kind = ANY($1::text[])
        AND answered_at < $2 AND value NOT IN ('""', 'null')
    RETURNING run_id, step
), states AS (
    UPDATE runs AS r SET state = jsonb_set(
        r.state::jsonb, '{answers}', coalesce(r.state::jsonb -> 'answers', '{}') || b.steps
    )::text
    FROM (SELECT b.run_id, jsonb_object_agg(b.step, ''::text) AS steps
          FROM blanked AS b JOIN runs AS o ON o.id = b.run_id
          WHERE jsonb_typeof(o.state::jsonb -> 'answers' -> b.step) = 'string'
          GROUP BY b.run_id) AS b
    WHERE r.id = b.run_id
), noted AS (
    INSERT INTO records (kind, key, value)
    SELECT $3, $4, convert_to(gen_random_uuid()::text, 'UTF8')
    WHERE EXISTS (SELECT 1 FROM blanked)
    ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value
)
SELECT count(*)::int FROM blanked
"""
