"""Send limits held in PostgreSQL, so that they hold for the bot as a whole.

A platform counts what the bot sends, not what each process sends: Telegram takes
at most 30 messages in any one second overall and about one a second per chat,
however many `kitchen-table run` processes share the work. `PostgresSendLimits` is
the same shape as `bot.delivery.ratelimit.SendLimits` (storage never imports the
bot; the protocol is structural) and keeps the same rules as the in-process
`RateLimits`: a window of the latest sends for the overall limit, and per chat a
token bucket (kept as the time its next send is due), with one rate for people and
another for groups. The reservations one instance asks for at about the same time
(a deliverer sends to 64 people at once) go as one call of `reserve_sends` (see
coordination_schema.py), which decides under the channel's row lock, so two
processes reserving at once are told the same as one process reserving in turn.

Times are the caller's: seconds on a wall clock (`time.time()`), the same on every
machine to within what NTP keeps. A monotonic clock counts from each machine's
boot, so one instance's "now" would mean nothing to another's; such a time is
refused rather than silently holding every other instance back.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from storage.postgres.growth import Growth
from storage.read_batch import ReadBatch

# Seconds since the epoch below this (2001) can only come from a monotonic clock.
WALL_CLOCK_FLOOR = 1_000_000_000.0
# How often (seconds of the callers' time) chats with nothing owed are deleted, and
# how long after their next send fell due: a margin for clocks a little apart.
SWEEP_EVERY = 60.0
SWEEP_AFTER = 60.0
# After this many chats given a slot, and again at each doubling, `send_chats` is
# ANALYZEd: `reserve_sends`' plan is made once per connection, from the table's
# statistics, and without statistics (autovacuum off, or not yet round) it is made for
# an empty table: a scan of every chat per call. Measured: 2.8 ms a call at 16,000
# chats, 22 ms at 96,000 (at 1,000 messages a second, a fan-out's ceiling); 1.1 ms
# at any size once analyzed. Analyzing invalidates the plan in every session.
ANALYZE_AFTER = 2_000

log = logging.getLogger(__name__)

RESERVE = "SELECT reserve_sends($1, $2, $3, $4, $5, $6)"
RECENT = "SELECT sent FROM send_windows WHERE channel = $1"
SWEEP = "DELETE FROM send_chats WHERE channel = $1 AND next_at < $2"
ANALYZE = "ANALYZE send_chats"


class Queries(Protocol):
    """What this needs of an asyncpg pool (or connection)."""

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def execute(self, query: str, *args: Any) -> str: ...


def _cell(spec: tuple[float, float]) -> tuple[float, float]:
    """A token bucket (capacity, per second) as (burst, spacing): how far ahead of now a
    chat's next send may already be, and the seconds between sends at its rate."""
    capacity, per_second = spec
    spacing = 1.0 / per_second
    return (capacity - 1.0) * spacing, spacing


class PostgresSendLimits:
    """One platform's send limits, shared by every instance on the database.

    `channel` names the limits (`telegram`, `slack`): instances using the same name
    share them. `overall`, `per_chat` and `per_group` are as `RateLimits` takes them,
    (capacity, per second); overall, at most `int(per second)` sends in any one second.
    `secret` keys the hash that stands for a chat in the table.
    """

    def __init__(
        self,
        queries: Queries,
        channel: str,
        *,
        overall: tuple[float, float],
        per_chat: tuple[float, float],
        per_group: tuple[float, float],
        secret: bytes,
        analyze_after: int = ANALYZE_AFTER,
    ) -> None:
        self._db = queries
        self.channel = channel
        self._per_second = max(1, int(overall[1]))
        self._chat = _cell(per_chat)
        self._group = _cell(per_group)
        self._secret = secret
        self._next_sweep = 0.0
        # Chats given a slot by this instance, and when to analyze theirs next.
        self._granted = Growth(analyze_after)
        # Asked for while a call is out: one call for all (chat, is group, now).
        self._asked: ReadBatch[tuple[str, bool, float], tuple[float, float]] = ReadBatch(
            self._reserve_many
        )
        # The overall part of the latest wait, and when it was told: what `overall_wait`
        # asked at that moment says without asking again.
        self._told: tuple[float, float] | None = None

    def _chat_key(self, chat: str) -> bytes:
        return hmac.new(self._secret, f"{self.channel}:{chat}".encode(), hashlib.sha256).digest()[
            :16
        ]

    async def reserve(self, chat: str, is_group: bool, now: float) -> float:
        """Take a send slot for `chat` and return 0, or return how long to wait and take none."""
        _check(now)
        wait, overall = await self._asked.get((chat, is_group, now))
        if wait > 0:
            self._told = (now, overall)
        return wait

    async def _reserve_many(
        self, asked: Sequence[tuple[str, bool, float]]
    ) -> list[tuple[float, float]]:
        """One call for every reservation asked for at once, as of the latest `now` among
        them (a moment later counts a send in the window a moment longer: never fewer)."""
        now = max(moment for _, _, moment in asked)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            await self._db.execute(SWEEP, self.channel, now - SWEEP_AFTER)
        cells = [self._group if is_group else self._chat for _, is_group, _ in asked]
        waits: list[float] = await self._db.fetchval(
            RESERVE,
            self.channel,
            [self._chat_key(chat) for chat, _, _ in asked],
            now,
            self._per_second,
            [burst for burst, _ in cells],
            [spacing for _, spacing in cells],
        )
        count = len(asked)
        if self._granted.add(sum(1 for wait in waits[:count] if wait <= 0)):
            self._granted.done()
            try:
                await self._db.execute(ANALYZE)
            except Exception as error:  # the reservations stand; only the plan is slower
                log.warning("could not analyze the send limits' chats (%s)", error)
        return [(max(0.0, waits[n]), max(0.0, waits[count + n])) for n in range(count)]

    async def overall_wait(self, now: float) -> float:
        """Seconds until the channel as a whole may send again (0: now)."""
        _check(now)
        told = self._told
        if told is not None and told[0] == now:
            return told[1]  # asked just after a reservation told to wait, at that moment
        sent: list[float] | None = await self._db.fetchval(RECENT, self.channel)
        recent = sorted(t for t in sent or [] if t > now - 1.0)
        if len(recent) < self._per_second:
            return 0.0
        return recent[len(recent) - self._per_second] + 1.0 - now


def _check(now: float) -> None:
    if now < WALL_CLOCK_FLOOR:
        raise ValueError(
            "shared send limits need wall-clock time (time.time()), the same on every "
            f"instance; got {now}, which looks like a monotonic clock"
        )
