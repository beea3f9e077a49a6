"""Send limits: at most N messages in any one second overall, and token buckets per chat
(short bursts are fine there, the average rate is kept).

Pure: the caller passes the time, and is told how long to wait rather than made to.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol


class SendLimits(Protocol):
    """A platform's send limits, as channels ask them: take a slot for a chat now, or
    hear how long to wait. `RateLimits` keeps them in this process; with several
    instances they must be shared (held in the database), behind this same interface."""

    def reserve(self, chat: str, is_group: bool, now: float) -> float:
        """Seconds to wait before sending to `chat` (0: a slot was taken now)."""
        ...

    def overall_wait(self, now: float) -> float:
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
    """An overall window plus a bucket per chat, with separate rates for people and groups."""

    def __init__(
        self,
        *,
        overall: tuple[float, float],
        per_chat: tuple[float, float],
        per_group: tuple[float, float],
        max_chats: int = 50_000,
    ) -> None:
        self._overall_spec = overall
        self._chat_spec = per_chat
        self._group_spec = per_group
        self._overall: Window | None = None
        self._chats: dict[str, Bucket] = {}
        self._max_chats = max_chats

    def _bucket(self, spec: tuple[float, float], now: float) -> Bucket:
        capacity, per_second = spec
        return Bucket(capacity, per_second, capacity, now)

    def overall_wait(self, now: float) -> float:
        """Seconds until the overall limit lets anything at all be sent (0: now)."""
        if self._overall is None:
            self._overall = Window(max(1, int(self._overall_spec[1])), deque())
        return self._overall.wait(now)

    def reserve(self, chat: str, is_group: bool, now: float) -> float:
        """Take a send slot for `chat` and return 0, or return how long to wait and take none."""
        self.overall_wait(now)
        assert self._overall is not None
        chat_bucket = self._chats.get(chat)
        if chat_bucket is None:
            if len(self._chats) >= self._max_chats:
                self._forget_idle(now)
            chat_bucket = self._bucket(self._group_spec if is_group else self._chat_spec, now)
            self._chats[chat] = chat_bucket
        wait = max(self._overall.wait(now), chat_bucket.wait(now))
        if wait > 0:
            return wait
        self._overall.take()
        chat_bucket.take()
        return 0.0

    def _forget_idle(self, now: float) -> None:
        """Drop the buckets that have refilled: a chat idle that long owes nothing."""
        for chat, bucket in list(self._chats.items()):
            bucket.wait(now)
            if bucket.tokens >= bucket.capacity:
                del self._chats[chat]
