"""Delivery drains the outbox: each message owed is sent, retried, or dropped as unreachable.

Rows leave the outbox only once the platform has accepted them, so a crash
between commit and send re-sends from the outbox rather than losing anything; and
each leaves as soon as it is accepted, so a crash re-sends only the messages whose
calls were in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from pydantic import ValidationError

from bot.delivery.channel import (
    Channel,
    Dropped,
    Failed,
    RetryAfter,
    SendResult,
    Sent,
    Unreachable,
    fit,
)
from bot.messages import SEALED, Outbound
from bot.privacy import Identity
from storage.protocol import Storage
from storage.rows import OutboxRow

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=10)
# Messages sent at once, to different people.
CONCURRENCY = 64
# How soon delivery asks again when storage could not say when the next message is due.
RETRY_DUE = 5.0
# A hold of the channel's overall limit at most this long (a second's window filling
# up) is spent claiming what goes next; a longer one (the platform's own wait) is not,
# so that nothing claimed sits in memory for long.
CLAIM_AHEAD = timedelta(seconds=1)


def backoff(attempts: int) -> timedelta:
    """Wait 1, 2, 4 ... seconds after each failure, up to ten minutes."""
    return min(timedelta(seconds=2 ** min(attempts, 20)), MAX_BACKOFF)


class Deliverer:
    def __init__(
        self,
        storage: Storage,
        identity: Identity,
        channels: dict[str, Channel],
        clock: Callable[[], datetime],
        batch: int = 500,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.storage = storage
        self.identity = identity
        self.channels = channels
        self.clock = clock
        self.batch = batch
        self._wake = asyncio.Event()
        self._in_flight = asyncio.Semaphore(concurrency)
        # Until when a channel's overall limit holds everything back: kept here, not
        # written to each waiting message (at 100,000 prompts that was a write apiece).
        self._held: dict[str, datetime] = {}
        self._draining: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # What a channel sends next, claimed while its overall limit held it back.
        self._ahead: dict[str, list[OutboxRow]] = {}

    def wake(self) -> None:
        self._wake.set()

    async def drain(self, channel_name: str) -> int:
        """Send everything now due on one channel, in order per person; return how many.

        Different people are served concurrently; one person's messages go one at a
        time, and a message that must wait holds back the ones after it.
        """
        async with self._draining[channel_name]:
            sent = 0
            while True:
                if self._holds(channel_name):
                    return sent
                # Claimed ahead, while the channel was held: what was queued since isn't there.
                ahead = self._ahead.pop(channel_name, None)
                if ahead:
                    # Claimed up to a second ago: whoever has since been forgotten (or
                    # found unreachable) is sent nothing more. One look a held round.
                    owed = await self.storage.outbox_owed([row.id or 0 for row in ahead])
                    ahead = [row for row in ahead if row.id in owed]
                rows = ahead or await self.storage.claim_due(channel_name, self.clock(), self.batch)
                if not rows:
                    return sent
                queues: dict[str, list[OutboxRow]] = defaultdict(list)
                for row in rows:
                    queues[row.participant].append(row)
                channel = self.channels[channel_name]
                outcomes = await asyncio.gather(
                    *(self._send_in_order(channel, queue) for queue in queues.values()),
                    return_exceptions=True,
                )
                # Every queue is done before a failure is passed on: one left sending
                # while the next round began was claimed again by it, and its messages
                # were sent twice (found by review).
                results = []
                for outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        raise outcome
                    results.append(outcome)
                sent += sum(count for count, _, _ in results)
                held = self._holds(channel_name)
                if held is not None:
                    if held - self.clock() <= CLAIM_AHEAD:
                        # The window is full for a moment: the next round is ready before
                        # it frees, so sending resumes at once rather than a claim later
                        # (measured, a fan-out: some 30 ms of silence after each full
                        # window). Those held back are still this instance's, first in
                        # line; when few are left, a claim brings them and more.
                        waiting = [row for _, _, rest in results for row in rest]
                        self._ahead[channel_name] = (
                            sorted(waiting, key=lambda row: row.id or 0)
                            if len(waiting) >= self.batch // 2
                            else await self.storage.claim_due(
                                channel_name, self.clock(), self.batch
                            )
                        )
                    return sent
                if not any(progressed for _, progressed, _ in results):
                    return sent
                if len(queues) < self.batch and not ahead:
                    # Everyone due was in this round: asking again finds nobody (a query
                    # per round for nothing), and what is queued meanwhile wakes delivery.
                    return sent

    def _holds(self, channel_name: str) -> datetime | None:
        """Until when the channel's overall limit holds everything back (None: it doesn't)."""
        held = self._held.get(channel_name)
        return held if held is not None and held > self.clock() else None

    async def _send_in_order(
        self, channel: Channel, rows: list[OutboxRow]
    ) -> tuple[int, bool, list[OutboxRow]]:
        """Send one person's due messages in order; stop at the first that must wait.

        Returns how many were sent, whether any progress was made, and the messages held
        back by the channel's overall limit (still due, still this instance's)."""
        sent = 0
        for n, row in enumerate(rows):
            assert row.id is not None
            async with self._in_flight:
                if self._holds(channel.name):
                    # Held meanwhile by someone else's send: not even a reservation to ask.
                    return sent, sent > 0, rows[n:]
                if not self.storage.claim_holds(row.id):
                    # Its lease may be another instance's by now: whoever claims it next
                    # sends it and what follows, in order (sent here too, it went twice).
                    return sent, sent > 0, []
                result = await self._send_one(channel, row)
                if isinstance(result, Sent | Dropped):
                    # Owed no more, written down at once (the writer's next transaction,
                    # shared with whatever else is queued) and before this place is given
                    # up: a crash then repeats at most the messages whose calls were in
                    # flight, never more than `concurrency`. Recorded once a round, it
                    # repeated every message the round had sent (up to 500).
                    await self.storage.outbox_sent([row.id])
            match result:
                case Sent():
                    sent += 1
                case Dropped(reason=reason):
                    log.warning("a message was dropped, not to be sent again: %s", reason)
                case Unreachable():
                    await self.storage.mark_unreachable(row.participant)
                    return sent, True, []
                case RetryAfter(seconds=seconds, everyone=everyone, sent_pieces=pieces):
                    until = self.clock() + timedelta(seconds=seconds)
                    if everyone:
                        # The whole channel waits; this message stays due, first in line
                        # (unless part of it went: what is left is written down below).
                        self._held[channel.name] = max(self._held.get(channel.name, until), until)
                        if not pieces:
                            return sent, sent > 0, rows[n:]
                    await self.storage.outbox_retry(row.id, until, row.attempts, _rest(row, pieces))
                    return sent, sent > 0, []
                case Failed(reason=reason, sent_pieces=pieces):
                    log.info("delivery failed (%s); will retry", reason)
                    attempts = row.attempts + 1
                    await self.storage.outbox_retry(
                        row.id, self.clock() + backoff(attempts), attempts, _rest(row, pieces)
                    )
                    return sent, sent > 0, []
        return sent, True, []

    async def _send_one(self, channel: Channel, row: OutboxRow) -> SendResult:
        try:
            message = Outbound.model_validate_json(row.payload)
        except ValidationError as error:
            # A payload that can't be read never will be: kept, it was tried every ten
            # minutes for ever, and held back everything queued after it for this person
            # (found by review). Dropped, and said in the log. (A seal that won't open is
            # not this: a wrong secret key is put right, so those wait and retry below.)
            # Where and what, never the input: pydantic's message quotes it (their words).
            why = [(e["loc"], e["type"]) for e in error.errors(include_input=False)]
            log.error("a queued message (%s) could not be read; it is dropped: %s %s",
                      row.id, type(error).__name__, why)  # fmt: skip
            return Dropped(f"unreadable: {type(error).__name__}")
        if message.quoting and await self._quotes_someone_gone(message.quoting):
            # A report made before someone it quotes was forgotten, and queued after the
            # erasure looked for it (found by review): withdrawn, as erasure withdraws
            # those it finds (bot/reports/quotes.py).
            return Dropped("it quotes someone forgotten since it was made")
        try:
            if message.edit is not None and message.edit.startswith(SEALED):
                message.edit = self.identity.unseal(message.edit[len(SEALED) :].encode())
            message = fit(message, channel.capabilities)
            address = self.identity.unseal(row.address)
            return await channel.send(address, message)
        except Exception as error:
            # Whatever went wrong, this row waits and retries with backoff; nobody else waits.
            log.exception("sending a message failed unexpectedly")
            return Failed(type(error).__name__)

    async def _quotes_someone_gone(self, quoting: list[str]) -> bool:
        """Whether someone whose words a report quotes has no row any more (forgotten):
        one read for them all, as a chunk of a prompt reads its people."""
        found = await self.storage.conversations([(who, None) for who in quoting])
        return any(each.participant is None for each in found)

    async def run(self) -> None:
        """Deliver until cancelled: on every wake-up, and when a retry falls due."""
        # And when another instance queues many (a scheduled prompt it took), not at the
        # next look, up to a minute later.
        self.storage.watch_outbox(self.wake)
        while True:
            # Clear before draining, so a wake-up during the drain is not lost.
            self._wake.clear()
            for name in self.channels:
                try:
                    await self.drain(name)
                except Exception:
                    log.exception("delivery on %s failed; will try again", name)
            if self._wake.is_set():
                continue  # more was queued meanwhile: drain again, no need to ask when
            try:
                timeout = await self._until_next_due()
            except Exception:  # the database away: delivery carries on when it is back
                log.exception("could not ask when the next message is due; trying again soon")
                timeout = RETRY_DUE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _until_next_due(self) -> float:
        soonest: datetime | None = None
        ready = False  # a round claimed ahead waits: no need to ask, nor to wait longer
        for name in self.channels:
            held = self._holds(name)
            if name in self._ahead:
                # Its next round is claimed: due when the hold ends, or now if it has.
                due: datetime | None = held or self.clock()
                ready = True
            elif held is not None:
                # The channel's limit holds everything back till then: look again then.
                # (Asking when its next message is due reads every row it owes: during a
                # fan-out, 200,000 rows each time the limit was reached.)
                due = held
            else:
                due = await self.storage.next_due(name)
            if due is not None and (soonest is None or due < soonest):
                soonest = due
        if soonest is None:
            return 60.0
        # Not sooner than 50 ms unless a claimed round waits: something due that can't be
        # sent yet (another instance's lease) would otherwise be asked about in a loop.
        return max(0.0 if ready else 0.05, min(60.0, (soonest - self.clock()).total_seconds()))


def _rest(row: OutboxRow, pieces: int) -> str | None:
    """What is still owed of a message whose first `pieces` the platform took (a long
    report cut in pieces), to send on its retry instead of the whole again; None if
    none went."""
    if not pieces:
        return None
    message = Outbound.model_validate_json(row.payload)
    return message.model_copy(update={"sent_pieces": pieces}).model_dump_json(exclude_defaults=True)
