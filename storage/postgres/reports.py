"""Reports and exports on PostgreSQL: digests' aggregates, free text a page at a time, and
export pages, each the same query as SQLite's (storage/sqlite/reports.py) in
PostgreSQL's words."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import datetime

from storage.as_of import AS_OF_UNTIL
from storage.forgotten import not_forgotten
from storage.postgres.connection import Connections, ts, utc
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


class ReportsPG(Connections):
    """`storage.protocol.ReportStore` on PostgreSQL."""

    async def export_rows(
        self,
        guide_id: str,
        since: datetime | None,
        until: datetime | None,
        after: tuple[str, str, str] | None,
        limit: int,
        by_run: bool = False,
    ) -> list[ExportRow]:
        """A page of a guide's answers in a stable order, for streaming exports. Pages
        follow each other by `after`, the last row's sort key: (answered_at as text,
        run, step), or (run, step, answered_at) with `by_run`."""
        # `after` holds the time as text (`ExportRow.answered_at`), as SQLite stores it.
        if by_run:
            order = "a.run_id, a.step, a.answered_at"
            following = "(a.run_id, a.step, a.answered_at) > ($4, $5, $6)"
        else:
            order = "a.answered_at, a.run_id, a.step"
            following = "(a.answered_at, a.run_id, a.step) > ($4, $5, $6)"
        params: tuple[object, ...] = ()
        if after is None or after == ("", "", ""):  # the first page
            following = "true"
        elif by_run:
            params = (after[0], after[1], datetime.fromisoformat(after[2]))
        else:
            params = (datetime.fromisoformat(after[0]), after[1], after[2])
        rows = await self._all(
            "SELECT a.answered_at, a.run_id, a.step, a.guide_version, a.participant, a.kind,"
            " a.value, coalesce(r.state::jsonb ->> 'language', '')"
            " FROM answers AS a LEFT JOIN runs AS r ON r.id = a.run_id"
            " WHERE a.guide_id = $1"
            " AND ($2::timestamptz IS NULL OR a.answered_at >= $2)"
            " AND ($3::timestamptz IS NULL OR a.answered_at < $3)"
            f" AND {following}"
            f" AND {not_forgotten('a')}"
            f" ORDER BY {order} LIMIT {'$7' if params else '$4'}",
            guide_id,
            None if since is None else utc(since),
            None if until is None else utc(until),
            *params,
            limit,
        )
        return [ExportRow(ts(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]

    async def choice_counts(
        self, guide_id: str, since: datetime, until: datetime
    ) -> list[ChoiceCount]:
        """(step, value as JSON, distinct people) for every choice, scale and number
        answer and every option of a choose-many one, answered in the period, for
        public-release thresholds."""
        rows = await self._all(
            "SELECT step, value, count(DISTINCT participant) FROM answers"
            " WHERE guide_id = $1 AND answered_at >= $2 AND answered_at < $3"
            " AND kind IN ('choose', 'scale', 'number') GROUP BY step, value"
            " UNION ALL SELECT a.step, j.value::text, count(DISTINCT a.participant)"
            # A skipped one is null, not a list: it has no options to count.
            " FROM answers AS a, jsonb_array_elements(CASE jsonb_typeof(a.value::jsonb)"
            " WHEN 'array' THEN a.value::jsonb ELSE '[]' END) AS j"
            " WHERE a.guide_id = $1 AND a.answered_at >= $2 AND a.answered_at < $3"
            " AND a.kind = 'choose_many' GROUP BY 1, 2",
            guide_id,
            utc(since),
            utc(until),
        )
        return [ChoiceCount(r[0], r[1], r[2]) for r in rows]

    async def run_counts(self, since: datetime, until: datetime) -> list[RunCount]:
        """(guide, status, runs, distinct participants) for runs active in the period."""
        rows = await self._all(
            f"SELECT guide_id, {AS_OF_UNTIL.format('$2')}, count(*), count(DISTINCT participant)"
            " FROM runs WHERE updated_at >= $1 AND started_at < $2 GROUP BY 1, 2",
            utc(since),
            utc(until),
        )
        return [RunCount(r[0], r[1], r[2], r[3]) for r in rows]

    async def forgotten_so_far(self) -> tuple[int, datetime | None]:
        row = await self._one("SELECT count(*), max(at) FROM tombstones")
        assert row is not None
        return row[0], row[1]

    async def people_counts(self, since: datetime, until: datetime) -> list[PeopleCount]:
        """(guide, distinct participants in the period, of whom new: first run ever in it)."""
        rows = await self._all(
            "SELECT r.guide_id, count(DISTINCT r.participant),"
            " count(DISTINCT CASE WHEN NOT EXISTS (SELECT 1 FROM runs AS o"
            " WHERE o.participant = r.participant AND o.started_at < $1) THEN r.participant END)"
            " FROM runs AS r WHERE r.updated_at >= $1 AND r.started_at < $2 GROUP BY r.guide_id",
            utc(since),
            utc(until),
        )
        return [PeopleCount(r[0], r[1], r[2]) for r in rows]

    async def open_steps(self, guide_id: str, since: datetime, until: datetime) -> list[StepCount]:
        """Where runs of a guide that did not finish stopped: (step, runs)."""
        rows = await self._all(
            "SELECT coalesce(state::jsonb ->> 'step', state::jsonb ->> 'left_at', '_consent'),"
            " count(*) FROM runs"
            " WHERE guide_id = $1 AND status NOT IN ('finished', 'declined')"
            " AND updated_at >= $2 AND started_at < $3 GROUP BY 1",
            guide_id,
            utc(since),
            utc(until),
        )
        return [StepCount(r[0], r[1]) for r in rows]

    async def people_tallies(self, guide_id: str, since: datetime, until: datetime) -> list[Tally]:
        """(step, one value as JSON, distinct people who gave it) for choices, scales and
        numbers; each option of a list of choices counts on its own."""
        # As on SQLite: lists (choose_many) alone are split, the rest grouped as they are.
        rows = await self._all(
            "SELECT step, value, count(DISTINCT participant) FROM answers"
            " WHERE guide_id = $1 AND answered_at >= $2 AND answered_at < $3"
            " AND kind IN ('choose', 'scale', 'number') AND value <> 'null' GROUP BY step, value"
            " UNION ALL SELECT a.step, j.value::text, count(DISTINCT a.participant)"
            " FROM answers AS a CROSS JOIN LATERAL jsonb_array_elements(a.value::jsonb) AS j"
            " WHERE a.guide_id = $1 AND a.answered_at >= $2 AND a.answered_at < $3"
            " AND a.kind = 'choose_many' AND a.value <> 'null' GROUP BY 1, 2",
            guide_id,
            utc(since),
            utc(until),
        )
        return [Tally(r[0], r[1], r[2]) for r in rows]

    async def cross_tallies(
        self, guide_id: str, since: datetime, until: datetime, by_step: str, step: str
    ) -> list[CrossTally]:
        """People by (option given to `by_step`, value given to `step` in the same run),
        and by option alone among those who answered `step` (value None)."""

        # Lists (choose_many) alone go through jsonb_array_elements: the planner guesses
        # 100 rows for each row it is given, and over every answer that guess pushed the
        # query's cost past jit_above_cost (1.2 s of JIT compiling for a 30 ms query).
        def split(which: str) -> str:
            where = (f"guide_id = $1 AND step = {which} AND answered_at >= $2"
                     " AND answered_at < $3 AND value <> 'null'")  # fmt: skip
            return (
                f"SELECT run_id, participant, value AS v FROM answers WHERE {where}"
                " AND kind <> 'choose_many' UNION ALL SELECT run_id, participant, e.v::text"
                f" FROM answers CROSS JOIN LATERAL jsonb_array_elements(value::jsonb) AS e(v)"
                f" WHERE {where} AND kind = 'choose_many'"
            )

        # The subtotal of each group (value NULL) is a grouping set: its people are
        # counted once however many values they gave.
        rows = await self._all(
            f"WITH g AS ({split('$4')}), x AS ({split('$5')})"
            " SELECT g.v, x.v, count(DISTINCT g.participant) FROM g JOIN x USING (run_id)"
            " GROUP BY GROUPING SETS ((g.v, x.v), (g.v))",
            guide_id,
            utc(since),
            utc(until),
            by_step,
            step,
        )
        return [CrossTally(r[0], r[1], r[2]) for r in rows]

    async def text_sample(
        self, guide_id: str, step: str, since: datetime, until: datetime, after: str, limit: int
    ) -> list[TextAnswer]:
        """Up to `limit` answers to `step` from people after `after`, by participant."""
        rows = await self._all(
            "SELECT participant, run_id, step, value FROM answers WHERE guide_id = $1"
            " AND answered_at >= $2 AND answered_at < $3 AND step = $4"
            " AND participant > $5 AND value <> 'null'"
            " ORDER BY participant, answered_at, run_id LIMIT $6",
            guide_id,
            utc(since),
            utc(until),
            step,
            after,
            limit,
        )
        return [TextAnswer(r[0], r[1], r[2], r[3]) for r in rows]

    async def answer_people(
        self, guide_id: str, since: datetime, until: datetime, steps: Sequence[str] | None = None
    ) -> list[StepCount]:
        """(step, distinct people who answered it) in the period, of these steps if given."""
        rows = await self._all(
            "SELECT step, count(DISTINCT participant) FROM answers WHERE guide_id = $1"
            " AND answered_at >= $2 AND answered_at < $3 AND value <> 'null'"
            " AND ($4::text[] IS NULL OR step = ANY($4::text[])) GROUP BY step",
            guide_id,
            utc(since),
            utc(until),
            None if steps is None else list(steps),
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

        One sorted query, read a page at a time through a cursor, on a connection held
        for as long as the pages are read (given back when closed, early or not)."""
        if not steps or (runs is not None and not runs):
            return
        # The run's language only when asked for: the digest's word counts don't need it.
        language = "''"
        if with_language:
            language = "coalesce((SELECT r.state::jsonb ->> 'language' FROM runs AS r"
            language += " WHERE r.id = answers.run_id), '')"
        sql = (
            f"SELECT participant, run_id, step, value, {language} FROM answers WHERE guide_id = $1"
            " AND step = ANY($2::text[]) AND answered_at >= $3 AND answered_at < $4"
            " AND value <> 'null' AND ($5::text[] IS NULL OR run_id = ANY($5::text[]))"
            f" AND {not_forgotten('answers')}"  # as exports
            " ORDER BY participant, answered_at, run_id, step"
        )
        params = (
            guide_id,
            list(steps),
            utc(since),
            utc(until),
            None if runs is None else list(runs),
        )
        async with self.pool.acquire() as db, db.transaction(readonly=True):
            cursor = await db.cursor(sql, *params)
            while rows := await cursor.fetch(page):
                yield [TextAnswer(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def gatherings_held(self, since: datetime, until: datetime) -> list[GatheringHeld]:
        rows = await self._all(
            "SELECT guide_id, title, code FROM gatherings WHERE created_at >= $1"
            " AND created_at < $2 ORDER BY created_at, code",
            utc(since),
            utc(until),
        )
        return [GatheringHeld(r[0], r[1], r[2]) for r in rows]
