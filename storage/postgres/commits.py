"""Writing commits on PostgreSQL: one round trip each, or one for many together.

A commit is handed to the server whole, its rows as composite values
(storage/postgres/migrations.py's `kt_commit` type), and written by one call of the
function `kt_commit`: one statement, so one transaction, on disk before the call
returns; false, with nothing written, if its inbound key was seen (or its delivery
key taken, or the record it uses up gone). Statement by statement it is SQLite's
`apply` (storage/sqlite/commits.py).

Commits asked for at the same moment (answers from many people) go together as one
call: one transaction, each commit written or refused whole as it would be alone, one
round trip and one flush of the write-ahead log for them all. Plain ones (an answer,
a run begun) that share no row are written table by table (`kt_commit_plain`, a few
statements for them all); any other mix goes one by one in `kt_commit_many`.
If that call fails for something other than the database being away (a commit with a
gathering code already taken), each is written again on its own, so the error is
its caller's alone. `commit_many` is that call for a list of commits, in one
transaction; there an error writes none of them, as the protocol says.

What a turn's commit queues (its replies) is claimed by this instance in the same
transaction (`CLAIMED`, migration 6): the instance that took the turn sends them, as
one process would. Left for anyone to claim, they went to whichever instance's
deliverer asked first, which then opened their address again and sent them from a
process that had not seen the person: two instances on one database cost 1.11x two
on a database each (benchmarks/RESULTS.md, session 13).

No savepoints: `kt_commit` makes every check that could refuse a commit before its
first write, so a refused commit has nothing to undo (and a chunk of a scheduled
prompt, hundreds of commits in one transaction, does not run PostgreSQL past its 64
cached subtransactions).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from storage.postgres.connection import ANALYZE_TURNS_AFTER, LEASE, Connections, maybe_utc, utc
from storage.postgres.errors import POSTGRES_FAILURES
from storage.read_batch import ReadBatch
from storage.rows import Commit
from storage.sqlite.merged import NOT_MERGEABLE, sets

log = logging.getLogger(__name__)

ONE = "SELECT kt_commit($1::kt_commit)"
MANY = "SELECT kt_commit_many($1::kt_commit[])"
PLAIN = "SELECT kt_commit_plain($1::kt_commit[])"
# The same, with what they queue claimed by this instance ($2) until $3, in the same
# transaction (migration 6, `kt_claiming`, runs first: it is the call's FROM).
CLAIMED = " FROM kt_claiming($2, $3)"

# What a plain commit sets: an answer, or the start of a run. Others are written one by
# one (`kt_commit`).
_PLAIN = {
    "inbound_key", "guide_source", "participant", "runs", "answers", "consents", "outbox",
    "still_kept",
}  # fmt: skip
# The other fields' values at once (one C call, not a getattr apiece: this runs for
# every answer); unset, each is None or [].
_not_plain = attrgetter(*(f.name for f in fields(Commit) if f.name not in _PLAIN))

Keys = tuple[tuple[str, ...], ...]
# A commit waiting to be written: encoded, its keys if plain, and when the latest of the
# messages it queues is due (None if it queues none).
Pending = tuple[tuple[Any, ...], "Keys | None", "datetime | None"]


def plain_keys(c: Commit) -> Keys | None:
    """The keys of the rows a plain commit writes or looks up (inbound key, person, runs,
    answers), or None if it is not plain. Plain commits whose keys are all different are
    written together table by table (`kt_commit_plain`), which ends as writing them one
    after another would: none of them touches a row another touches."""
    for value in _not_plain(c):
        if value is not None and value != []:
            return None
    keys: list[tuple[str, ...]] = []
    if c.inbound_key is not None:
        keys.append(("inbound", c.inbound_key))
    if c.participant is not None:
        keys.append(("person", c.participant.id))
    keys += [("run", r.id) for r in c.runs]
    keys += [("answer", a.run_id, a.step) for a in c.answers]
    return tuple(keys)


def apart(batch: Sequence[Keys | None]) -> bool:
    """Whether these are all plain and no two rows they write share a key."""
    seen: set[tuple[str, ...]] = set()
    for keys in batch:
        if keys is None:
            return False
        for key in keys:
            if key in seen:
                return False
            seen.add(key)
    return True


# The database away (or the disk full): every caller of a call hears so, none is retried.
AWAY: tuple[type[Exception], ...] = (OSError, *POSTGRES_FAILURES)


def encode(c: Commit, refuse_gone: bool = False) -> tuple[Any, ...]:
    """A commit as the `kt_commit` composite, field by field in the type's order. Every
    moment is made UTC here: a commit holding no moment where one belongs fails here,
    before anything is sent, as it does on SQLite."""
    p, s, src, g, d = c.participant, c.schedule, c.guide_source, c.gathering, c.delivery
    pref, taken, wrong = c.preference, c.take_record, c.wrong_code
    return (
        c.inbound_key,
        refuse_gone,
        None if c.forget is None else c.forget[0],
        None if c.forget is None else utc(c.forget[1]),
        None if s is None else (
            s.id, s.guide_id, s.cohort, s.cron, s.tz, s.paused, utc(s.created_at),
            utc(s.checked_until),
        ),
        None if src is None else src.hash,
        None if src is None else src.guide_id,
        None if src is None else src.version,
        None if src is None else src.source,
        None if p is None else (
            p.id, p.channel, p.address, p.language, p.current_run, p.unreachable, p.pending
        ),
        [
            (r.id, r.participant, r.guide_id, r.guide_version, r.guide_hash, r.status, r.state,
             utc(r.started_at), utc(r.updated_at), r.gathering)
            for r in c.runs
        ],
        [run for run, _ in c.withdrawn],
        [step for _, step in c.withdrawn],
        [
            (a.run_id, a.step, a.participant, a.guide_id, a.guide_version, a.kind, a.value,
             utc(a.answered_at))
            for a in c.answers
        ],
        [(n.participant, n.guide_id, n.guide_version, n.given, utc(n.at)) for n in c.consents],
        c.delete_run,
        None if g is None else (
            g.id, g.code, g.guide_id, g.title, g.facilitator, g.channel, g.address,
            g.private_address, g.paced, g.part, g.status, utc(g.created_at), utc(g.expires_at),
            maybe_utc(g.closed_at), g.place,
        ),
        None if c.gathering_part is None else c.gathering_part[0],
        None if c.gathering_part is None else c.gathering_part[1],
        None if c.gathering_closed is None else c.gathering_closed[0],
        None if c.gathering_closed is None else utc(c.gathering_closed[1]),
        [cohort for cohort, _ in c.joined],
        [who for _, who in c.joined],
        [cohort for cohort, _ in c.left],
        [who for _, who in c.left],
        None if pref is None else pref.participant,
        None if pref is None else pref.tz,
        None if pref is None else maybe_utc(pref.paused_until),
        None if d is None else (
            d.key, d.schedule, d.participant, d.run_id, utc(d.delivered_at), d.reminders
        ),
        c.reminded,
        [
            (o.channel, o.participant, o.address, o.payload, utc(o.not_before), o.attempts)
            for o in c.outbox
        ],
        None if taken is None else taken.kind,
        None if taken is None else taken.key,
        None if taken is None else utc(taken.now),
        [(r.kind, r.key, r.value, maybe_utc(r.expires_at)) for r in c.records],
        None if wrong is None else wrong.participant,
        None if wrong is None else utc(wrong.at),
        None if wrong is None else utc(wrong.forget_before),
        c.delete_unused_participant,
        c.still_kept,
    )  # fmt: skip


class Commits(Connections):
    """A turn's one commit, and many at once."""

    def __init__(
        self,
        url: str,
        pool_size: int = 10,
        schema: str | None = None,
        *,
        lease: timedelta = LEASE,
        analyze_turns_after: int = ANALYZE_TURNS_AFTER,
    ) -> None:
        super().__init__(
            url, pool_size, schema, lease=lease, analyze_turns_after=analyze_turns_after
        )
        # Commits asked for while a call is out go together as the next call: each
        # encoded, its keys if plain, and the latest moment one of its messages is due.
        self._commits: ReadBatch[Pending, bool] = ReadBatch(self._commit_together)

    async def commit(self, commit: Commit) -> bool:
        """Write a turn's commit. What it queues is claimed by this instance as it is
        written (leased as `claim_due` would lease it, from when it is due): the
        instance that took the turn sends its replies, and no other instance's claim
        takes them first (and opens their address again). `commit_many` (a scheduled
        prompt's chunks) leaves what it queues to whichever instance claims it."""
        due = max((o.not_before for o in commit.outbox), default=None)
        written = await self._commits.get(
            (encode(commit), plain_keys(commit), None if due is None else utc(due))
        )
        await self._after_turns(1)
        return written

    async def commit_many(self, commits: Sequence[Commit]) -> list[bool]:
        if not commits:
            return []
        # A chunk of a scheduled prompt was read a while ago: someone in it who has since
        # become unreachable or been forgotten is not written back (as on SQLite, for
        # the plain commits such a chunk is made of).
        encoded = [encode(c, refuse_gone=not sets(c, NOT_MERGEABLE)) for c in commits]
        written: list[bool] = await self._value(MANY, encoded)
        queued = sum(len(c.outbox) for c, ok in zip(commits, written, strict=True) if ok)
        if queued:
            await self._after_queueing(queued)
        return written

    async def _write(self, sql: str, commits: Any, until: datetime | None) -> Any:
        """One call of a commit function; with what it queues claimed by this instance
        until `until` (None: nothing is queued, so nothing to claim)."""
        if until is None:
            return await self._value(sql, commits)
        return await self._value(sql + CLAIMED, commits, self.claimant, until)

    async def _commit_together(self, batch: Sequence[Pending]) -> list[bool | Exception]:
        encoded = [commit for commit, _, _ in batch]
        due = [moment for _, _, moment in batch if moment is not None]
        until = max(due) + self.lease if due else None
        if len(encoded) == 1:
            written: bool = await self._write(ONE, encoded[0], until)
            return [written]
        together: list[bool | Exception]
        try:
            if apart([keys for _, keys, _ in batch]):
                together = await self._write(PLAIN, encoded, until)
            else:
                together = await self._write(MANY, encoded, until)
            return together
        except AWAY:
            raise  # the database is away: every caller hears so
        except Exception as error:
            # One of them is wrong: each is written alone, and hears for itself.
            log.warning(
                "%d commits written together failed (%s); writing each alone", len(encoded), error
            )
        alone: list[bool | Exception] = []
        for one in encoded:
            try:
                alone.append(await self._write(ONE, one, until))
            except AWAY:
                raise
            except Exception as error:
                alone.append(error)
        return alone
