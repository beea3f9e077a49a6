"""The small protocol every channel implements, and what a send can come back with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.messages import Outbound
from bot.ratelimit import RateLimits


@dataclass(frozen=True)
class Sent:
    """The platform accepted the message."""


@dataclass(frozen=True)
class RetryAfter:
    """The platform asked us to wait (a rate limit): send the same message later.

    `everyone` when the wait is the channel's overall limit rather than this chat's:
    nothing else on the channel can go sooner either.
    """

    seconds: float
    everyone: bool = False


@dataclass(frozen=True)
class Unreachable:
    """The person can't be reached (they blocked the bot): never retry."""


@dataclass(frozen=True)
class Failed:
    """A network error or a server error: retry with backoff."""

    reason: str


@dataclass(frozen=True)
class Dropped:
    """The platform refused this message for good (a bad request): don't retry it."""

    reason: str


SendResult = Sent | RetryAfter | Unreachable | Failed | Dropped


def reserve(limits: RateLimits, chat: str, is_group: bool, now: float) -> RetryAfter | None:
    """Take a send slot under our own limits, or say how long to wait (and whether the
    whole channel waits, so delivery holds everything back instead of each message)."""
    wait = limits.reserve(chat, is_group, now)
    if wait <= 0:
        return None
    # Only when something must wait: was it the channel's overall limit?
    everyone = limits.overall_wait(now)
    return RetryAfter(everyone, everyone=True) if everyone > 0 else RetryAfter(wait)


class Channel(Protocol):
    """Delivers outbound messages on one platform."""

    name: str

    async def send(self, address: str, message: Outbound) -> SendResult: ...
