"""Reports and exports on SQLite: digests' aggregates, free text a page at a time, and
export pages. Aggregates come back packed in one row each (`Connections._packed`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import datetime

import aiosqlite

from storage.as_of import AS_OF_UNTIL
from storage.forgotten import not_forgotten
from storage.rows import (
    ChoiceCount,
    CrossTally,
    ExportRow,
    GatheringHeld,
    PeopleCount,
    RunCount,
    StepCount,
    Tally,
    TextAnswer,
)
from storage.sqlite.connection import PRAGMAS, Connections, dt, ts


class ReportsSQL(Connections):
    """`storage.protocol.ReportStore` on SQLite."""

    async def export_rows(
        self,
        guide_id: str,
        since: datetime | None,
        until: datetime | None,
        after: tuple[str, str, str] | None,
        limit: int,
        by_run: bool = False,
    ) -> list[ExportRow]:
        """A page of a guide's answers in a stable order, for streaming exports:
        (answered_at, run, step, guide_version, participant, kind, value, language).
        Pages follow each other by `after`, the last row's sort key: (answered_at, run,
        step), or (run, step, answered_at) with `by_run`."""
        low = ts(since) if since else ""
        high = ts(until) if until else "9999"
        start = after or ("", "", "")
        key = "a.run_id, a.step, a.answered_at" if by_run else "a.answered_at, a.run_id, a.step"
        rows = await self._all(
            "SELECT a.answered_at, a.run_id, a.step, a.guide_version, a.participant, a.kind,"
            " a.value, coalesce(json_extract(r.state, '$.language'), '')"
            " FROM answers AS a LEFT JOIN runs AS r ON r.id = a.run_id"
            " WHERE a.guide_id = ? AND a.answered_at >= ? AND a.answered_at < ?"
            f" AND ({key}) > (?, ?, ?)"
            f" AND {not_forgotten('a')}"
            f" ORDER BY {key} LIMIT ?",
            (guide_id, low, high, *start, limit),
        )
        return [ExportRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]

    async def choice_counts(
        self, guide_id: str, since: datetime, until: datetime
    ) -> list[ChoiceCount]:
        """(step, value as JSON, distinct people) for every choice, scale and number
        answer and every option of a choose-many one, answered in the period, for
        public-release thresholds."""
        window = (ts(since), ts(until))
        rows = await self._all(
            "SELECT step, value, count(DISTINCT participant) FROM answers"
            " WHERE guide_id = ? AND answered_at >= ? AND answered_at < ?"
            " AND kind IN ('choose', 'scale', 'number') GROUP BY step, value"
            " UNION ALL SELECT a.step, json_quote(j.value), count(DISTINCT a.participant)"
            # A skipped one is null, not a list: it has no options to count.
            " FROM answers AS a, json_each(CASE json_type(a.value) WHEN 'array'"
            " THEN a.value ELSE '[]' END) AS j"
            " WHERE a.guide_id = ? AND a.answered_at >= ? AND a.answered_at < ?"
            " AND a.kind = 'choose_many' GROUP BY 1, 2",
            (guide_id, *window, guide_id, *window),
        )
        return [ChoiceCount(r[0], r[1], r[2]) for r in rows]

    async def forgotten_so_far(self) -> tuple[int, datetime | None]:
        row = await self._one("SELECT count(*), max(at) FROM tombstones", ())
        assert row is not None
        return row[0], None if row[1] is None else dt(row[1])

    # Digests: plain aggregates over one period, each handed over as one row (`_packed`) --

    async def run_counts(self, since: datetime, until: datetime) -> list[RunCount]:
        """(guide, status, runs, distinct participants) for runs active in the period."""
        rows = await self._packed(
            f"SELECT guide_id, {AS_OF_UNTIL.format('?')}, count(*), count(DISTINCT participant)"
            " FROM runs WHERE updated_at >= ? AND started_at < ? GROUP BY 1, 2",
            (ts(until), ts(since), ts(until)),
            4,
        )
        return [RunCount(r[0], r[1], r[2], r[3]) for r in rows]

    async def people_counts(self, since: datetime, until: datetime) -> list[PeopleCount]:
        """(guide, distinct participants in the period, of whom new: first run ever in it)."""
        # New: no run of theirs, of any guide, began before the period. Looked up per
        # person (runs_by_participant) rather than working out everyone's first run over
        # the whole table, it costs half as much.
        rows = await self._packed(
            "SELECT r.guide_id, count(DISTINCT r.participant),"
            " count(DISTINCT CASE WHEN NOT EXISTS (SELECT 1 FROM runs AS o"
            " WHERE o.participant = r.participant AND o.started_at < ?) THEN r.participant END)"
            " FROM runs AS r WHERE r.updated_at >= ? AND r.started_at < ? GROUP BY r.guide_id",
            (ts(since), ts(since), ts(until)),
            3,
        )
        return [PeopleCount(r[0], r[1], r[2]) for r in rows]

    async def open_steps(self, guide_id: str, since: datetime, until: datetime) -> list[StepCount]:
        """Where runs of a guide that did not finish stopped: (step, runs)."""
        rows = await self._packed(
            "SELECT coalesce(json_extract(state, '$.step'), json_extract(state, '$.left_at'),"
            " '_consent'), count(*) FROM runs"
            " WHERE guide_id = ? AND status NOT IN ('finished', 'declined')"
            " AND updated_at >= ? AND started_at < ? GROUP BY 1",
            (guide_id, ts(since), ts(until)),
            2,
        )
        return [StepCount(r[0], r[1]) for r in rows]

    async def people_tallies(self, guide_id: str, since: datetime, until: datetime) -> list[Tally]:
        """(step, one value as JSON, distinct people who gave it) for choices, scales and
        numbers; each option of a list of choices counts on its own."""
        # Lists (choose_many) are split by json_each, which costs a row each: only
        # those rows take that path, the rest are grouped as they are.
        rows = await self._packed(
            "SELECT step, value, count(DISTINCT participant) FROM answers"
            " WHERE guide_id = ? AND answered_at >= ? AND answered_at < ?"
            " AND kind IN ('choose', 'scale', 'number') AND value != 'null' GROUP BY step, value"
            " UNION ALL SELECT a.step, json_quote(j.value), count(DISTINCT a.participant)"
            " FROM answers AS a, json_each(a.value) AS j"
            " WHERE a.guide_id = ? AND a.answered_at >= ? AND a.answered_at < ?"
            " AND a.kind = 'choose_many' AND a.value != 'null' GROUP BY 1, 2",
            (guide_id, ts(since), ts(until)) * 2,
            3,
        )
        return [Tally(r[0], r[1], r[2]) for r in rows]

    async def cross_tallies(
        self, guide_id: str, since: datetime, until: datetime, by_step: str, step: str
    ) -> list[CrossTally]:
        """People by (option given to `by_step`, value given to `step` in the same run),
        and by option alone among those who answered `step` (value None)."""
        split = (  # one row per option of a list, one per value otherwise
            "SELECT a.run_id, a.participant, json_quote(j.value) AS v"
            " FROM answers AS a, json_each(CASE WHEN a.kind = 'choose_many' THEN a.value"
            " ELSE json_array(json(a.value)) END) AS j"
            " WHERE a.guide_id = ? AND a.step = ? AND a.answered_at >= ? AND a.answered_at < ?"
            " AND a.value != 'null'"
        )
        period = (ts(since), ts(until))
        rows = await self._packed(
            f"WITH g AS ({split}), x AS ({split})"
            " SELECT g.v, x.v, count(DISTINCT g.participant) FROM g JOIN x USING (run_id)"
            " GROUP BY g.v, x.v"
            " UNION ALL SELECT g.v, NULL, count(DISTINCT g.participant) FROM g"
            " WHERE g.run_id IN (SELECT run_id FROM x) GROUP BY g.v",
            (guide_id, by_step, *period, guide_id, step, *period),
            3,
        )
        return [CrossTally(r[0], r[1], r[2]) for r in rows]

    async def text_sample(
        self, guide_id: str, step: str, since: datetime, until: datetime, after: str, limit: int
    ) -> list[TextAnswer]:
        """Up to `limit` answers to `step` from people after `after`, by participant."""
        rows = await self._packed(
            "SELECT participant, run_id, step, value FROM answers WHERE guide_id = ?"
            " AND answered_at >= ? AND answered_at < ? AND step = ? AND participant > ?"
            " AND value != 'null' ORDER BY participant, answered_at, run_id LIMIT ?",
            (guide_id, ts(since), ts(until), step, after, limit),
            4,
        )
        return [TextAnswer(r[0], r[1], r[2], r[3]) for r in rows]

    async def answer_people(
        self, guide_id: str, since: datetime, until: datetime, steps: Sequence[str] | None = None
    ) -> list[StepCount]:
        """(step, distinct people who answered it) in the period, of these steps if given."""
        only = "" if steps is None else f" AND step IN ({', '.join('?' for _ in steps)})"
        rows = await self._packed(
            "SELECT step, count(DISTINCT participant) FROM answers WHERE guide_id = ?"
            f" AND answered_at >= ? AND answered_at < ? AND value != 'null'{only} GROUP BY step",
            (guide_id, ts(since), ts(until), *(steps or ())),
            2,
        )
        return [StepCount(r[0], r[1]) for r in rows]

    async def answer_text_pages(
        self,
        guide_id: str,
        steps: Sequence[str],
        since: datetime,
        until: datetime,
        runs: Sequence[str] | None = None,
        page: int = 5000,
        with_language: bool = False,
    ) -> AsyncGenerator[list[TextAnswer], None]:
        """Pages of (participant, run, step, value as JSON) for these (free-text) steps, of
        these runs if given, ordered by participant, then as answered.

        One sorted query, read a page at a time on a connection of its own: keyset pages
        in this order would each sort the whole period again, and a cursor left open on
        the shared reader would hold every other read there to its snapshot."""
        if not steps or (runs is not None and not runs):
            return
        # Given runs, a unary + keeps SQLite off the (guide, time) index, which would
        # scan the whole period: it looks the runs up by key instead.
        plus, only = "", ""
        if runs is not None:
            plus, only = "+", f" AND run_id IN ({', '.join('?' for _ in runs)})"
        # The run's language only when asked for: it costs the digest's word counts a
        # look-up per answer they don't need.
        language = "''"
        if with_language:
            language = "coalesce((SELECT json_extract(r.state, '$.language') FROM runs AS r"
            language += " WHERE r.id = answers.run_id), '')"
        sql = (
            f"SELECT participant, run_id, step, value, {language} FROM answers"
            f" WHERE {plus}guide_id = ?"
            f" AND step IN ({', '.join('?' for _ in steps)}) AND {plus}answered_at >= ?"
            f" AND {plus}answered_at < ? AND value != 'null'{only}"
            f" AND {not_forgotten('answers')}"  # as exports
            " ORDER BY participant, answered_at, run_id, step"
        )
        params = (guide_id, *steps, ts(since), ts(until), *(runs or ()))
        async with aiosqlite.connect(self.path, isolation_level=None) as db:
            for pragma in (*PRAGMAS[2:], "PRAGMA query_only=ON"):
                await db.execute(pragma)
            async with db.execute(sql, params) as cursor:
                while rows := await cursor.fetchmany(page):
                    yield [TextAnswer(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def gatherings_held(self, since: datetime, until: datetime) -> list[GatheringHeld]:
        rows = await self._packed(
            "SELECT guide_id, title, code FROM gatherings WHERE created_at >= ? AND created_at < ?"
            " ORDER BY created_at, code",
            (ts(since), ts(until)),
            3,
        )
        return [GatheringHeld(r[0], r[1], r[2]) for r in rows]
