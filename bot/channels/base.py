"""The small protocol every channel implements, and what a send can come back with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.messages import Outbound


@dataclass(frozen=True)
class Sent:
    """The platform accepted the message."""


@dataclass(frozen=True)
class RetryAfter:
    """The platform asked us to wait (a rate limit): send the same message later."""

    seconds: float


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


class Channel(Protocol):
    """Delivers outbound messages on one platform."""

    name: str

    async def send(self, address: str, message: Outbound) -> SendResult: ...
