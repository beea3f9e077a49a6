"""What the engine hands back: inputs it accepts and events for the caller to carry out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.flows.answers import AnswerValue
from bot.flows.run import RunState, RunStatus

CONSENT_STEP = "_consent"
LANGUAGE_STEP = "_language"
DONE_VALUE = "_done"


# Inputs -------------------------------------------------------------------


@dataclass(frozen=True)
class TextInput:
    """A line the participant typed."""

    text: str


@dataclass(frozen=True)
class Tap:
    """A button tap; `step` says which question's button it was, so stale taps are caught."""

    step: str
    value: str


@dataclass(frozen=True)
class Picked:
    """Several options chosen at once and submitted (checkboxes, where a platform has them)."""

    step: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Open:
    """A paced gathering moves on: questions up to number `part` are open to everyone."""

    part: int


@dataclass(frozen=True)
class Command:
    """A participant command such as /skip or /language es (without the slash)."""

    name: str
    arg: str = ""


@dataclass(frozen=True)
class Timeout:
    """A tick from the scheduler: expire the run if it has been idle too long."""


@dataclass(frozen=True)
class Remind:
    """The scheduler's gentle nudge to someone who has not finished a prompted guide."""


@dataclass(frozen=True)
class Repeat:
    """The participant came back: greet them and ask the current question again."""


Input = TextInput | Tap | Picked | Open | Command | Timeout | Repeat | Remind


# Events -------------------------------------------------------------------


class InputKind(StrEnum):
    """What a message asks for, so that a channel can draw the right controls."""

    NONE = "none"
    CHOICE = "choice"
    CHOICES = "choices"
    SCALE = "scale"
    NUMBER = "number"
    TEXT = "text"


@dataclass(frozen=True)
class Button:
    label: str
    step: str
    value: str
    chosen: bool = False


@dataclass(frozen=True)
class Reply:
    """A message to the participant, in plain text: channels escape it for their markup."""

    text: str
    buttons: tuple[Button, ...] = ()
    input: InputKind = InputKind.NONE
    progress: str | None = None
    hint: str | None = None
    step: str | None = None
    update: bool = False  # replaces the prompt already shown for `step` (a toggled option)
    # Skip, back and stop as buttons (value = the command), for platforms where typing
    # /skip is awkward; a channel may draw them or leave them to typed commands.
    controls: tuple[Button, ...] = ()


@dataclass(frozen=True)
class AnswerGiven:
    """Store this answer (None means skipped); `display` is how to show it back."""

    step: str
    kind: str
    value: AnswerValue
    display: str


@dataclass(frozen=True)
class AnswerWithdrawn:
    """The participant went back: forget the stored answer to `step`."""

    step: str


@dataclass(frozen=True)
class ConsentDecided:
    given: bool


@dataclass(frozen=True)
class RunEnded:
    status: RunStatus


Event = Reply | AnswerGiven | AnswerWithdrawn | ConsentDecided | RunEnded


@dataclass(frozen=True)
class Outcome:
    state: RunState
    events: tuple[Event, ...]

    @property
    def replies(self) -> list[Reply]:
        return [event for event in self.events if isinstance(event, Reply)]
