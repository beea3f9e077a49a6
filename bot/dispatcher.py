"""The dispatcher ties the layers together, one conversation at a time.

For each inbound message it locks the participant, loads their run, asks the
engine what happens next, and commits the new run state, the stored answers
and the outgoing messages in one transaction. Delivery reads the outbox after.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.cohorts import COMMANDS as COHORT_COMMANDS
from bot.cohorts import KEEP_STEP, Cohorts
from bot.digest import build_digest
from bot.fanout import Fanout
from bot.flows.engine import Flow
from bot.flows.events import (
    CONSENT_STEP,
    AnswerGiven,
    AnswerWithdrawn,
    Button,
    ConsentDecided,
    Input,
    InputKind,
    Open,
    Outcome,
    Picked,
    Remind,
    Repeat,
    Reply,
    RunEnded,
    Tap,
    TextInput,
    Timeout,
)
from bot.flows.loader import LoadedGuide, parse_guide
from bot.flows.phrases import Phrasebook
from bot.flows.run import RunState, RunStatus
from bot.flows.scrub import scrub
from bot.flows.text import localize
from bot.gatherings import COMMANDS as GATHERING_COMMANDS
from bot.gatherings import JOIN_STEP, STATUS_STEP, Gatherings
from bot.library import GuideLibrary
from bot.locks import KeyedLocks
from bot.messages import SEALED, Inbound, Outbound, clean_text
from bot.privacy import Identity
from bot.reports import Reports
from bot.rights import COMMANDS as RIGHTS_COMMANDS
from bot.rights import FORGET_STEP, Rights
from bot.roles import ADMIN, COORDINATOR, Roles
from storage.protocol import Storage
from storage.rows import (
    AnswerRow,
    Commit,
    ConsentRow,
    DeliveryRow,
    GatheringRow,
    GuideSourceRow,
    OutboxRow,
    ParticipantRow,
    RunRow,
)

GUIDE_MENU_STEP = "_guide"
# What still works in a run whose gathering has closed.
AFTER_CLOSE = {"stop", "help", "privacy", "language", "mydata", "forget"}
STALE_STEP = "_stale"


@dataclass(frozen=True)
class Handled:
    """What became of an inbound message."""

    accepted: bool  # False when it was a duplicate and nothing was done
    status: str | None = None  # the participant's current run status afterwards


@dataclass
class _Turn:
    """One inbound message being handled: who sent it and what it will commit."""

    inbound: Inbound
    participant_id: str
    person: ParticipantRow | None
    now: datetime
    sealed_address: bytes
    commit: Commit
    run: RunRow | None  # the participant's current run, as loaded
    gathering: GatheringRow | None = None  # joining through a gathering: the run belongs to it
    after: list[Callable[[], Awaitable[None]]] = dataclasses.field(default_factory=list)
    actor: str = ""  # the pseudonym of the person who sent it (in a group too): their role
    not_before: datetime | None = None  # hold its messages until then (quiet hours)


class Dispatcher:
    def __init__(
        self,
        *,
        storage: Storage,
        library: GuideLibrary,
        identity: Identity,
        phrases: Phrasebook,
        clock: Callable[[], datetime],
        # 128 random bits in hex, as uuid4().hex spells them, at a quarter of its cost
        # (a fan-out makes 100,000 at once).
        new_id: Callable[[], str] = lambda: secrets.token_hex(16),
        max_answer_chars: int = 4000,
        on_commit: Callable[[], None] = lambda: None,
        roles: Roles | None = None,
        reports: Reports | None = None,
        min_group: int = 5,
        default_tz: str = "UTC",
    ) -> None:
        self.storage = storage
        self.library = library
        self.identity = identity
        self.phrases = phrases
        self.clock = clock
        self.new_id = new_id
        self.max_answer_chars = max_answer_chars
        self.on_commit = on_commit
        self._locks = KeyedLocks()
        self._flows: dict[str, Flow] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.roles = roles or Roles(storage, set(), clock)
        self.reports = reports or Reports(phrases)
        self.gatherings = Gatherings(self, self.roles, self.reports, min_group)
        self.cohorts = Cohorts(self, default_tz)
        self.rights = Rights(self)
        self.fanout = Fanout(self)

    # The one entry point -----------------------------------------------------

    async def handle(self, inbound: Inbound) -> Handled:
        # In a group the bot answers the group itself, never a person in it.
        sender = f"chat:{inbound.address}" if inbound.group else inbound.user
        participant_id = self.identity.pseudonym(inbound.channel, sender)
        if inbound.text is not None and (cleaned := clean_text(inbound.text)) != inbound.text:
            inbound = dataclasses.replace(inbound, text=cleaned)
        async with self._locks.hold(participant_id):
            seen_key = self._seen_key(inbound.key)
            loaded = await self.storage.conversation(participant_id, seen_key)
            if loaded.seen:
                return Handled(False)
            turn = _Turn(
                inbound,
                participant_id,
                loaded.participant,
                self.clock(),
                self.identity.reseal(
                    inbound.address, loaded.participant.address if loaded.participant else None
                ),
                Commit(inbound_key=seen_key),
                loaded.run,
                actor=self.identity.pseudonym(inbound.channel, inbound.user),
            )
            status = await self._route(turn)
            if not await self.storage.commit(turn.commit):
                return Handled(False)
        self.on_commit()
        for then in turn.after:  # work for other people's conversations, under their locks
            task = asyncio.create_task(then())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return Handled(True, status)

    async def settle(self) -> None:
        """Wait for work started for other people's conversations (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _seen_key(self, key: str | None) -> str | None:
        """What storage keeps to recognise a message seen before: a keyed hash, since a
        platform's ids for a message can name its sender (Slack's do)."""
        return None if key is None else self.identity.pseudonym("seen", key)

    async def prompt(
        self, participant_id: str, key: str, schedule_id: str, guide_id: str,
        not_before: datetime | None = None,
    ) -> bool:  # fmt: skip
        """Send a scheduled guide to someone who opted in, once for `key`: True if sent."""
        async with self._locks.hold(participant_id):
            loaded = await self.storage.conversation(participant_id, self._seen_key(key))
            person = loaded.participant
            if loaded.seen or person is None or person.unreachable:
                return False
            turn = self._prompt_turn(person, key, loaded.run, self.clock(), not_before)
            await self._start_guide(turn, guide_id, scheduled=True)
            if not self._delivered(turn, key, schedule_id, guide_id):
                return False
            if not await self.storage.commit(turn.commit):
                return False
        self.on_commit()
        return True

    def _prompt_turn(
        self, person: ParticipantRow, key: str, run: RunRow | None, now: datetime,
        not_before: datetime | None,
    ) -> _Turn:  # fmt: skip
        """A scheduled prompt, handled as a message with no text whose key makes it once."""
        inbound = Inbound(person.channel, "", "", key=key, language=person.language)
        return _Turn(inbound, person.id, person, now, person.address,
                     Commit(inbound_key=self._seen_key(key)), run,
                     not_before=not_before)  # fmt: skip

    @staticmethod
    def _delivered(turn: _Turn, key: str, schedule_id: str, guide_id: str) -> bool:
        """Record a prompt's delivery against the run of the guide it started (or carried
        on with), which reminders follow; False if there is no such run. The last one
        written: an expired run ended first comes before the one begun after it."""
        started = next((r for r in reversed(turn.commit.runs) if r.guide_id == guide_id), None)
        if started is None:
            return False
        turn.commit.delivery = DeliveryRow(key, schedule_id, turn.participant_id, started.id,
                                           turn.now)  # fmt: skip
        return True

    async def prompt_many(
        self, prompts: Sequence[tuple[str, str]], schedule_id: str, guide_id: str,
        not_before: datetime | None = None,
    ) -> int:  # fmt: skip
        """`prompt` for many (participant, key) pairs at once: how many were sent.

        For a whole cohort: chunk by chunk, one read and one transaction each (see
        `bot/fanout.py`), with the same guarantees as one `prompt` at a time.
        """
        return await self.fanout.prompt_many(prompts, schedule_id, guide_id, not_before)

    async def remind(self, delivery: DeliveryRow, not_before: datetime | None = None) -> bool:
        """Nudge someone who has not finished a prompted guide; once per reminder."""
        key = f"remind:{delivery.key}:{delivery.reminders + 1}"
        async with self._locks.hold(delivery.participant):
            loaded = await self.storage.conversation(delivery.participant, self._seen_key(key))
            person, run_row = loaded.participant, loaded.run
            if loaded.seen or person is None or person.unreachable:
                return False
            if run_row is None or run_row.id != delivery.run_id:
                return False  # they have moved on to another conversation
            inbound = Inbound(person.channel, "", "", key=key, language=person.language)
            turn = _Turn(inbound, delivery.participant, person, self.clock(), person.address,
                         Commit(inbound_key=self._seen_key(key), reminded=delivery.key), run_row,
                         not_before=not_before)  # fmt: skip
            flow = await self._flow(run_row.guide_hash)
            state = RunState.model_validate_json(run_row.state)
            # A run that has expired stops its reminders: it is ended, silently.
            outcome = flow.resume(
                state, Timeout() if flow.expired(state, turn.now) else Remind(), turn.now
            )
            await self._record(turn, flow, outcome, None)
            if not await self.storage.commit(turn.commit):
                return False
        self.on_commit()
        return True

    async def send_to(self, participant_id: str, message: Outbound, key: str) -> bool:
        """A message for someone outside any conversation (a weekly digest), once per key."""
        async with self._locks.hold(participant_id):
            loaded = await self.storage.conversation(participant_id, self._seen_key(key))
            person = loaded.participant
            if loaded.seen or person is None or person.unreachable:
                return False
            inbound = Inbound(person.channel, "", "", key=key)
            turn = _Turn(inbound, participant_id, person, self.clock(), person.address,
                         Commit(inbound_key=self._seen_key(key)), loaded.run)  # fmt: skip
            turn.commit.outbox.append(self._row(turn, message))
            if not await self.storage.commit(turn.commit):
                return False
        self.on_commit()
        return True

    async def digest_message(self, language: str, since: datetime, until: datetime) -> Outbound:
        digest = await build_digest(
            self.storage, self.library, since, until, min_group=self.gatherings.min_group,
            language=language,
        )  # fmt: skip
        return Outbound(
            text=self.reports.render("digest", "text", language, d=digest),
            markup=self.reports.every_format("digest", language, d=digest),
        )

    async def nudge(self, participant_id: str, run_id: str, given: Input) -> None:
        """Move someone's current run on without a message from them (a paced gathering
        opening a question; later, the scheduler's timeouts)."""
        async with self._locks.hold(participant_id):
            loaded = await self.storage.conversation(participant_id, None)
            person, run_row = loaded.participant, loaded.run
            if person is None or run_row is None or run_row.id != run_id or person.unreachable:
                return  # they have moved on to another conversation since
            inbound = Inbound(person.channel, "", "", language=person.language)
            turn = _Turn(inbound, participant_id, person, self.clock(), person.address,
                         Commit(), run_row)  # fmt: skip
            flow = await self._flow(run_row.guide_hash)
            state = RunState.model_validate_json(run_row.state)
            outcome = flow.resume(state, given, turn.now)
            if outcome.events or outcome.state != state:
                await self._record(turn, flow, outcome, None)
                await self.storage.commit(turn.commit)
        self.on_commit()

    async def _route(self, turn: _Turn) -> str | None:
        inbound = turn.inbound
        language = self._language(turn, None)
        command = inbound.command
        if command is not None and command[0] == "start" and "-" in command[1]:
            # Deep links: /start join-K7M2QP (a gathering), /start redeem-CODE (a role).
            action, _, code = command[1].partition("-")
            if action in ("join", "redeem"):
                command = (action, code)
        if command is not None and command[0] in GATHERING_COMMANDS:
            return await self.gatherings.command(turn, *command)
        if command is not None and command[0] == "digest" and not inbound.group:
            if await self.roles.role_of(turn.actor) not in (COORDINATOR, ADMIN):
                reply = Reply(self.phrases.text(language, "digest_only_coordinators"))
            else:
                message = await self.digest_message(
                    language, turn.now - timedelta(days=7), turn.now
                )
                turn.commit.outbox.append(self._row(turn, message))
                return None
            turn.commit.outbox.append(self._outbox(turn, reply))
            return None
        if command is not None and command[0] in RIGHTS_COMMANDS and not inbound.group:
            await self.rights.command(turn, *command)
            return None
        if command is not None and command[0] in COHORT_COMMANDS and not inbound.group:
            await self.cohorts.command(turn, *command)
            return None
        if command is not None and command[0] == "stop" and not inbound.group:
            # /stop also means: no more check-ins.
            await self.cohorts.leave(turn, quietly=turn.run is not None)
        if inbound.group:
            # Answers are never collected in a group: explain, and point to a private chat.
            button = Button(self.phrases.text(language, "group_button"), "", "")
            reply = Reply(self.phrases.text(language, "group_intro"), (button,))
            turn.commit.outbox.append(self._outbox(turn, reply, link=inbound.link))
            return None
        if inbound.kind != "text":
            key = "edited" if inbound.kind == "edited" else "unsupported"
            turn.commit.outbox.append(self._outbox(turn, Reply(self.phrases.text(language, key))))
            return None
        if command is not None and command[0] in ("start", "guides"):
            name, arg = command
            if name == "start" and arg:
                return await self._start_guide(turn, arg)
            self._menu(turn, self._language(turn, None))
            return None
        tap = inbound.tap
        if tap is not None and tap.step == GUIDE_MENU_STEP:
            return await self._start_guide(turn, tap.value)
        if tap is not None and tap.step == JOIN_STEP:
            return await self.gatherings.join(turn, tap.value)
        if tap is not None and tap.step == STATUS_STEP:
            await self.gatherings.refresh(turn, tap.value)
            return None
        if tap is not None and tap.step == FORGET_STEP:
            await self.rights.tap(turn, tap.value)
            return None
        if tap is not None and tap.step == KEEP_STEP:
            await self.cohorts.keep(turn, tap.value)
            return None
        run_row = turn.run
        if run_row is None:
            if command is None or command[0] != "stop":
                self._no_conversation(turn, command[0] if command else None)
            return None
        flow = await self._flow(run_row.guide_hash)
        state = RunState.model_validate_json(run_row.state)
        if inbound.control_step is not None and (
            inbound.control_step != (state.step or CONSENT_STEP)
            or not state.run_id.startswith(inbound.tap_run or "")
            or state.status.ended
        ):
            # Skip, back or stop under an old question: it must not act on the current one.
            outcome = flow.resume(state, Tap(STALE_STEP, ""), turn.now)
            await self._record(turn, flow, outcome, None)
            return outcome.state.status.value
        if run_row.gathering is not None:
            gathering = await self.storage.gathering(run_row.gathering)
            if gathering is not None and gathering.status != "open":
                # Closed: what was said stays as it was summarised. Only leaving,
                # help and their own data remain.
                if command is None or command[0] not in AFTER_CLOSE:
                    self.gatherings.refuse_late(turn, gathering)
                    return None
            elif gathering is not None and gathering.paced and (state.gate or 0) < gathering.part:
                # The room has moved on since this run last heard: catch up first. This is
                # what keeps paced runs right; the nudges after /next only save a wait.
                opened = flow.resume(state, Open(gathering.part), turn.now)
                await self._record(turn, flow, opened, None)
                was_waiting, state = state.waiting, opened.state
                if was_waiting and not state.waiting and command is None:
                    return state.status.value  # they were waiting: the question is their answer
        outcome = flow.resume(state, self._input(inbound, state), turn.now)
        await self._record(turn, flow, outcome, None)
        return outcome.state.status.value

    def _input(self, inbound: Inbound, state: RunState) -> Input:
        if inbound.tap is not None:
            # Channels may carry a prefix of the run id, to fit platform limits.
            if inbound.tap_run is not None and not state.run_id.startswith(inbound.tap_run):
                # A button from another run must never change this one.
                return Tap(STALE_STEP, inbound.tap.value)
            if inbound.picked is not None:
                return Picked(inbound.tap.step, inbound.picked)
            return inbound.tap
        return TextInput(inbound.text or "")  # the engine reads commands in it itself

    # Starting and resuming guides --------------------------------------------

    async def _start_guide(
        self, turn: _Turn, guide_id: str, *, scheduled: bool = False
    ) -> str | None:
        """Start a guide, or carry on with the one already under way (from a gathering
        too, when the run joined through it is the one under way)."""
        loaded = self.library.get(guide_id.strip().lower())
        language = self._language(turn, None)
        if loaded is None or loaded.guide is None:
            # Echo what they typed only scrubbed and short: it reaches the outbox on disk.
            shown = scrub(guide_id)[:40]
            reply = Reply(self.phrases.text(language, "unknown_guide", guide=shown))
            turn.commit.outbox.append(self._outbox(turn, reply))
            self._menu(turn, language)
            return None
        existing = await self.storage.open_run(turn.participant_id, loaded.guide.id)
        return await self._carry_on_or_begin(turn, loaded, existing, scheduled=scheduled)

    async def _carry_on_or_begin(
        self, turn: _Turn, loaded: LoadedGuide, existing: RunRow | None, *, scheduled: bool
    ) -> str:
        """Carry on with `existing`, this person's open run of the guide (read under their
        lock), unless it has expired; else begin a new run."""
        outcome = await self._carry_on(turn, existing, scheduled=scheduled)
        if outcome is None or outcome.state.status.ended:
            # None under way, or it had expired (they are told, unless it is a scheduled
            # prompt's new run that follows): a new run.
            outcome = await self._begin(turn, loaded, self.new_id())
        return outcome.state.status.value

    async def _carry_on(
        self, turn: _Turn, existing: RunRow | None, *, scheduled: bool
    ) -> Outcome | None:
        """Welcome someone back to `existing`, recorded in the turn's commit; or end it, if
        it has expired. None if there is no run to carry on with (none, or one from
        another gathering than the one they are joining)."""
        joining = turn.gathering.id if turn.gathering is not None else None
        if existing is None or (joining is not None and existing.gathering != joining):
            return None
        flow = await self._flow(existing.guide_hash)
        state = RunState.model_validate_json(existing.state)
        # A scheduled prompt ends last week's expired run without a word: this week's
        # introduction follows at once, where "it has closed, send /start to begin
        # again" would only confuse (as a reminder to an expired run says nothing).
        quietly = scheduled and flow.expired(state, turn.now)
        outcome = flow.resume(state, Timeout() if quietly else Repeat(), turn.now)
        await self._record(turn, flow, outcome, None)
        return outcome

    async def _begin(self, turn: _Turn, loaded: LoadedGuide, run_id: str) -> Outcome:
        """A new run of a guide: the engine's start, recorded in the turn's commit."""
        flow = self._flow_for(loaded)
        wanted = self._language(turn, None)
        paced = turn.gathering is not None and turn.gathering.paced
        outcome = flow.start(
            run_id=run_id,
            guide_hash=loaded.hash,
            language=wanted or "",
            now=turn.now,
            gate=turn.gathering.part if paced and turn.gathering is not None else None,
        )
        await self._record(turn, flow, outcome, loaded)
        return outcome

    async def _flow(self, guide_hash: str) -> Flow:
        """The flow a run is pinned to: the current guide file, or the stored older text."""
        if guide_hash not in self._flows:
            loaded = self.library.by_hash(guide_hash)
            if loaded is None:
                source = await self.storage.guide_source(guide_hash)
                if source is None:
                    raise LookupError(f"no guide with hash {guide_hash}")
                loaded = parse_guide(source, f"stored guide {guide_hash}")
                self.library.add(loaded, current=False)
            return self._flow_for(loaded)
        return self._flows[guide_hash]

    def _flow_for(self, loaded: LoadedGuide) -> Flow:
        if loaded.hash not in self._flows:
            assert loaded.guide is not None
            self._flows[loaded.hash] = Flow(
                loaded.guide, self.phrases, max_answer_chars=self.max_answer_chars
            )
        return self._flows[loaded.hash]

    # Turning an outcome into rows ---------------------------------------------

    async def _record(
        self, turn: _Turn, flow: Flow, outcome: Outcome, new: LoadedGuide | None
    ) -> None:
        state = outcome.state
        commit = turn.commit
        guide = flow.guide
        if new is not None:
            commit.guide_source = GuideSourceRow(new.hash, guide.id, guide.version, new.source)
        for event in outcome.events:
            match event:
                case Reply():
                    edit = turn.inbound.message_ref if event.update else None
                    commit.outbox.append(self._outbox(turn, event, state.run_id, edit=edit))
                case AnswerGiven(step=step, kind=kind, value=value, display=display):
                    if self._tapped(turn, step):
                        commit.outbox.append(
                            self._answered(turn, step, display, flow.question(state, step))
                        )
                    commit.answers.append(
                        AnswerRow(
                            state.run_id,
                            step,
                            turn.participant_id,
                            guide.id,
                            guide.version,
                            kind,
                            json.dumps(value, ensure_ascii=False),
                            turn.now,
                        )
                    )
                case AnswerWithdrawn(step=step):
                    commit.withdrawn.append((state.run_id, step))
                case ConsentDecided(given=given):
                    commit.consents.append(
                        ConsentRow(turn.participant_id, guide.id, guide.version, given, turn.now)
                    )
                    if self._tapped(turn, CONSENT_STEP):
                        label = self.phrases.text(state.language, "agree" if given else "decline")
                        commit.outbox.append(
                            self._answered(
                                turn, CONSENT_STEP, label, flow.question(state, CONSENT_STEP)
                            )
                        )
        cohort = guide.keep_in_touch
        finished = any(
            isinstance(e, RunEnded) and e.status is RunStatus.FINISHED for e in outcome.events
        )
        if (
            finished
            and cohort is not None
            and await self.storage.cohort(cohort) is not None
            and cohort not in await self.storage.cohorts_of(turn.participant_id)
        ):
            offer = self.cohorts.offer(cohort, state.language)
            commit.outbox.append(self._outbox(turn, offer))
        if state.status is RunStatus.DECLINED:
            # A decline keeps nothing but the record that they declined, and the person
            # only while something else of theirs is kept: another run, or a cohort that
            # will ask them again next week (storage decides, as it writes).
            commit.delete_run = state.run_id
            commit.runs = [r for r in commit.runs if r.id != state.run_id]
            commit.delete_unused_participant = turn.participant_id
            current = None
        else:
            commit.runs.append(
                RunRow(
                    state.run_id,
                    turn.participant_id,
                    state.guide_id,
                    state.guide_version,
                    state.guide_hash,
                    state.status.value,
                    state.model_dump_json(),
                    state.started_at,
                    state.updated_at,
                    # Only a new run takes this: storage never changes a run's gathering.
                    turn.gathering.id if turn.gathering is not None else None,
                )
            )
            current = state.run_id
        commit.participant = ParticipantRow(
            turn.participant_id,
            turn.inbound.channel,
            turn.sealed_address,
            state.language,
            current,
        )

    def _outbox(
        self,
        turn: _Turn,
        reply: Reply,
        run: str | None = None,
        *,
        edit: str | None = None,
        link: str | None = None,
    ) -> OutboxRow:
        message = Outbound.from_reply(reply, run)
        message.edit = edit
        if link is not None:
            for button in message.buttons:
                button.url = link
        return self._row(turn, message)

    def _row(self, turn: _Turn, message: Outbound) -> OutboxRow:
        if message.edit is not None and not message.edit.startswith(SEALED):
            # A platform's reference to a message can name a conversation (a Slack DM's
            # channel id): kept sealed like addresses, opened only to send.
            message = message.model_copy(
                update={"edit": SEALED + self.identity.seal(message.edit).decode()}
            )
        payload = message.model_dump_json(exclude_defaults=True)
        due = max(turn.now, turn.not_before) if turn.not_before else turn.now
        return OutboxRow(
            turn.inbound.channel, turn.participant_id, turn.sealed_address, payload, due
        )

    @staticmethod
    def _tapped(turn: _Turn, step: str) -> bool:
        tap = turn.inbound.tap
        return tap is not None and tap.step == step and turn.inbound.message_ref is not None

    def _answered(self, turn: _Turn, step: str, display: str, asked: str) -> OutboxRow:
        """Mark the tapped question as answered, so its buttons can't change it again."""
        message = Outbound(
            text=display, input="answered", step=step, edit=turn.inbound.message_ref, asked=asked
        )
        return self._row(turn, message)

    # Messages outside a run ----------------------------------------------------

    def _language(self, turn: _Turn, fallback: str | None) -> str:
        """The language someone chose with /language, else their app's, else English."""
        person = turn.person
        return (person.language if person else None) or turn.inbound.language or fallback or "en"

    def _menu(self, turn: _Turn, language: str) -> None:
        turn.commit.outbox.append(self._outbox(turn, self._menu_reply(language)))

    def _menu_reply(self, language: str) -> Reply:
        guides = [loaded.guide for loaded in self.library.all() if loaded.guide is not None]
        if not guides:
            return Reply(self.phrases.text(language, "no_guides"))
        buttons = tuple(
            Button(localize(g.title, language, g.default_language), GUIDE_MENU_STEP, g.id)
            for g in guides
        )
        prompt = self.phrases.text(language, "guides_prompt")
        return Reply(prompt, buttons, InputKind.CHOICE, step=GUIDE_MENU_STEP)

    async def home(self, inbound: Inbound) -> list[Outbound]:
        """What a platform's home screen shows someone: their unfinished guides, then all.

        Read-only: nothing is stored for merely looking, not even a participant row.
        """
        participant_id = self.identity.pseudonym(inbound.channel, inbound.user)
        person = await self.storage.participant(participant_id)
        language = (person.language if person else None) or inbound.language or "en"
        sections = [Reply(self.phrases.text(language, "home_intro"))]
        unfinished = []
        for run in await self.storage.open_runs(participant_id) if person else []:
            loaded = self.library.get(run.guide_id)
            if loaded is not None and loaded.guide is not None:
                title = localize(loaded.guide.title, language, loaded.guide.default_language)
                unfinished.append(Button(title, GUIDE_MENU_STEP, run.guide_id))
        if unfinished:
            text = self.phrases.text(language, "home_unfinished")
            sections.append(Reply(text, tuple(unfinished), InputKind.CHOICE, step=GUIDE_MENU_STEP))
        sections.append(self._menu_reply(language))
        return [Outbound.from_reply(reply, None) for reply in sections]

    def _no_conversation(self, turn: _Turn, command: str | None) -> None:
        """Someone with no conversation under way: help if asked, otherwise the guides."""
        language = self._language(turn, None)
        if command in ("help", "privacy"):
            reply = Reply(self.phrases.text(language, command))
            turn.commit.outbox.append(self._outbox(turn, reply))
            return
        self._menu(turn, language)
