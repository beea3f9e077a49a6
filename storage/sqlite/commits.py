"""Writing one commit alone: every row a turn changes, in the writer's transaction.

Every commit is applied whole inside a `BEGIN IMMEDIATE` transaction (with
others that arrived meanwhile, see `writer.py`, and written table by table with
them when it only adds rows, see `merged.py`), so an answer, the run state and
the messages owed for it are on disk together or not at all, and the caller
hears back only once they are. Deleted rows are overwritten on disk
(`secure_delete`), so erased text leaves no trace in free pages.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from storage.rows import Commit
from storage.sqlite.connection import execute_in, ts
from storage.sqlite.rights import erase
from storage.sqlite.schedules import save_schedule_row
from storage.sqlite.writer import Duplicate


def apply(db: sqlite3.Connection, commit: Commit) -> None:
    """Write one commit; raise Duplicate (undoing it) if its inbound key was seen, or
    if the person its turn read has been erased since."""
    if erased_since_read(db, [commit]):
        raise Duplicate(f"{commit.still_kept} erased since read")
    if commit.inbound_key is not None:
        try:
            db.execute(
                "INSERT INTO inbound (key, at) VALUES (?, ?)",
                (commit.inbound_key, ts(datetime.now(UTC))),
            )
        except sqlite3.IntegrityError:
            raise Duplicate(commit.inbound_key) from None
    if commit.forget is not None:
        erase(db, *commit.forget)
    if commit.schedule is not None:
        save_schedule_row(db, commit.schedule)
    if commit.guide_source is not None:
        source = commit.guide_source
        db.execute(
            "INSERT OR IGNORE INTO guide_sources (hash, guide_id, version, source)"
            " VALUES (?, ?, ?, ?)",
            (source.hash, source.guide_id, source.version, source.source),
        )
    if commit.participant is not None:
        p = commit.participant
        db.execute(
            "INSERT INTO participants"
            " (id, channel, address, language, current_run, unreachable, pending)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            " address = excluded.address, language = excluded.language,"
            " current_run = excluded.current_run, unreachable = excluded.unreachable,"
            " pending = excluded.pending",
            (p.id, p.channel, p.address, p.language, p.current_run, int(p.unreachable), p.pending),
        )
    for r in commit.runs:
        db.execute(
            "INSERT INTO runs (id, participant, guide_id, guide_version, guide_hash, status,"
            " state, started_at, updated_at, gathering) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
            " state = excluded.state, updated_at = excluded.updated_at",
            (
                r.id,
                r.participant,
                r.guide_id,
                r.guide_version,
                r.guide_hash,
                r.status,
                r.state,
                ts(r.started_at),
                ts(r.updated_at),
                r.gathering,
            ),
        )
    for run_id, step in commit.withdrawn:
        db.execute("DELETE FROM answers WHERE run_id = ? AND step = ?", (run_id, step))
    if commit.answers:
        db.executemany(
            "INSERT INTO answers (run_id, step, participant, guide_id, guide_version, kind,"
            " value, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, step) DO UPDATE SET value = excluded.value,"
            " answered_at = excluded.answered_at",
            [
                (
                    a.run_id,
                    a.step,
                    a.participant,
                    a.guide_id,
                    a.guide_version,
                    a.kind,
                    a.value,
                    ts(a.answered_at),
                )
                for a in commit.answers
            ],
        )
    if commit.consents:
        db.executemany(
            "INSERT INTO consents (participant, guide_id, guide_version, given, at)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (c.participant, c.guide_id, c.guide_version, int(c.given), ts(c.at))
                for c in commit.consents
            ],
        )
    if commit.delete_run is not None:
        db.execute("DELETE FROM answers WHERE run_id = ?", (commit.delete_run,))
        db.execute("DELETE FROM runs WHERE id = ?", (commit.delete_run,))
    if commit.gathering is not None:
        g = commit.gathering
        db.execute(
            "INSERT INTO gatherings (id, code, guide_id, title, facilitator, channel,"
            " address, private_address, paced, part, status, created_at, expires_at, closed_at,"
            " place) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (g.id, g.code, g.guide_id, g.title, g.facilitator, g.channel, g.address,
             g.private_address, int(g.paced), g.part, g.status, ts(g.created_at),
             ts(g.expires_at), None if g.closed_at is None else ts(g.closed_at), g.place),
        )  # fmt: skip
    # Targeted changes, never a whole row from an earlier read: a close can't be undone
    # by a stale /next, nor an erasure by either.
    if commit.gathering_part is not None:
        gathering_id, part = commit.gathering_part
        db.execute(
            "UPDATE gatherings SET part = max(part, ?) WHERE id = ? AND status = 'open'",
            (part, gathering_id),
        )
    if commit.gathering_closed is not None:
        gathering_id, at = commit.gathering_closed
        db.execute(
            "UPDATE gatherings SET status = 'closed', closed_at = ? WHERE id = ? AND status = 'open'",
            (ts(at), gathering_id),
        )
    for cohort, participant in commit.joined:
        db.execute(
            "INSERT OR IGNORE INTO members (cohort, participant, joined_at) VALUES (?, ?, ?)",
            (cohort, participant, ts(datetime.now(UTC))),
        )
    for leaving, participant in commit.left:
        if leaving is None:
            db.execute("DELETE FROM members WHERE participant = ?", (participant,))
        else:
            db.execute(
                "DELETE FROM members WHERE cohort = ? AND participant = ?", (leaving, participant)
            )
    if commit.preference is not None:
        pref = commit.preference
        paused = None if pref.paused_until is None else ts(pref.paused_until)
        db.execute(
            "INSERT OR REPLACE INTO preferences (participant, tz, paused_until) VALUES (?, ?, ?)",
            (pref.participant, pref.tz, paused),
        )
    if commit.delivery is not None:
        d = commit.delivery
        try:
            db.execute(
                "INSERT INTO deliveries (key, schedule, participant, run_id, delivered_at,"
                " reminders) VALUES (?, ?, ?, ?, ?, ?)",
                (d.key, d.schedule, d.participant, d.run_id, ts(d.delivered_at), d.reminders),
            )
        except sqlite3.IntegrityError:
            raise Duplicate(d.key) from None
    if commit.reminded is not None:
        db.execute(
            "UPDATE deliveries SET reminders = reminders + 1 WHERE key = ?", (commit.reminded,)
        )
    if commit.outbox:
        db.executemany(
            "INSERT INTO outbox (channel, participant, address, payload, not_before, attempts)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (o.channel, o.participant, o.address, o.payload, ts(o.not_before), o.attempts)
                for o in commit.outbox
            ],
        )
    if commit.take_record is not None:
        taken = commit.take_record
        used = db.execute(
            "DELETE FROM records WHERE kind = ? AND key = ?"
            " AND (expires_at IS NULL OR expires_at > ?) RETURNING 1",
            (taken.kind, taken.key, ts(taken.now)),
        ).fetchone()
        if used is None:  # someone else used it first: this turn did not happen
            raise Duplicate(f"{taken.kind} already taken")
    for record in commit.records:
        expiry = None if record.expires_at is None else ts(record.expires_at)
        db.execute(
            "INSERT OR REPLACE INTO records (kind, key, value, expires_at) VALUES (?, ?, ?, ?)",
            (record.kind, record.key, record.value, expiry),
        )
    if commit.wrong_code is not None:
        wrong = commit.wrong_code
        db.execute("DELETE FROM wrong_codes WHERE at < ?", (ts(wrong.forget_before),))
        db.execute(
            "INSERT INTO wrong_codes (participant, at) VALUES (?, ?)",
            (wrong.participant, ts(wrong.at)),
        )
    if commit.delete_unused_participant is not None:  # last: it looks at what is kept
        for sql in DELETE_UNUSED:
            execute_in(db, sql, [commit.delete_unused_participant])


def erased_since_read(db: sqlite3.Connection, commits: Sequence[Commit]) -> set[str]:
    """Of the people these commits' turns read (`still_kept`), those erased since: an
    operator's `kitchen-table forget` runs in a process of its own, under no
    conversation lock, and a turn that read them before must not write them back."""
    read = [c.still_kept for c in commits if c.still_kept is not None]
    if not read:
        return set()
    kept = execute_in(db, "SELECT id FROM participants WHERE id IN ({marks})", read)
    return set(read) - {row[0] for row in kept}


# A person with no run and no cohort membership left (`Commit.delete_unused_participant`),
# and then their settings (time zone, pause), which were only for check-ins.
DELETE_UNUSED = (
    "DELETE FROM participants WHERE id IN ({marks})"
    " AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.participant = participants.id)"
    " AND NOT EXISTS (SELECT 1 FROM members WHERE members.participant = participants.id)",
    "DELETE FROM preferences WHERE participant IN ({marks})"
    " AND NOT EXISTS (SELECT 1 FROM participants WHERE participants.id = preferences.participant)",
)
