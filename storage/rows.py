"""The rows storage keeps. Plain data: storage knows nothing of guides or platforms."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime


@dataclass(frozen=True)
class ParticipantRow:
    """A pseudonymous participant and the sealed (encrypted) address used to reply."""

    id: str
    channel: str
    address: bytes
    language: str | None = None
    current_run: str | None = None
    unreachable: bool = False
    # A bot-level question awaiting their answer (its buttons, as the caller wrote them).
    pending: str | None = None


@dataclass(frozen=True)
class RunRow:
    id: str
    participant: str
    guide_id: str
    guide_version: int
    guide_hash: str
    status: str
    state: str  # JSON written by the caller
    started_at: datetime
    updated_at: datetime
    gathering: str | None = None  # the facilitated gathering this run was joined through


@dataclass(frozen=True)
class GatheringRow:
    """A facilitated gathering: one guide launched for a room, with a short join code."""

    id: str
    code: str
    guide_id: str
    title: str
    facilitator: str  # pseudonym
    channel: str
    address: bytes  # sealed: where it was launched (a group, a channel or a DM)
    private_address: bytes  # sealed: the facilitator's own chat, for the summary
    paced: bool
    part: int  # paced: how many questions are open to everyone
    status: str  # "open" or "closed"
    created_at: datetime
    expires_at: datetime  # when its join code stops working
    closed_at: datetime | None = None
    place: str = ""  # pseudonym of where it was launched, to find it there without a code

    @property
    def is_open(self) -> bool:
        """Still taking answers: not closed by its facilitator (nor with them forgotten)."""
        return self.status == "open"


@dataclass(frozen=True)
class ScheduleRow:
    """A guide sent to a cohort on a cron, in a time zone (each member's own, if set)."""

    id: str
    guide_id: str
    cohort: str
    cron: str
    tz: str
    paused: bool
    created_at: datetime
    checked_until: datetime  # occurrences up to here have been looked at


@dataclass(frozen=True)
class DeliveryRow:
    """One scheduled prompt to one participant; its key makes it happen once."""

    key: str
    schedule: str
    participant: str
    run_id: str
    delivered_at: datetime
    reminders: int = 0


@dataclass(frozen=True)
class MemberRow:
    """A cohort member as the scheduler needs them: how to reach them, and when."""

    participant: str
    tz: str | None
    paused_until: datetime | None
    unreachable: bool


@dataclass(frozen=True)
class PreferenceRow:
    participant: str
    tz: str | None = None
    paused_until: datetime | None = None


@dataclass(frozen=True)
class Conversation:
    """What handling one inbound message needs first, read in one go."""

    seen: bool  # its inbound key was already processed
    participant: ParticipantRow | None
    run: RunRow | None  # the participant's current run


@dataclass(frozen=True)
class AnswerRow:
    run_id: str
    step: str
    participant: str
    guide_id: str
    guide_version: int
    kind: str
    value: str  # JSON written by the caller
    answered_at: datetime


@dataclass(frozen=True)
class ConsentRow:
    participant: str
    guide_id: str
    guide_version: int
    given: bool
    at: datetime


@dataclass(frozen=True)
class OutboxRow:
    """A message owed to someone; deleted once the platform has accepted it."""

    channel: str
    participant: str
    address: bytes
    payload: str  # JSON written by the caller
    not_before: datetime
    attempts: int = 0
    id: int | None = None


@dataclass(frozen=True)
class GuideSourceRow:
    """The exact text of a guide a run was started on, so later edits can't change it."""

    hash: str
    guide_id: str
    version: int
    source: str


@dataclass(frozen=True)
class WrongCodeRow:
    """An invitation code someone tried that was no good, counted to limit guessing."""

    participant: str
    at: datetime
    # Wrong codes (anyone's) from before this no longer count: deleted in the same commit.
    forget_before: datetime


@dataclass(frozen=True)
class TakenRecord:
    """A one-time record to use up in a commit, if it is still there and not expired."""

    kind: str
    key: str
    now: datetime


@dataclass(frozen=True)
class RecordRow:
    """A small keyed record (a role held by a pseudonym), written in a commit."""

    kind: str
    key: str
    value: bytes
    expires_at: datetime | None = None


@dataclass
class Commit:
    """Everything one inbound message changes, written in one transaction.

    `inbound_key` makes the commit idempotent: a key already seen commits nothing.
    """

    inbound_key: str | None = None
    participant: ParticipantRow | None = None
    # Deleted, after the rest is written, if nothing of theirs is kept: no run and no
    # cohort membership (a member who declines must still be asked next week).
    delete_unused_participant: str | None = None
    runs: list[RunRow] = field(default_factory=list)
    delete_run: str | None = None
    guide_source: GuideSourceRow | None = None
    answers: list[AnswerRow] = field(default_factory=list)
    withdrawn: list[tuple[str, str]] = field(default_factory=list)  # (run id, step)
    consents: list[ConsentRow] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    gathering: GatheringRow | None = None  # a gathering launched
    gathering_part: tuple[str, int] | None = None  # (id, part): opened up to, if still open
    gathering_closed: tuple[str, datetime] | None = None  # (id, when), if still open
    joined: list[tuple[str, str]] = field(default_factory=list)  # (cohort, participant)
    left: list[tuple[str | None, str]] = field(default_factory=list)  # None: every cohort
    preference: PreferenceRow | None = None
    delivery: DeliveryRow | None = None
    reminded: str | None = None  # a delivery key whose reminder this commit sends
    wrong_code: WrongCodeRow | None = None
    # A one-time record used up (an invitation code), and records written in its place
    # (the role it grants): the commit fails as a duplicate if it was taken meanwhile.
    take_record: TakenRecord | None = None
    records: list[RecordRow] = field(default_factory=list)
    # Erase everything kept about this participant first, leaving a tombstone (/forget);
    # the rest of the commit (a goodbye under a throwaway id) is written after.
    forget: tuple[str, datetime] | None = None  # (participant, when)
    schedule: ScheduleRow | None = None  # a schedule changed (paused or resumed)
    # The person whose row the turn read: if they have been erased since (an operator's
    # `kitchen-table forget`, in another process and under no conversation lock), the
    # commit writes nothing rather than bring back what was erased.
    still_kept: str | None = None


# What reads hand back besides the rows above: each a name for every column, never a
# tuple read by position.


@dataclass(frozen=True)
class CohortRow:
    """A cohort and the code people join it with."""

    name: str
    code: str


@dataclass(frozen=True)
class OccurrenceRow:
    """One time a schedule fell due, in one time zone, and what became of it."""

    tz: str
    due_at: datetime
    status: str  # "claimed", "sent" or "missed"


@dataclass(frozen=True)
class WrongCodes:
    """Invitation codes that were no good, tried since some moment."""

    theirs: int  # by the one person asked about
    everyone: int  # by anyone, that person included


@dataclass(frozen=True)
class KeptRun:
    id: str
    guide_id: str
    guide_version: int
    status: str
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class KeptAnswer:
    run_id: str
    guide_id: str
    step: str
    kind: str
    value: str  # JSON written by the caller
    answered_at: datetime


@dataclass(frozen=True)
class KeptConsent:
    guide_id: str
    guide_version: int
    given: bool
    at: datetime


@dataclass(frozen=True)
class KeptMembership:
    cohort: str
    joined_at: datetime


@dataclass(frozen=True)
class KeptPreference:
    tz: str | None
    paused_until: datetime | None


@dataclass(frozen=True)
class KeptRole:
    role: str


@dataclass(frozen=True)
class KeptAbout:
    """Everything kept about one participant, table by table (what /mydata shows)."""

    runs: list[KeptRun]
    answers: list[KeptAnswer]
    consents: list[KeptConsent]
    cohorts: list[KeptMembership]
    preferences: list[KeptPreference]
    roles: list[KeptRole]

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class RunCount:
    """Runs of a guide in one status that were under way in a period."""

    guide_id: str
    status: str
    runs: int
    people: int  # distinct participants


@dataclass(frozen=True)
class PeopleCount:
    """People who ran a guide in a period, and how many of them were new."""

    guide_id: str
    people: int
    new: int  # their first run of any guide began in the period


@dataclass(frozen=True)
class StepCount:
    """A step and how many (runs stopped there, or people who answered it)."""

    step: str
    count: int


@dataclass(frozen=True)
class Tally:
    """How many times one value (as JSON) was given to a step."""

    step: str
    value: str
    count: int


# Not frozen: a digest streams these by the hundred thousand, and a frozen dataclass's
# __init__ costs over three times a plain one's (0.50 against 0.14 µs a row, measured),
# some 70 ms more for a week of a million answers. Treat them as read-only all the same.
@dataclass(slots=True)
class TextAnswer:
    """One free-text answer, as a digest reads it."""

    participant: str
    run_id: str
    step: str
    value: str  # JSON written by the caller
    language: str = ""  # the run's, when asked for (`with_language`), or ""


@dataclass(frozen=True)
class GatheringHeld:
    guide_id: str
    title: str
    code: str


@dataclass(slots=True)  # not frozen, as `TextAnswer`: exports stream every answer
class ExportRow:
    """One answer as exports write it."""

    answered_at: str  # as stored: the sort key of export pages
    run_id: str
    step: str
    guide_version: int
    participant: str
    kind: str
    value: str  # JSON written by the caller
    language: str  # the run's, or ""


@dataclass(frozen=True)
class ChoiceCount:
    """How many distinct people gave one value (JSON) to a step: an option of a choose or
    choose-many step, a point of a scale, a number."""

    step: str
    value: str
    people: int


@dataclass(frozen=True)
class CrossTally:
    """People in one group of a breakdown (an option given to one step) who gave one value
    (as JSON) to another step in the same run; `value` None: who answered it at all."""

    group: str
    value: str | None
    people: int
