"""Plain commits written together: a few statements per table for many commits.

Answers from many people reaching the writer at once (`Merged`), and the chunks of
a scheduled prompt (`apply_many`), end exactly as they would one after another,
with far fewer statements (see `writer.py` on why statements are what costs).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from functools import cache
from itertools import islice
from typing import Any

from storage.rows import Commit, GuideSourceRow
from storage.sqlite.commits import DELETE_UNUSED, apply, erased_since_read
from storage.sqlite.connection import execute_in, ts
from storage.sqlite.writer import Duplicate, Mergeable


def apply_many(db: sqlite3.Connection, commits: Sequence[Commit]) -> list[bool]:
    """Write commits in order, each as `apply` would: False for one whose key was seen.

    Consecutive plain commits (see `_MERGEABLE`) go in together, a few statements per
    table; any other commit goes alone in a savepoint. An error other than a seen key
    is raised, and the writer then undoes the whole call.
    """
    results: list[bool] = []
    plain: list[Commit] = []
    for commit in commits:
        if not sets(commit, NOT_MERGEABLE):
            plain.append(commit)
            continue
        results += _apply_plain(db, plain)
        plain = []
        db.execute("SAVEPOINT alone")
        try:
            apply(db, commit)
        except Duplicate:
            db.execute("ROLLBACK TO alone")
            results.append(False)
        else:
            results.append(True)
        db.execute("RELEASE alone")
    results += _apply_plain(db, plain)
    return results


def _apply_plain(db: sqlite3.Connection, commits: Sequence[Commit]) -> list[bool]:
    """Plain commits in bulk, each written or not as `apply` would (see `_write_fresh`).
    True for each one written."""
    if not commits:
        return []
    # Someone read as reachable may have changed since (found unreachable by delivery,
    # or forgotten by the CLI in another process): their commit writes nothing, rather
    # than bring them back.
    people = [c.participant.id for c in commits if c.participant]
    unreachable_sql = "SELECT id FROM participants WHERE id IN ({marks}) AND unreachable = 1"
    unreachable = {row[0] for row in execute_in(db, unreachable_sql, people)}
    tombstones_sql = "SELECT participant, at FROM tombstones WHERE participant IN ({marks})"
    forgotten = {row[0]: row[1] for row in execute_in(db, tombstones_sql, people)}  # and when

    erased = erased_since_read(db, commits)

    def gone(c: Commit) -> bool:
        if c.still_kept in erased:
            return True
        return c.participant is not None and (
            c.participant.id in unreachable
            or (bool(c.runs) and forgotten.get(c.participant.id, "") >= ts(c.runs[0].started_at))
        )

    return _write_fresh(db, commits, gone)


def _write_fresh(
    db: sqlite3.Connection, commits: Sequence[Commit], refused: Callable[[Commit], bool]
) -> list[bool]:
    """Write each commit, table by table with the rest, unless it is `refused` or its
    inbound or delivery key is taken, before or by an earlier commit here (where
    `apply` would undo it with Duplicate); True for each one written. The keys are
    looked up inside the writer's transaction, so what is found can't change before
    the rows are in."""
    inbound = _taken(db, "inbound", [c.inbound_key for c in commits if c.inbound_key])
    delivered = _taken(db, "deliveries", [c.delivery.key for c in commits if c.delivery])
    results: list[bool] = []
    for c in commits:
        key, delivery = c.inbound_key, c.delivery.key if c.delivery else None
        written = not (
            (key is not None and key in inbound)
            or (delivery is not None and delivery in delivered)
            or refused(c)
        )
        results.append(written)
        if written:
            if key is not None:
                inbound.add(key)
            if delivery is not None:
                delivered.add(delivery)
    _insert_rows(db, [c for c, written in zip(commits, results, strict=True) if written])
    return results


class Merged(Mergeable):
    """A commit that only adds or replaces rows (an answer and the messages owed for it,
    or a scheduled prompt), so it can be written table by table with others like it
    (`_MERGEABLE`)."""

    def __init__(self, commit: Commit) -> None:
        self.commit = commit

    def __call__(self, db: sqlite3.Connection) -> None:
        apply(db, self.commit)

    @classmethod
    def together(cls, db: sqlite3.Connection, operations: Sequence[Merged]) -> list[Any]:
        commits = [operation.commit for operation in operations]
        erased = erased_since_read(db, commits)
        written = _write_fresh(db, commits, lambda c: c.still_kept in erased)
        # As `apply` would: one whose key was taken wrote nothing, and says so.
        return [
            None if w else Duplicate(c.inbound_key) for c, w in zip(commits, written, strict=True)
        ]


# What a commit may hold and still be a `Merged`: rows that are new, or replace a row
# with the same key, and a declined run deleted (with its person, if nothing of theirs
# is left). Written table by table, they end up as one commit after another would
# leave them (see `_segments`). A commit that sets any other field (a field added
# later too) is written on its own.
_MERGEABLE = {
    "inbound_key", "guide_source", "participant", "runs", "answers", "consents", "outbox",
    "delivery", "delete_run", "delete_unused_participant", "still_kept",
}  # fmt: skip
NOT_MERGEABLE = tuple(f.name for f in fields(Commit) if f.name not in _MERGEABLE)


def sets(commit: Commit, names: Sequence[str]) -> bool:
    """Whether the commit sets any of these fields (to anything but None or nothing)."""
    return any(getattr(commit, name) not in (None, []) for name in names)


def _insert_rows(db: sqlite3.Connection, commits: Sequence[Commit]) -> None:
    """Write the rows of these commits, table by table, then their deletions; rows with
    the same key in the order `apply` would write them, so each ends as it would.
    (Table by table is the same as commit by commit because none of these tables has a
    trigger or a foreign key, no insert reads another table, and a deletion is never
    followed in its segment by a write it would have undone: see `_segments`.)"""
    on_record: dict[str, str] = {}
    doomed = [c.delete_run for c in commits if c.delete_run is not None]
    if doomed and any(c.delete_unused_participant is not None for c in commits):
        found = execute_in(db, "SELECT id, participant FROM runs WHERE id IN ({marks})", doomed)
        on_record = dict(found)
    for segment in _segments(commits, on_record):
        _insert_segment(db, segment)


def _segments(commits: Sequence[Commit], on_record: dict[str, str]) -> Iterator[Sequence[Commit]]:
    """The commits in order, cut before any that writes a run (or its answers) deleted
    earlier in the same part, or a row for a person who may have been deleted there:
    one after another, that write would come after the deletion, not before it. Cut
    too before the deletion of a run whose owner may be deleted earlier in the part:
    whether a person is deleted is decided at the end of the part, and must not see a
    run of theirs deleted after their commit. (A week's prompt ends everyone's expired
    invitation, each person's own: cutting at every one made 100,000 parts.)

    A run's owner is followed through the commits from `on_record` (run id -> person,
    for the runs to be deleted): a run written keeps the owner it has, or takes the
    writer's if it has none (new, or deleted before); a run deleted has none, and
    deleting it again deletes nothing."""
    owners = dict(on_record)
    start = 0
    runs: set[str] = set()
    people: set[str] = set()
    for n, c in enumerate(commits):
        touched_runs = {r.id for r in c.runs} | {a.run_id for a in c.answers}
        touched_people = {r.participant for r in c.runs}
        if c.participant is not None:
            touched_people.add(c.participant.id)
        for run in c.runs:  # written before the commit's deletion, as `apply` does
            owners.setdefault(run.id, run.participant)
        undoes = not (runs.isdisjoint(touched_runs) and people.isdisjoint(touched_people))
        if undoes or (c.delete_run is not None and owners.get(c.delete_run) in people):
            yield commits[start:n]
            start, runs, people = n, set(), set()
        if c.delete_run is not None:
            runs.add(c.delete_run)
            owners.pop(c.delete_run, None)
        if c.delete_unused_participant is not None:
            people.add(c.delete_unused_participant)
    yield commits[start:]


def _insert_segment(db: sqlite3.Connection, commits: Sequence[Commit]) -> None:
    stamps: dict[datetime, str] = {}

    def stamp(moment: datetime) -> str:  # a chunk's rows share a few moments: format each once
        if moment not in stamps:
            stamps[moment] = ts(moment)
        return stamps[moment]

    at = ts(datetime.now(UTC))
    _insert_all(
        db,
        "INSERT INTO inbound (key, at) VALUES {rows}",
        _by_key((c.inbound_key, at) for c in commits if c.inbound_key is not None),
    )
    sources: dict[str, GuideSourceRow] = {}
    for c in commits:  # the first of each, as INSERT OR IGNORE one after another keeps
        if c.guide_source is not None:
            sources.setdefault(c.guide_source.hash, c.guide_source)
    _insert_all(
        db,
        "INSERT OR IGNORE INTO guide_sources (hash, guide_id, version, source) VALUES {rows}",
        ((s.hash, s.guide_id, s.version, s.source) for s in sources.values()),
    )
    _insert_all(
        db,
        "INSERT INTO participants"
        " (id, channel, address, language, current_run, unreachable, pending)"
        " VALUES {rows} ON CONFLICT (id) DO UPDATE SET"
        " address = excluded.address, language = excluded.language,"
        " current_run = excluded.current_run, unreachable = excluded.unreachable,"
        " pending = excluded.pending",
        _by_key(
            (p.id, p.channel, p.address, p.language, p.current_run, int(p.unreachable), p.pending)
            for c in commits
            if (p := c.participant) is not None
        ),
    )
    _insert_all(
        db,
        "INSERT INTO runs (id, participant, guide_id, guide_version, guide_hash, status,"
        " state, started_at, updated_at, gathering) VALUES {rows}"
        " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
        " state = excluded.state, updated_at = excluded.updated_at",
        _by_key(
            (r.id, r.participant, r.guide_id, r.guide_version, r.guide_hash, r.status,
             r.state, stamp(r.started_at), stamp(r.updated_at), r.gathering)
            for c in commits
            for r in c.runs
        ),
    )  # fmt: skip
    _insert_all(
        db,
        "INSERT INTO answers (run_id, step, participant, guide_id, guide_version, kind,"
        " value, answered_at) VALUES {rows}"
        " ON CONFLICT (run_id, step) DO UPDATE SET value = excluded.value,"
        " answered_at = excluded.answered_at",
        (
            (a.run_id, a.step, a.participant, a.guide_id, a.guide_version, a.kind, a.value,
             stamp(a.answered_at))
            for c in commits
            for a in c.answers
        ),
    )  # fmt: skip
    _insert_all(
        db,
        "INSERT INTO consents (participant, guide_id, guide_version, given, at) VALUES {rows}",
        (
            (n.participant, n.guide_id, n.guide_version, int(n.given), stamp(n.at))
            for c in commits
            for n in c.consents
        ),
    )
    _insert_all(
        db,
        "INSERT INTO deliveries (key, schedule, participant, run_id, delivered_at,"
        " reminders) VALUES {rows}",
        _by_key(
            (d.key, d.schedule, d.participant, d.run_id, stamp(d.delivered_at), d.reminders)
            for c in commits
            if (d := c.delivery) is not None
        ),
    )
    _insert_all(
        db,
        "INSERT INTO outbox (channel, participant, address, payload, not_before, attempts)"
        " VALUES {rows}",
        (
            (o.channel, o.participant, o.address, o.payload, stamp(o.not_before), o.attempts)
            for c in commits
            for o in c.outbox
        ),
    )
    if declined := [c.delete_run for c in commits if c.delete_run is not None]:
        execute_in(db, "DELETE FROM answers WHERE run_id IN ({marks})", declined)
        execute_in(db, "DELETE FROM runs WHERE id IN ({marks})", declined)
    if people := [c.delete_unused_participant for c in commits if c.delete_unused_participant]:
        for sql in DELETE_UNUSED:
            execute_in(db, sql, people)


_MOST_ROWS = 256  # per statement


def _by_key(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows in the order of their key (the first column), rows with the same key kept in
    their order, so the last one written still wins. Inserted in key order, the rows
    of a chunk land on each index page once, in turn, not all over it again and again
    (100,000 prompts: 0.9 s of the writer's time for their inbound keys; 0.2 s sorted)."""
    return sorted(rows, key=_first)


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def _insert_all(db: sqlite3.Connection, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """Run `sql` for all these rows, many to a statement (its `{rows}` stands for them).

    Not `executemany`, which steps once per row: the writer thread takes the GIL back
    after each step, and while the event loop is busy every take waits. Statements
    hold a power of two of rows, so only a few texts are ever prepared and cached.
    Rows given one at a time are made as each statement takes them, and freed once
    bound."""
    pending = iter(rows)
    while chunk := list(islice(pending, _MOST_ROWS)):
        width = len(chunk[0])
        most = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width
        done = 0
        while done < len(chunk):
            size = 1 << (min(len(chunk) - done, most).bit_length() - 1)
            part = chunk[done : done + size]
            db.execute(_statement(sql, width, size), [value for row in part for value in row])
            done += size


@cache
def _statement(sql: str, width: int, size: int) -> str:
    one = "(" + ", ".join(["?"] * width) + ")"
    return sql.format(rows=", ".join([one] * size))


def _taken(db: sqlite3.Connection, table: str, keys: Sequence[str]) -> set[str]:
    """Which of these keys `table` (inbound or deliveries) already holds."""
    return {
        row[0] for row in execute_in(db, f"SELECT key FROM {table} WHERE key IN ({{marks}})", keys)
    }
