"""Messages between channels and the dispatcher: `Inbound` in, `Outbound` out.

Outbound text is plain: each channel escapes it for its own markup when it
renders, so nothing a participant typed is ever read as markup.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from bot.flows.commands import parse_command
from bot.flows.events import Button, Reply, Tap
from bot.flows.scrub import strip_invisible

# An edit reference kept sealed in the outbox: platform message references can name a
# conversation (a Slack DM's channel id), so they are encrypted like addresses. A
# reference the channel marks `ref_in_chat` (Telegram's message_id) names no one and is
# kept as it is: see `Inbound.ref_in_chat`.
SEALED = "sealed:"


def clean_text(text: str) -> str:
    """Drop control and invisible characters (but keep line breaks and tabs) from what
    someone typed, before anything reads it: a right-to-left override or a zero-width
    space is never stored, nor shown back (`strip_invisible` says what stays)."""
    return strip_invisible(text)


class NotStored(Exception):
    """Storage could not keep a message (nothing of it was kept: a commit is all or
    nothing). Channels answer it without naming the database: a webhook asks the
    platform to try again, a person is told to try again in a moment."""


@dataclass(frozen=True)
class Inbound:
    """Something a person sent, as a channel saw it.

    `user` is the platform's id for the sender and `address` where replies go; the
    dispatcher turns the first into a pseudonym and seals the second at once.
    """

    channel: str
    user: str
    address: str
    text: str | None = None
    tap: Tap | None = None
    tap_run: str | None = None  # the run a tapped button belonged to
    key: str | None = None  # the platform's id for this update, for at-most-once processing
    language: str | None = None
    kind: str = "text"  # "text", or "unsupported" (a photo, a voice note...), or "edited"
    message_ref: str | None = None  # the platform message a tapped button sits on
    # The channel's word that `message_ref` is only a message's number within the chat at
    # `address` (Telegram's message_id, a count of that chat's messages): it names no one,
    # and the channel pairs it with the address it is given at send time, so the turn
    # keeps it in the outbox as it is. Otherwise (Slack's names the DM's channel, which
    # is not the address) the turn seals it like an address.
    ref_in_chat: bool = False
    group: bool = False  # sent in a group chat, where the bot never collects answers
    link: str | None = None  # in a group: the link to a private chat with the bot
    picked: tuple[str, ...] | None = None  # with tap: the options submitted all at once
    private: str | None = None  # in a group: the address of a private chat with the sender
    control_step: str | None = None  # a skip/back/stop button: the question it sat under

    @property
    def command(self) -> tuple[str, str] | None:
        return None if self.text is None else parse_command(self.text)


class OutButton(BaseModel):
    label: str
    step: str = ""
    value: str = ""
    chosen: bool = False
    url: str | None = None  # a link button (a deep link to a private chat)


class Outbound(BaseModel):
    """A message owed to someone, as stored in the outbox and handed to a channel."""

    text: str
    buttons: list[OutButton] = []
    input: str = "none"
    progress: str | None = None
    hint: str | None = None
    step: str | None = None
    run: str | None = None
    update: bool = False
    edit: str | None = None  # the platform message to change instead of sending a new one
    controls: list[OutButton] = []  # skip / back / stop, for channels that draw them
    asked: str | None = None  # with input "answered": the question, to keep beside the answer
    # A report (status, summary) already rendered and escaped for each markup: "html"
    # (Telegram), "mrkdwn" (Slack), "text"; `text` is the plain version.
    markup: dict[str, str] | None = None
    qr: str | None = None  # a link to show as a QR code (for a room to scan)
    document: str | None = None  # a JSON file to attach (someone's own data, for /mydata)
    # The mark on a tapped question (its buttons become the answer), sent just before this
    # message: it travels in this message's outbox row, so a tap costs one row, not two
    # (`Turn.send`). Only an edit that names no one is carried so (`Inbound.ref_in_chat`).
    mark: Outbound | None = None
    # Of a message a channel sends in several pieces (a long report), how many the
    # platform took before a retry was needed: the retry sends only the rest.
    sent_pieces: int = 0
    # Whose words a report quotes (pseudonyms; never shown): erasing one of them
    # withdraws it while it is still owed (bot/reports/quotes.py).
    quoting: list[str] = []

    @classmethod
    def from_reply(cls, reply: Reply, run: str | None) -> Outbound:
        return cls(
            text=reply.text,
            buttons=[_button(b) for b in reply.buttons],
            input=reply.input.value,
            progress=reply.progress,
            hint=reply.hint,
            step=reply.step,
            run=run,
            update=reply.update,
            controls=[_button(b) for b in reply.controls],
        )


def _button(button: Button) -> OutButton:
    return OutButton(label=button.label, step=button.step, value=button.value, chosen=button.chosen)
