"""The storage protocols every backend implements, one per concern.

A feature or a report asks for the narrow protocol it uses (`ReportStore`,
`RecordStore`...), so what it may touch is written in its signature; `Storage`
is all of them, for the composition root that builds a backend and hands it out.
One test suite (tests/test_storage*.py, the `store` fixture) runs against every
backend and calls every method declared here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from storage.failures import STORAGE_FAILURES
from storage.rows import (
    AnswerRow,
    ChoiceCount,
    CohortRow,
    Commit,
    ConsentRow,
    Conversation,
    CrossTally,
    DeliveryRow,
    ExportRow,
    GatheringHeld,
    GatheringRow,
    KeptAbout,
    MemberRow,
    OccurrenceRow,
    OutboxRow,
    ParticipantRow,
    PeopleCount,
    PreferenceRow,
    RecordRow,
    RunCount,
    RunRow,
    ScheduleRow,
    StepCount,
    Tally,
    TextAnswer,
    WrongCodes,
)

__all__ = [
    "STORAGE_FAILURES",
    "ConversationStore",
    "GatheringStore",
    "RecordStore",
    "ReportStore",
    "RightsStore",
    "ScheduleStore",
    "Storage",
]


class ConversationStore(Protocol):
    """A turn's reads and its one commit, and the outbox that delivery drains."""

    async def commit(self, commit: Commit) -> bool:
        """Write a whole commit atomically; False (and nothing written) if its key was seen.
        On a database several instances share, the messages it queues are claimed by
        this instance as they are written (a turn's replies go out from where it was
        taken)."""
        ...

    async def commit_many(self, commits: Sequence[Commit]) -> list[bool]:
        """Write many commits in one transaction, each as `commit` would (False, and
        nothing of it written, if its key was seen); any other error writes none.
        What they queue is left for any instance to claim (a scheduled prompt's)."""
        ...

    async def inbound_seen(self, key: str) -> bool: ...

    async def conversation(self, participant_id: str, inbound_key: str | None) -> Conversation:
        """Whether the key was seen, the participant and their current run, in one read."""
        ...

    async def conversations(self, wanted: Sequence[tuple[str, str | None]]) -> list[Conversation]:
        """`conversation` for many (participant, inbound key) pairs, in the order given."""
        ...

    async def open_runs_of(
        self, participant_ids: Sequence[str], guide_id: str
    ) -> dict[str, RunRow]:
        """`open_run` for many participants: each one's latest run of the guide still under
        way, for those who have one."""
        ...

    async def participant(self, participant_id: str) -> ParticipantRow | None: ...

    async def run(self, run_id: str) -> RunRow | None: ...

    async def open_run(self, participant_id: str, guide_id: str) -> RunRow | None:
        """The participant's most recent unfinished run of a guide, if any."""
        ...

    async def open_runs(self, participant_id: str) -> list[RunRow]:
        """Every run of theirs still under way, the latest first."""
        ...

    async def count_runs(self, participant_id: str) -> int: ...

    async def answers(self, run_id: str) -> list[AnswerRow]: ...

    async def consents(self, participant_id: str) -> list[ConsentRow]: ...

    async def guide_source(self, guide_hash: str) -> str | None: ...

    async def claim_due(self, channel: str, now: datetime, limit: int) -> list[OutboxRow]:
        """Claim messages owed on a channel whose time has come, for this caller to send:
        for up to `limit` people (whose first message owed fell due earliest), each one's
        messages in order up to the first that must still wait.

        What is claimed is the caller's to send, until it says each was taken
        (`outbox_sent`), put off (`outbox_retry`) or unreachable (`mark_unreachable`).
        A backend that one process uses alone (SQLite) claims by reading: nobody else
        drains its outbox. One shared by several processes (PostgreSQL) must hand each
        message to one claimant at a time, with a lease (`FOR UPDATE SKIP LOCKED`), so
        that two processes never send it twice and a crashed one's claim runs out."""
        ...

    def claim_holds(self, message_id: int) -> bool:
        """Whether a message `claim_due` handed this caller is still its own to send, as
        far as it knows without asking (no round trip: asked before each send). A backend
        shared by several processes says no once the claim may have passed to another
        (its lease ran short, or the caller lost what tells others it is alive); what
        was not sent then is claimed again, by whoever may."""
        ...

    async def outbox_sent(self, message_ids: Sequence[int]) -> None:
        """The platform took these messages: they are owed no more."""
        ...

    async def outbox_retry(
        self, message_id: int, not_before: datetime, attempts: int, payload: str | None = None
    ) -> None:
        """Send this message again from `not_before`, after `attempts` failures; with
        `payload`, what is still owed of it (a long message partly sent) in its place."""
        ...

    async def outbox_owed(self, message_ids: Sequence[int]) -> set[int]:
        """Which of these messages are still owed: not yet sent, and not dropped since
        they were claimed (their person forgotten, or found unreachable)."""
        ...

    async def mark_unreachable(self, participant_id: str) -> None:
        """The platform says this person can't be reached: drop what is owed to them."""
        ...

    async def next_due(self, channel: str) -> datetime | None:
        """When the earliest message owed on a channel falls due, if any."""
        ...

    def watch_outbox(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever another process may have queued many messages at once (a
        chunk of a scheduled prompt), so an idle delivery starts on them now, not at its
        next look. A backend one process has to itself (SQLite) never calls it."""
        ...


class ScheduleStore(Protocol):
    """Cohorts, their members' settings, schedules, occurrences and deliveries."""

    async def save_cohort(self, name: str, code: str, now: datetime) -> None: ...

    async def cohort(self, name: str) -> CohortRow | None: ...

    async def cohorts(self) -> list[CohortRow]:
        """Every cohort, by name."""
        ...

    async def cohort_by_code(self, code: str) -> str | None: ...

    async def cohorts_of(self, participant_id: str) -> list[str]: ...

    async def members(self, cohort: str) -> list[MemberRow]: ...

    async def preference(self, participant_id: str) -> PreferenceRow | None: ...

    async def save_schedule(self, schedule: ScheduleRow) -> None: ...

    async def remove_schedule(self, schedule_id: str) -> bool: ...

    async def schedules(self) -> list[ScheduleRow]: ...

    async def advance_schedule(self, schedule_id: str, checked_until: datetime) -> None:
        """Occurrences up to `checked_until` have been dealt with (never moves back)."""
        ...

    async def claim_occurrence(
        self, schedule_id: str, tz: str, due_at: datetime, now: datetime, lease: timedelta
    ) -> str:
        """Take an occurrence to send: "claimed" for one caller only (or for a later one
        once the first has held it past `lease` without finishing: it crashed); "held"
        while another caller has it; "done" once it was sent or missed."""
        ...

    async def finish_occurrence(
        self, schedule_id: str, tz: str, due_at: datetime, status: str
    ) -> None: ...

    async def occurrences(self, schedule_id: str) -> list[OccurrenceRow]: ...

    async def due_reminders(
        self, delivered_before: datetime, max_reminders: int
    ) -> list[DeliveryRow]:
        """Prompts delivered long enough ago whose run is still under way."""
        ...

    async def deliveries(self, schedule_id: str) -> list[DeliveryRow]: ...


class GatheringStore(Protocol):
    """Facilitated gatherings and the runs joined through them."""

    async def gathering(self, gathering_id: str) -> GatheringRow | None: ...

    async def gathering_by_code(self, code: str) -> GatheringRow | None: ...

    async def latest_gathering(self, facilitator: str, place: str) -> GatheringRow | None:
        """The latest gathering launched in this place or by this facilitator."""
        ...

    async def gathering_runs(self, gathering_id: str) -> list[RunRow]:
        """Every run joined through a gathering, the earliest first."""
        ...

    async def gathering_answers(self, gathering_id: str) -> list[AnswerRow]: ...

    async def open_gatherings(self) -> list[GatheringRow]:
        """Every gathering not yet closed, the latest launched first (the console's
        overview of what is live)."""
        ...


class RecordStore(Protocol):
    """Roles and invitations: small opaque keyed records, and wrong codes counted."""

    async def put_record(
        self, kind: str, key: str, value: bytes, expires_at: datetime | None = None
    ) -> None:
        """Keep an opaque record (sealed by the caller when secret), replacing any before."""
        ...

    async def replace_record(self, kind: str, key: str, was: bytes | None, value: bytes) -> bool:
        """Keep `value` (with no expiry) only if the record is still `was` (None: there is
        none): whether it was kept. Of two callers who read the same record and each
        replace it, one is told no, so that neither's change is lost unseen."""
        ...

    async def record(self, kind: str, key: str, now: datetime) -> bytes | None:
        """A record that has not expired, if there is one."""
        ...

    async def take_record(self, kind: str, key: str, now: datetime) -> bytes | None:
        """Delete a record and return it if it had not expired: at most one caller gets it."""
        ...

    async def clear_expired_records(self, now: datetime) -> int:
        """Delete every record that expired by `now` (sign-in links, console sessions,
        invitations nobody used): how many went."""
        ...

    async def delete_records(self, kind: str, key: str) -> None: ...

    async def records_of(self, kind: str, now: datetime) -> list[RecordRow]:
        """Every unexpired record of one kind, by key."""
        ...

    async def wrong_codes(self, participant_id: str, since: datetime) -> WrongCodes:
        """How many invitation codes that were no good (theirs, everyone's) were tried
        since then."""
        ...


class RightsStore(Protocol):
    """A participant's rights (see and erase what is kept), and retention."""

    async def forget(self, participant_id: str, now: datetime) -> None:
        """Erase every row that refers to a participant, leaving only a tombstone."""
        ...

    async def tombstone(self, participant_id: str) -> datetime | None: ...

    async def expire_texts(self, kinds: Sequence[str], before: datetime) -> int:
        """Blank free-text answers older than `before`, keeping the rows (so counts stay);
        how many were blanked."""
        ...

    async def mine(self, participant_id: str) -> KeptAbout:
        """Everything kept about one participant (for /mydata)."""
        ...


class ReportStore(Protocol):
    """Read-only queries for digests, summaries and exports."""

    async def forgotten_so_far(self) -> tuple[int, datetime | None]:
        """How many people have been forgotten, and when the latest was: it changes with
        every erasure, so a report kept a while can tell it may quote someone gone."""
        ...

    async def run_counts(self, since: datetime, until: datetime) -> list[RunCount]:
        """Runs active in the period, by guide and status."""
        ...

    async def people_counts(self, since: datetime, until: datetime) -> list[PeopleCount]:
        """People per guide in the period, and how many were new (first run ever in it)."""
        ...

    async def open_steps(self, guide_id: str, since: datetime, until: datetime) -> list[StepCount]:
        """Where runs of a guide that did not finish stopped: (step, runs)."""
        ...

    async def people_tallies(self, guide_id: str, since: datetime, until: datetime) -> list[Tally]:
        """Each value given to choices, scales and numbers, with the distinct people who
        gave it (not answers: someone who answered weekly counts once); each option of a
        list of choices counts on its own."""
        ...

    async def cross_tallies(
        self, guide_id: str, since: datetime, until: datetime, by_step: str, step: str
    ) -> list[CrossTally]:
        """Distinct people by (option given to `by_step`, value given to `step` in the
        same run), options of lists counted on their own; with value None, the people of
        each option who answered `step` at all."""
        ...

    async def text_sample(
        self, guide_id: str, step: str, since: datetime, until: datetime, after: str, limit: int
    ) -> list[TextAnswer]:
        """Up to `limit` answers to one step in the period from the people whose pseudonyms
        sort after `after`, ordered by participant, then as answered: a draw of quotes
        that starts at a point of the caller's choosing reads no more than it needs."""
        ...

    async def answer_people(
        self, guide_id: str, since: datetime, until: datetime, steps: Sequence[str] | None = None
    ) -> list[StepCount]:
        """(step, distinct people who answered it), of these steps only if given."""
        ...

    def answer_text_pages(
        self,
        guide_id: str,
        steps: Sequence[str],
        since: datetime,
        until: datetime,
        runs: Sequence[str] | None = None,
        page: int = 5000,
        with_language: bool = False,
    ) -> AsyncGenerator[list[TextAnswer], None]:
        """Pages of answers to these (free-text) steps, of these runs only if given: each
        row once, ordered by participant, then as answered, so that one person's answers
        come together. `with_language`: each with its run's language ("" without one),
        for themes, which group each language apart. Close it (`aclosing`) if you stop
        early."""
        ...

    async def gatherings_held(self, since: datetime, until: datetime) -> list[GatheringHeld]:
        """Each gathering launched in [since, until), oldest first."""
        ...

    async def export_rows(
        self,
        guide_id: str,
        since: datetime | None,
        until: datetime | None,
        after: tuple[str, str, str] | None,
        limit: int,
        by_run: bool = False,
    ) -> list[ExportRow]:
        """A page of a guide's answers in a stable order, for streaming exports. Pages
        follow each other by `after`, the last row's sort key: (answered_at, run, step),
        or (run, step, answered_at) with `by_run`."""
        ...

    async def choice_counts(
        self, guide_id: str, since: datetime, until: datetime
    ) -> list[ChoiceCount]:
        """Distinct people per value of choose, scale and number steps, and per option of
        choose-many ones, answered in the period, for public-release thresholds."""
        ...


class Storage(
    ConversationStore, ScheduleStore, GatheringStore, RecordStore, RightsStore, ReportStore,
    Protocol,
):  # fmt: skip
    """Every concern together, as one backend provides them: what the composition root
    builds and hands out."""

    async def open(self) -> None:
        """Connect. An empty database gets the schema at the latest version; one whose
        schema is behind this code's is refused with `storage.failures.SchemaBehind`
        (newer than this code: `SchemaAhead`), saying what the operator should run."""

    async def upgrade(self) -> tuple[int, int]:
        """Open (no `open` needed first) and apply the schema's migrations, in one
        transaction: (version before, version after). `close` after it."""
        ...

    async def schema_state(self) -> tuple[int, int]:
        """(the database's schema version, the latest this code knows): open or not, one
        query, so it serves as a health check too."""
        ...

    async def close(self) -> None: ...


# Each concern's protocol, for whoever needs to go through them (the suite that checks
# every method is exercised).
CONCERNS: tuple[type, ...] = (
    ConversationStore, ScheduleStore, GatheringStore, RecordStore, RightsStore, ReportStore,
)  # fmt: skip
