"""Send limits: at most N messages in any one second overall, and token buckets per chat
(short bursts are fine there, the average rate is kept).

The caller passes the time, and is told how long to wait rather than made to. The
interface is async because with several instances the limits are held in the
database (storage/postgres/limits.py: the platform counts what the bot sends, not
what each process sends); `RateLimits` keeps them in this process, for one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol


class SendLimits(Protocol):
    """A platform's send limits, as channels ask them: take a slot for a chat now, or
    hear how long to wait. `RateLimits` keeps them in this process; with several
    instances they are shared, held in the database (`PostgresSendLimits`, whose `now`
    must then be wall-clock time, the same on every machine)."""

    async def reserve(self, chat: str, is_group: bool, now: float) -> float:
        """Seconds to wait before sending to `chat` (0: a slot was taken now)."""
        ...

    async def overall_wait(self, now: float) -> float:
        """Seconds until the channel as a whole may send again."""
        ...


@dataclass
class Bucket:
    capacity: float
    per_second: float
    tokens: float
    updated: float

    def wait(self, now: float) -> float:
        """Seconds until one token is free (0 if one is free now)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.per_second

    def take(self) -> None:
        self.tokens -= 1


@dataclass
class Window:
    """At most `limit` sends in any one second: a platform counting per second never sees
    more. (A token bucket with a full second's burst can send twice that in a second,
    and then every send waits out a 429: measured, 93% of the limit instead of ~100%.)"""

    limit: int
    sent: deque[float]
    now: float = 0.0

    def wait(self, now: float) -> float:
        self.now = now
        while self.sent and self.sent[0] <= now - 1.0:
            self.sent.popleft()
        return 0.0 if len(self.sent) < self.limit else self.sent[0] + 1.0 - now

    def take(self) -> None:
        self.sent.append(self.now)


class RateLimits:
    """An overall window plus a bucket per chat, with separate rates for people and groups,
    in this process. Its specs (`overall`, `per_chat`, `per_group`: capacity, per second)
    are what the shared limits are built from, so both keep the same numbers."""

    def __init__(
        self,
        *,
        overall: tuple[float, float],
        per_chat: tuple[float, float],
        per_group: tuple[float, float],
        max_chats: int = 50_000,
    ) -> None:
        self.overall = overall
        self.per_chat = per_chat
        self.per_group = per_group
        self._last_second: Window | None = None
        self._chats: dict[str, Bucket] = {}
        self._max_chats = max_chats

    def _bucket(self, spec: tuple[float, float], now: float) -> Bucket:
        capacity, per_second = spec
        return Bucket(capacity, per_second, capacity, now)

    async def overall_wait(self, now: float) -> float:
        """Seconds until the overall limit lets anything at all be sent (0: now)."""
        return self._window().wait(now)

    def _window(self) -> Window:
        if self._last_second is None:
            self._last_second = Window(max(1, int(self.overall[1])), deque())
        return self._last_second

    async def reserve(self, chat: str, is_group: bool, now: float) -> float:
        """Take a send slot for `chat` and return 0, or return how long to wait and take none."""
        overall = self._window()
        chat_bucket = self._chats.get(chat)
        if chat_bucket is None:
            if len(self._chats) >= self._max_chats:
                self._forget_idle(now)
            chat_bucket = self._bucket(self.per_group if is_group else self.per_chat, now)
            self._chats[chat] = chat_bucket
        wait = max(overall.wait(now), chat_bucket.wait(now))
        if wait > 0:
            return wait
        overall.take()
        chat_bucket.take()
        return 0.0

    def _forget_idle(self, now: float) -> None:
        """Drop the buckets that have refilled: a chat idle that long owes nothing."""
        for chat, bucket in list(self._chats.items()):
            bucket.wait(now)
            if bucket.tokens >= bucket.capacity:
                del self._chats[chat]
