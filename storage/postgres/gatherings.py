"""Gatherings on PostgreSQL: a facilitated gathering, found by id, code or place."""

from __future__ import annotations

from storage.postgres.connection import Connections
from storage.rows import AnswerRow, GatheringRow, RunRow


class GatheringsPG(Connections):
    """`storage.protocol.GatheringStore` on PostgreSQL."""

    async def gathering(self, gathering_id: str) -> GatheringRow | None:
        row = await self._one(
            f"SELECT {self._GATHERING_COLUMNS} FROM gatherings WHERE id = $1", gathering_id
        )
        return None if row is None else self._gathering_row(row)

    async def gathering_by_code(self, code: str) -> GatheringRow | None:
        row = await self._one(
            f"SELECT {self._GATHERING_COLUMNS} FROM gatherings WHERE code = $1", code
        )
        return None if row is None else self._gathering_row(row)

    async def latest_gathering(self, facilitator: str, place: str) -> GatheringRow | None:
        # The room's own gathering first; else the facilitator's latest anywhere.
        row = await self._one(
            f"SELECT {self._GATHERING_COLUMNS} FROM gatherings"
            " WHERE place = $1 OR facilitator = $2"
            " ORDER BY place = $1 DESC, created_at DESC LIMIT 1",
            place,
            facilitator,
        )
        return None if row is None else self._gathering_row(row)

    async def gathering_runs(self, gathering_id: str) -> list[RunRow]:
        rows = await self._all(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE gathering = $1 ORDER BY started_at, id",
            gathering_id,
        )
        return [self._run_row(row) for row in rows]

    async def gathering_answers(self, gathering_id: str) -> list[AnswerRow]:
        rows = await self._all(
            "SELECT a.run_id, a.step, a.participant, a.guide_id, a.guide_version, a.kind,"
            " a.value, a.answered_at FROM answers AS a JOIN runs AS r ON r.id = a.run_id"
            " WHERE r.gathering = $1 ORDER BY a.answered_at, a.run_id, a.step",
            gathering_id,
        )
        return [AnswerRow(*r) for r in rows]

    async def open_gatherings(self) -> list[GatheringRow]:
        rows = await self._all(
            f"SELECT {self._GATHERING_COLUMNS} FROM gatherings WHERE status = 'open'"
            " ORDER BY created_at DESC, id"
        )
        return [self._gathering_row(row) for row in rows]
