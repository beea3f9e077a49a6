"""Conversations and the outbox on PostgreSQL: a turn's reads and commit, and delivery's.

A conversation (was the message seen, who is it, what is their run) is the first read
of every turn: under load, those asked for together go as one query (`ReadBatch`),
as on SQLite. Commits are `commits.py`'s.

The outbox is shared by every instance on the database, so it is claimed, not just
read: `claim_due` leases what it hands out to this instance (`claimed_until`,
`claimed_by`) in the same statement that picks it, skipping rows another claim holds
locked (`FOR UPDATE SKIP LOCKED`). A person's messages go to one claimant at a time
and in order: their first message owed is the lock on them all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from time import monotonic

import asyncpg

from storage.postgres.commits import Commits
from storage.postgres.connection import utc
from storage.read_batch import ReadBatch
from storage.rows import (
    AnswerRow,
    ConsentRow,
    Conversation,
    OutboxRow,
    ParticipantRow,
    RunRow,
)

log = logging.getLogger(__name__)

# For up to $3 people whose first message owed (on any channel) is on this channel,
# due, and not leased to another claimant, oldest due first: lock that first message
# (skipping any another claim holds), then lease them their messages on this channel
# in order, up to the first that must still wait or is leased to someone else (a
# person's later message never goes before an earlier one). $4 is this claimant,
# $5 the end of its lease. As SQLite's `claim_due`, with the lease.
# How often (seconds) claiming looks for the leases of instances that have died.
REAP_EVERY = 2.0

CLAIM = """
WITH heads AS (
    SELECT o.participant FROM outbox AS o
    WHERE o.channel = $1 AND o.not_before <= $2
    AND (o.claimed_until IS NULL OR o.claimed_until <= $2 OR o.claimed_by = $4)
    AND NOT EXISTS (SELECT 1 FROM outbox AS e WHERE e.participant = o.participant AND e.id < o.id)
    ORDER BY o.not_before, o.id LIMIT $3
    FOR UPDATE OF o SKIP LOCKED
), theirs AS (
    -- Each person's messages by their own index, in order (not through the channel's,
    -- which after a busy hour holds every row sent and not yet vacuumed).
    SELECT m.id, bool_or(m.not_before > $2 OR (m.claimed_until IS NOT NULL
                                               AND m.claimed_until > $2
                                               AND m.claimed_by IS DISTINCT FROM $4))
        OVER (PARTITION BY m.participant ORDER BY m.id) AS blocked
    FROM heads AS h CROSS JOIN LATERAL (
        SELECT id, participant, channel, not_before, claimed_until, claimed_by FROM outbox
        WHERE participant = h.participant ORDER BY id OFFSET 0  -- the channel's after
    ) AS m WHERE m.channel = $1
)
UPDATE outbox AS o SET claimed_until = $5, claimed_by = $4
FROM theirs WHERE o.id = theirs.id AND NOT theirs.blocked
RETURNING o.id, o.channel, o.participant, o.address, o.payload, o.not_before, o.attempts
"""

# Messages put off: each its own time and attempts, and its lease given up, with the
# leases this claimant holds on the same people's later messages (delivery stops at
# a person's first message that waits, so whoever claims next takes them in order).
# Those put off at about the same moment go together (at the platform's limits, a
# person's second message waits for their chat's rate: half of a fan-out's messages).
RETRY = """
WITH retried AS (
    UPDATE outbox AS o SET not_before = r.not_before, attempts = r.attempts,
        payload = coalesce(r.payload, o.payload), claimed_until = NULL, claimed_by = NULL
    FROM unnest($1::bigint[], $2::timestamptz[], $3::integer[], $5::text[])
        AS r (id, not_before, attempts, payload)
    WHERE o.id = r.id RETURNING o.participant
)
UPDATE outbox SET claimed_until = NULL, claimed_by = NULL
WHERE participant IN (SELECT participant FROM retried) AND claimed_by = $4
AND id <> ALL($1::bigint[])
"""

# Messages recorded as sent, deleted; and, now and then, the leases this claimant still
# holds renewed, those of the messages it has yet to send (see `LEASE`). $2 is the new
# end of the lease, $3 the ids held, $4 this claimant.
SENT_AND_RENEW = """
WITH sent AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]))
UPDATE outbox SET claimed_until = $2 WHERE id = ANY($3::bigint[]) AND claimed_by = $4
RETURNING id
"""

CONVERSATIONS = """
SELECT EXISTS (SELECT 1 FROM inbound WHERE key = w.key),
    p.id, p.channel, p.address, p.language, p.current_run, p.unreachable,
    r.id, r.participant, r.guide_id, r.guide_version, r.guide_hash, r.status,
    r.state, r.started_at, r.updated_at, r.gathering, p.pending
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w (participant, key, n)
LEFT JOIN participants AS p ON p.id = w.participant
LEFT JOIN runs AS r ON r.id = p.current_run ORDER BY w.n
"""


class ConversationsPG(Commits):
    """`storage.protocol.ConversationStore` on PostgreSQL."""

    def __init__(self, *args: object, **options: object) -> None:
        super().__init__(*args, **options)  # type: ignore[arg-type]
        # Under load, the conversations of many people's messages are read together.
        self._conversation_reads: ReadBatch[tuple[str, str | None], Conversation] = ReadBatch(
            self._conversations_apart
        )
        # Delivery says a message was sent as soon as the platform takes it; those said
        # at the same moment go as one statement.
        self._sent: ReadBatch[tuple[int, ...], None] = ReadBatch(self._delete_sent)
        self._put_off: ReadBatch[tuple[int, datetime, int, str | None], None] = ReadBatch(
            self._retry_many
        )
        # What this claimant holds and has not said it sent (ids, each with the monotonic
        # time it was leased or last renewed; some may have been put off or dropped
        # since, which renewing finds out), and the clock its leases are reckoned on: the
        # last claim's `now`, and the monotonic time it was given.
        self._held: dict[int, float] = {}
        self._clock: tuple[datetime, float] | None = None
        self._renewed = 0.0  # monotonic time of the last renewal

    async def outbox_sent(self, message_ids: Sequence[int]) -> None:
        await self._sent.get(tuple(message_ids))

    async def _delete_sent(self, batches: Sequence[tuple[int, ...]]) -> list[None]:
        ids = [i for batch in batches for i in batch]
        for sent in ids:
            self._held.pop(sent, None)
        moment = monotonic()
        if self._clock is None or not self._held or moment - self._renewed < self._every:
            await self._execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)
            return [None] * len(batches)
        # Still sending: what it holds stays its own for another lease, reckoned on the
        # caller's clock (the last claim's time, moved on by the time since).
        claimed_at, then = self._clock
        until = utc(claimed_at) + timedelta(seconds=moment - then) + self.lease
        self._renewed = moment
        asked = list(self._held)
        kept = {row[0] for row in await self._all(SENT_AND_RENEW, ids, until, asked, self.claimant)}
        for message in asked:
            # Only those asked about (one claimed meanwhile, by another channel's round,
            # keeps its own time), and only if not sent meanwhile.
            if message in self._held:
                if message in kept:
                    self._held[message] = moment
                else:
                    del self._held[message]
        return [None] * len(batches)

    @property
    def _every(self) -> float:
        """Seconds between renewals: a third of a lease, so two may be missed."""
        return self.lease.total_seconds() / 3

    async def outbox_retry(
        self, message_id: int, not_before: datetime, attempts: int, payload: str | None = None
    ) -> None:
        await self._put_off.get((message_id, utc(not_before), attempts, payload))

    async def _retry_many(
        self, batch: Sequence[tuple[int, datetime, int, str | None]]
    ) -> list[None]:
        latest: dict[int, tuple[datetime, int, str | None]] = {}
        for message_id, not_before, attempts, payload in batch:
            # The same message twice: the later.
            latest[message_id] = (not_before, attempts, payload)
        await self._execute(
            RETRY,
            list(latest),
            [not_before for not_before, _, _ in latest.values()],
            [attempts for _, attempts, _ in latest.values()],
            self.claimant,
            [payload for _, _, payload in latest.values()],
        )
        return [None] * len(batch)

    async def outbox_owed(self, message_ids: Sequence[int]) -> set[int]:
        rows = await self._all(
            "SELECT id FROM outbox WHERE id = ANY($1::bigint[])", list(message_ids)
        )
        return {row[0] for row in rows}

    async def mark_unreachable(self, participant_id: str) -> None:
        await self._execute(
            "WITH marked AS (UPDATE participants SET unreachable = true WHERE id = $1)"
            " DELETE FROM outbox WHERE participant = $1",
            participant_id,
        )

    async def claim_due(self, channel: str, now: datetime, limit: int) -> list[OutboxRow]:
        moment = monotonic()
        alive = self._alive_held()
        if not alive:
            # The connection that said this instance is alive was lost: another instance
            # may have taken its leases meanwhile (`reap_dead`). None of them is trusted
            # again until claimed again, and nothing is claimed until this instance is
            # alive again (tried every REAP_EVERY: delivery pauses meanwhile).
            self._held.clear()
        if moment - self._reaped >= REAP_EVERY:
            # A dead instance's messages are sent now, not when their leases run out.
            self._reaped = moment
            try:
                await self._say_alive()
            except Exception as error:
                log.error("could not tell the other instances this one is alive (%s): it"
                          " sends nothing until it can", error)  # fmt: skip
                return []
            await self.reap_dead(channel)
        elif not alive:
            return []
        # Reckoned from here: asking to be alive again may have taken a while, and what
        # was claimed before that connection was asked for is not trusted (`claim_holds`).
        moment = monotonic()
        rows = await self._all(
            CLAIM, channel, utc(now), limit, self.claimant, utc(now + self.lease)
        )
        self._clock = (now, moment)
        if rows:
            if not self._held:
                self._renewed = moment  # what it holds was leased just now
            self._held.update((row[0], moment) for row in rows)
        return [
            OutboxRow(r[1], r[2], r[3], r[4], r[5], r[6], id=r[0])
            for r in sorted(rows, key=lambda r: int(r[0]))
        ]

    def claim_holds(self, message_id: int) -> bool:
        """Whether this instance may still send a message it claimed, as far as it knows
        without asking: not once the connection that says it is alive was lost (another
        instance may have taken its leases, `reap_dead`), nor once half a lease has gone
        by since it was leased or renewed (the rest is kept for the send itself: a lease
        that ran out is anyone's). Both were found by review: an instance that kept
        sending what it had claimed sent messages another instance sent too."""
        leased = self._held.get(message_id)
        return (
            leased is not None
            and monotonic() - leased < self.lease.total_seconds() / 2
            and self._alive_held()
            # Claimed (or renewed) under this alive connection: claimed under one that was
            # lost, it may have been taken over before this one held the lock (found by
            # review).
            and leased >= self._alive_since
        )

    async def next_due(self, channel: str) -> datetime | None:
        # A message leased to another instance is not this one's to send until the
        # lease runs out (it is sent by then, or its holder died).
        due: datetime | None = await self._value(
            "SELECT min(CASE WHEN claimed_until IS NOT NULL AND claimed_by <> $2"
            " THEN greatest(not_before, claimed_until) ELSE not_before END)"
            " FROM outbox WHERE channel = $1",
            channel,
            self.claimant,
        )
        return due

    async def conversation(self, participant_id: str, inbound_key: str | None) -> Conversation:
        return await self._conversation_reads.get((participant_id, inbound_key))

    async def conversations(self, wanted: Sequence[tuple[str, str | None]]) -> list[Conversation]:
        return [self._conversation_row(row) for row in await self._conversation_rows(wanted)]

    async def _conversations_apart(
        self, wanted: Sequence[tuple[str, str | None]]
    ) -> list[Conversation | Exception]:
        """As `conversations`, but a row that can't be read is the error of that look-up
        alone, not of everyone's read alongside it."""
        found: list[Conversation | Exception] = []
        for row in await self._conversation_rows(wanted):
            try:
                found.append(self._conversation_row(row))
            except Exception as error:  # handed to the one caller it belongs to
                found.append(error)
        return found

    async def _conversation_rows(
        self, wanted: Sequence[tuple[str, str | None]]
    ) -> list[asyncpg.Record]:
        if not wanted:
            return []
        return await self._all(CONVERSATIONS, [p for p, _ in wanted], [key for _, key in wanted])

    @classmethod
    def _conversation_row(cls, row: asyncpg.Record) -> Conversation:
        person = None
        if row[1] is not None:
            person = ParticipantRow(row[1], row[2], row[3], row[4], row[5], row[6], row[17])
        run = cls._run_row(tuple(row[7:17])) if row[7] is not None else None
        return Conversation(row[0], person, run)

    async def open_runs_of(
        self, participant_ids: Sequence[str], guide_id: str
    ) -> dict[str, RunRow]:
        rows = await self._all(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE participant = ANY($1::text[])"
            " AND guide_id = $2 AND status IN ('consent', 'active') ORDER BY updated_at",
            list(participant_ids),
            guide_id,
        )
        return {row[1]: self._run_row(row) for row in rows}  # the latest of each is last

    async def inbound_seen(self, key: str) -> bool:
        return await self._one("SELECT 1 FROM inbound WHERE key = $1", key) is not None

    async def participant(self, participant_id: str) -> ParticipantRow | None:
        row = await self._one(
            "SELECT id, channel, address, language, current_run, unreachable, pending"
            " FROM participants WHERE id = $1",
            participant_id,
        )
        return None if row is None else ParticipantRow(*row)

    async def run(self, run_id: str) -> RunRow | None:
        row = await self._one(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = $1", run_id)
        return None if row is None else self._run_row(row)

    async def open_run(self, participant_id: str, guide_id: str) -> RunRow | None:
        row = await self._one(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE participant = $1 AND guide_id = $2"
            " AND status IN ('consent', 'active') ORDER BY updated_at DESC LIMIT 1",
            participant_id,
            guide_id,
        )
        return None if row is None else self._run_row(row)

    async def open_runs(self, participant_id: str) -> list[RunRow]:
        rows = await self._all(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE participant = $1"
            " AND status IN ('consent', 'active') ORDER BY updated_at DESC",
            participant_id,
        )
        return [self._run_row(row) for row in rows]

    async def count_runs(self, participant_id: str) -> int:
        found = await self._value(
            "SELECT count(*) FROM runs WHERE participant = $1", participant_id
        )
        return int(found)

    async def answers(self, run_id: str) -> list[AnswerRow]:
        rows = await self._all(
            "SELECT run_id, step, participant, guide_id, guide_version, kind, value, answered_at"
            " FROM answers WHERE run_id = $1 ORDER BY answered_at, step",
            run_id,
        )
        return [AnswerRow(*r) for r in rows]

    async def consents(self, participant_id: str) -> list[ConsentRow]:
        rows = await self._all(
            "SELECT participant, guide_id, guide_version, given, at FROM consents"
            " WHERE participant = $1 ORDER BY at, n",
            participant_id,
        )
        return [ConsentRow(*r) for r in rows]

    async def guide_source(self, guide_hash: str) -> str | None:
        found: str | None = await self._value(
            "SELECT source FROM guide_sources WHERE hash = $1", guide_hash
        )
        return found
