"""The small protocol every channel implements, what a send can come back with, and
what a channel can do (the core asks, instead of checking a platform's name)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bot.delivery.ratelimit import SendLimits
from bot.messages import Outbound


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
    sent_pieces: int = 0  # of a message sent in pieces, how many went (`Outbound`)


@dataclass(frozen=True)
class Unreachable:
    """The person can't be reached (they blocked the bot): never retry."""


@dataclass(frozen=True)
class Failed:
    """A network error or a server error: retry with backoff."""

    reason: str
    sent_pieces: int = 0  # of a message sent in pieces, how many went (`Outbound`)


@dataclass(frozen=True)
class Dropped:
    """The platform refused this message for good (a bad request): don't retry it."""

    reason: str


SendResult = Sent | RetryAfter | Unreachable | Failed | Dropped


async def reserve(limits: SendLimits, chat: str, is_group: bool, now: float) -> RetryAfter | None:
    """Take a send slot under our own limits, or say how long to wait (and whether the
    whole channel waits, so delivery holds everything back instead of each message)."""
    wait = await limits.reserve(chat, is_group, now)
    if wait <= 0:
        return None
    # Only when something must wait: was it the channel's overall limit?
    everyone = await limits.overall_wait(now)
    return RetryAfter(everyone, everyone=True) if everyone > 0 else RetryAfter(wait)


@dataclass
class Pieces:
    """One message sent as several (a report longer than the platform takes at once),
    in order, from the first the platform has not taken yet (`Outbound.sent_pieces`).

    Each piece after the first waits for a send slot of its own, as a message would;
    `sent` says how many went, so that a retry (a wait, a failure) sends only the rest
    instead of the whole again."""

    sent: int

    async def send(
        self,
        count: int,
        one: Callable[[int], Awaitable[object]],
        reserve: Callable[[], Awaitable[RetryAfter | None]],
    ) -> RetryAfter | None:
        """Send pieces `sent` to `count - 1` with `one(index)`; a wait for a slot stops
        them, and is returned with what went."""
        first = self.sent
        for index in range(first, count):
            if index > first and (wait := await reserve()) is not None:
                return dataclasses.replace(wait, sent_pieces=self.sent)
            await one(index)
            self.sent = index + 1
        return None


@dataclass(frozen=True)
class Capabilities:
    """What a channel can do, which the core asks instead of checking a platform's name.

    A channel without `edit` gets a changed message as a new one; without `buttons`,
    the choices written into the text as a numbered list (people type the number);
    without `files`, a file's or a QR code's content as text.
    """

    edit: bool = False  # change a message already sent (mark a tapped answer)
    buttons: bool = False  # show choices people tap
    files: bool = False  # attach a file or an image
    groups: bool = False  # serve group chats or channels (gatherings launched in a room)


class Channel(Protocol):
    """Delivers outbound messages on one platform."""

    name: str
    capabilities: Capabilities

    async def send(self, address: str, message: Outbound) -> SendResult: ...


def fit(message: Outbound, can: Capabilities) -> Outbound:
    """The message as a channel with these capabilities can show it: nothing is lost,
    only drawn differently (a list to type from instead of buttons, a new message
    instead of an edit)."""
    if can.edit and can.buttons and can.files:
        return message  # nearly always: no copy
    changes: dict[str, object] = {}
    text = message.text
    if not can.edit and message.edit is not None:
        changes["edit"] = None
        if message.input == "answered":
            text = f"✓ {text}"
    if not can.edit and message.mark is not None:
        changes["mark"] = None
        text = f"✓ {message.mark.text}\n\n{text}"  # the tapped answer, said before what follows
    if not can.buttons and (message.buttons or message.controls):
        choices = [b for b in message.buttons if b.url is None and b.label]
        lines = [f"  {n}. {b.label}" for n, b in enumerate(choices, start=1)]
        links = [f"{b.label}: {b.url}" for b in message.buttons if b.url is not None]
        text = "\n".join([text, *lines, *links])
        changes |= {"buttons": [], "controls": []}
    if not can.files and (message.document is not None or message.qr is not None):
        extra = [message.qr] if message.qr is not None else []
        text = "\n".join([text, *extra])
        changes |= {"document": None, "qr": None}
    changes["text"] = text
    return message.model_copy(update=changes)
