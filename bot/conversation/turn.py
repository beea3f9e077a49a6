"""A turn: one thing happening in one person's conversation, and everything it will commit.

A turn is a message someone sent, a scheduled prompt, a reminder or a nudge. The
dispatcher opens it (under the person's lock, after loading their conversation),
features and the engine add to it, and the dispatcher commits it: one
transaction, whatever was said or changed. Everything a feature says goes
through the turn (`say`, `reply`, `send`, `ask`), so "say this to the person" is
written once, and an address, or an edit reference that could name a conversation,
is always sealed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.flows.events import Button, Reply
from bot.flows.phrases import Phrasebook
from bot.messages import SEALED, Inbound, Outbound
from bot.privacy import Identity
from storage.rows import Commit, GatheringRow, OutboxRow, ParticipantRow, RunRow


@dataclass(frozen=True)
class Voice:
    """What a turn needs to speak: the bot's phrases, and the keys that seal addresses."""

    phrases: Phrasebook
    identity: Identity


@dataclass
class Turn:
    """One inbound message (or prompt, or reminder) being handled, and its commit."""

    voice: Voice
    inbound: Inbound
    participant_id: str
    person: ParticipantRow | None
    now: datetime
    sealed_address: bytes
    commit: Commit
    run: RunRow | None  # the participant's current run, as loaded
    gathering: GatheringRow | None = None  # joining through a gathering: the run belongs to it
    after: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    actor: str = ""  # the pseudonym of the person who sent it (in a group too): their role
    not_before: datetime | None = None  # hold its messages until then (quiet hours)
    # A bot-level question asked in this turn (its buttons, as JSON), or "" once answered:
    # kept on the participant so a typed answer reaches it before the guide's question.
    pending: str | None = None
    # Run once everything else is done, the guide's reply included: a feature's word on
    # what a command it passed on to the guide did (or left as it was).
    closing: list[Callable[[Turn], None]] = field(default_factory=list)
    # The row just built for a tapped question's mark, and the mark: the message that
    # follows it at once carries it instead (`send`).
    _mark: tuple[OutboxRow, Outbound] | None = field(default=None, init=False, repr=False)

    # Who and where --------------------------------------------------------------

    @property
    def language(self) -> str:
        """The language someone chose with /language, else their app's, else English."""
        person = self.person
        return (person.language if person else None) or self.inbound.language or "en"

    @property
    def group(self) -> bool:
        return self.inbound.group

    def text(self, key: str, **params: object) -> str:
        return self.voice.phrases.text(self.language, key, **params)

    # Saying things --------------------------------------------------------------

    def say(self, key: str, **params: object) -> None:
        """A phrase from the locales, in this person's language, to where they wrote."""
        self.reply(Reply(self.text(key, **params)))

    def reply(
        self,
        reply: Reply,
        run: str | None = None,
        *,
        edit: str | None = None,
        link: str | None = None,
    ) -> None:
        message = Outbound.from_reply(reply, run)
        message.edit = edit
        if link is not None:
            for button in message.buttons:
                button.url = link
        self.send(message)

    def send(self, message: Outbound) -> None:
        outbox, held = self.commit.outbox, self._mark
        if (
            held is not None
            and outbox
            and outbox[-1] is held[0]
            and message.edit is None
            and message.mark is None
        ):
            # A tapped question's mark and the message that follows it at once (the next
            # question) share one row: one insert, claim and delete fewer per tap (#19).
            # The channel still makes both calls, the mark first.
            self._mark = None
            outbox[-1] = self.row(message.model_copy(update={"mark": held[1]}))
            return
        outbox.append(self.row(message))

    def ask(self, reply: Reply) -> None:
        """A bot-level question (a confirmation, an offer, a menu): its buttons are kept as
        this person's pending question, so a typed answer reaches it, not the guide."""
        self.reply(reply)
        self.pending = json.dumps(
            [[b.step, b.value, b.label] for b in reply.buttons], ensure_ascii=False
        )

    def privately(self, message: Outbound | str) -> None:
        """To the sender's own chat, even when they wrote in a group (a refusal, a report
        for the facilitator): never to the whole room."""
        if isinstance(message, str):
            message = Outbound(text=message)
        if not self.inbound.group:
            self.send(message)
            return
        private = self.inbound.private or self.inbound.address
        self.commit.outbox.append(
            self.row(message, participant=self.actor, address=self.voice.identity.seal(private))
        )

    def send_to(self, channel: str, participant: str, address: bytes, message: Outbound) -> None:
        """A message to somewhere other than this conversation (a room), already sealed."""
        self.commit.outbox.append(
            OutboxRow(
                channel,
                participant,
                address,
                message.model_dump_json(exclude_defaults=True),
                self.due,
            )
        )

    def row(
        self, message: Outbound, *, participant: str | None = None, address: bytes | None = None
    ) -> OutboxRow:
        edit = message.edit
        in_chat = edit is not None and self._in_chat(edit, address)
        if edit is not None and not edit.startswith(SEALED) and not in_chat:
            # A platform's reference to a message can name a conversation (a Slack DM's
            # channel id): kept sealed like addresses, opened only to send.
            sealed = self.voice.identity.seal(edit).decode()
            message = message.model_copy(update={"edit": SEALED + sealed})
        row = OutboxRow(
            self.inbound.channel,
            self.participant_id if participant is None else participant,
            self.sealed_address if address is None else address,
            message.model_dump_json(exclude_defaults=True),
            self.due,
        )
        if in_chat and participant is None and message.input == "answered":
            self._mark = (row, message)  # in clear, so it can travel inside the next row
        return row

    def _in_chat(self, edit: str, address: bytes | None) -> bool:
        """Whether an edit reference names no one, so it needs no seal: it is the tapped
        message's, which the channel says is only its number within the chat this turn
        answers (`Inbound.ref_in_chat`), and the row goes to that very chat. Sealing it
        was the largest cost a tap had that a typed answer hasn't (#19)."""
        inbound = self.inbound
        return inbound.ref_in_chat and address is None and edit == inbound.message_ref

    @property
    def due(self) -> datetime:
        return max(self.now, self.not_before) if self.not_before else self.now

    # Keeping how to reach them -----------------------------------------------------

    def keep_address(self, *, reachable: bool = False) -> None:
        """Keep how to reach this person (sealed), for what the bot will send them later
        (check-ins, digests, summaries), unless the turn already writes their row."""
        if self.commit.participant is not None or self.inbound.group:
            return
        person = self.person or ParticipantRow(self.actor, self.inbound.channel, b"")
        changes: dict[str, object] = {"address": self.sealed_address}
        if reachable:
            changes["unreachable"] = False
        self.commit.participant = dataclasses.replace(person, **changes)  # type: ignore[arg-type]


def buttons_of(pending: str | None) -> list[Button]:
    """The buttons of a pending bot-level question, as `Turn.ask` kept them."""
    if not pending:
        return []
    try:
        return [Button(label, step, value) for step, value, label in json.loads(pending)]
    except (ValueError, TypeError):
        return []  # an unreadable one is simply no longer pending
