"""The dispatcher ties the layers together, one conversation at a time.

Every turn (a message, a scheduled prompt, a reminder, a digest sent to someone,
a nudge from a paced room) goes through `_take_turn`: lock the participant, load
their conversation, act (route, run the engine, record), commit once, and only
then wake delivery and start work for other people's conversations. Commands and
bot-level buttons are looked up on the router, where features declared them;
the dispatcher imports no feature.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from bot.conversation.fanout import Fanout
from bot.conversation.locks import ConversationLocks, KeyedLocks
from bot.conversation.router import TO_GUIDE, Router
from bot.conversation.turn import Turn, Voice, buttons_of
from bot.flows.engine import GUIDE_COMMANDS, Flow
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
from bot.flows.loader import LoadedGuide, parse_stored_guide
from bot.flows.phrases import Phrasebook
from bot.flows.run import RunState, RunStatus
from bot.flows.scrub import scrub
from bot.flows.text import fold_answer, localize
from bot.library import GuideLibrary
from bot.messages import Inbound, NotStored, Outbound, clean_text
from bot.privacy import Identity
from storage.protocol import STORAGE_FAILURES, Storage
from storage.rows import (
    AnswerRow,
    Commit,
    ConsentRow,
    DeliveryRow,
    GuideSourceRow,
    OutboxRow,
    ParticipantRow,
    RunRow,
)

GUIDE_MENU_STEP = "_guide"
STALE_STEP = "_stale"
T = TypeVar("T")


class _Skip(Exception):
    """Raised inside a turn that must write nothing (a reminder for a run that moved on)."""


@dataclass(frozen=True)
class Handled:
    """What became of an inbound message."""

    accepted: bool  # False when it was a duplicate and nothing was done
    status: str | None = None  # the participant's current run status afterwards


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
        role_of: Callable[[str], Awaitable[str | None]] | None = None,
        router: Router | None = None,
        # What a finished guide offers (a cohort's keep-in-touch question): the cohorts
        # feature plugs it in; None offers nothing.
        offer: Callable[[Turn, str, str], Awaitable[None]] | None = None,
        locks: ConversationLocks | None = None,
    ) -> None:
        self.storage = storage
        self.library = library
        self.identity = identity
        self.phrases = phrases
        self.clock = clock
        self.new_id = new_id
        self.max_answer_chars = max_answer_chars
        self.on_commit = on_commit
        self.voice = Voice(phrases, identity)
        self._role_of = role_of or _nobody
        self._offer = offer
        self._locks: ConversationLocks = locks or KeyedLocks()
        self._flows: dict[str, Flow] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.router = router or Router()
        self._declare_own()
        self.fanout = Fanout(self)

    def _declare_own(self) -> None:
        """The commands of the conversation itself: guides, and the guide's own."""
        self.router.command("start", self._start_command, usage="[guide]", listed=False)
        self.router.command("guides", self._guides_command)
        for own in GUIDE_COMMANDS.values():  # the engine answers them
            self.router.command(
                own.name, None, after_close=own.after_end, listed=own.listed, usage=own.usage
            )
        self.router.button(GUIDE_MENU_STEP, self._start_guide_tapped)

    def plug(
        self,
        *,
        role_of: Callable[[str], Awaitable[str | None]] | None = None,
        offer: Callable[[Turn, str, str], Awaitable[None]] | None = None,
    ) -> None:
        """Plug in what features provide (from the composition root)."""
        if role_of is not None:
            self._role_of = role_of
        if offer is not None:
            self._offer = offer

    # One turn ----------------------------------------------------------------

    async def _take_turn(
        self,
        participant_id: str,
        key: str | None,
        act: Callable[[Turn], Awaitable[T]],
        *,
        inbound: Inbound | None = None,
        actor: str | None = None,
        not_before: datetime | None = None,
        commit: Commit | None = None,
        need_person: bool = False,
    ) -> tuple[bool, T | None]:
        """Lock, load, act, commit once, then wake delivery and start what comes after.

        The one way anything happens in a conversation. `act` fills the turn's commit;
        it raises `_Skip` to write nothing. Returns whether the turn was taken (False:
        a duplicate, or skipped, or storage refused the commit) and what `act` returned.
        """
        seen_key = self._seen_key(key)
        async with self._locks.hold(participant_id) as held:
            for again in (False, True):
                loaded = await self.storage.conversation(participant_id, seen_key)
                person = loaded.participant
                if loaded.seen:
                    return False, None
                if need_person and (person is None or person.unreachable):
                    return False, None
                if inbound is None:
                    assert person is not None
                    said = Inbound(person.channel, "", "", key=key, language=person.language)
                    address = person.address
                else:
                    said = inbound
                    address = self.identity.reseal(
                        inbound.address, person.address if person else None
                    )
                turn = Turn(
                    self.voice,
                    said,
                    participant_id,
                    person,
                    self.clock(),
                    address,
                    commit or Commit(),
                    loaded.run,
                    actor=actor or participant_id,
                    not_before=not_before,
                )
                turn.commit.inbound_key = seen_key
                # Written only while they are still kept: see `Commit.still_kept`.
                turn.commit.still_kept = None if person is None else person.id
                try:
                    result = await act(turn)
                except _Skip:
                    return False, None
                for closing in turn.closing:
                    closing(turn)
                self._keep_pending(turn)
                # A turn that changed nothing (a nudge for a room already caught up) writes
                # nothing, and wakes nobody.
                if _empty(turn.commit):
                    break
                await held.check()  # nobody else's turn of this conversation is under way
                if await self.storage.commit(turn.commit):
                    break
                if again or commit is not None or turn.commit.take_record is None:
                    return False, None
                # What the turn used up (an invitation code) was taken by someone else's
                # turn, on any instance, between its read and its commit, and nothing was
                # written: taken again from a fresh read, the turn tells them so (the
                # code is used) instead of leaving them with no answer at all.
        if turn.commit.outbox:
            self.on_commit()
        for then in turn.after:  # work for other people's conversations, under their locks
            task = asyncio.create_task(then())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return True, result

    def _keep_pending(self, turn: Turn) -> None:
        """Write down a bot-level question asked (or answered) in this turn, on the
        participant's row. Someone with no row yet is not given one for a question: with
        no run of theirs, whatever they type next is read against the guides' menu."""
        if turn.pending is None:
            return
        pending = turn.pending or None
        row = turn.commit.participant
        if row is None:
            if turn.person is None or turn.person.pending == pending:
                return
            row = turn.person
        turn.commit.participant = dataclasses.replace(row, pending=pending)

    # The entry points ----------------------------------------------------------

    async def handle(self, inbound: Inbound) -> Handled:
        # In a group the bot answers the group itself, never a person in it.
        sender = f"chat:{inbound.address}" if inbound.group else inbound.user
        if inbound.text is not None and (cleaned := clean_text(inbound.text)) != inbound.text:
            inbound = dataclasses.replace(inbound, text=cleaned)
        try:
            accepted, status = await self._take_turn(
                self.identity.pseudonym(inbound.channel, sender),
                inbound.key,
                self._route,
                inbound=inbound,
                actor=self.identity.pseudonym(inbound.channel, inbound.user),
            )
        except STORAGE_FAILURES as error:
            raise NotStored(str(error)) from error
        return Handled(accepted, status if accepted else None)

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

        async def act(turn: Turn) -> None:
            await self._start_guide(turn, guide_id, scheduled=True)
            if not self._delivered(turn, key, schedule_id, guide_id):
                raise _Skip

        sent, _ = await self._take_turn(
            participant_id, key, act, not_before=not_before, need_person=True
        )
        return sent

    def _prompt_turn(
        self, person: ParticipantRow, key: str, run: RunRow | None, now: datetime,
        not_before: datetime | None,
    ) -> Turn:  # fmt: skip
        """A scheduled prompt, handled as a message with no text whose key makes it once
        (the fan-out builds these for a whole chunk, under the chunk's locks)."""
        inbound = Inbound(person.channel, "", "", key=key, language=person.language)
        # Written only while they are still kept, as a message's turn (`Commit.still_kept`):
        # an operator's erasure under way while the chunk was written brought them back,
        # prompted (found by review).
        commit = Commit(inbound_key=self._seen_key(key), still_kept=person.id)
        return Turn(self.voice, inbound, person.id, person, now, person.address, commit, run,
                    actor=person.id, not_before=not_before)  # fmt: skip

    @staticmethod
    def _delivered(turn: Turn, key: str, schedule_id: str, guide_id: str) -> bool:
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
        `bot/conversation/fanout.py`), with the same guarantees as one `prompt` at a time.
        """
        return await self.fanout.prompt_many(prompts, schedule_id, guide_id, not_before)

    async def remind(self, delivery: DeliveryRow, not_before: datetime | None = None) -> bool:
        """Nudge someone who has not finished a prompted guide; once per reminder."""

        async def act(turn: Turn) -> None:
            run_row = turn.run
            if run_row is None or run_row.id != delivery.run_id:
                raise _Skip  # they have moved on to another conversation
            turn.commit.reminded = delivery.key
            flow = await self._flow(run_row.guide_hash)
            state = RunState.model_validate_json(run_row.state)
            # A run that has expired stops its reminders: it is ended, silently.
            outcome = flow.resume(
                state, Timeout() if flow.expired(state, turn.now) else Remind(), turn.now
            )
            await self._record(turn, flow, outcome, None)

        key = f"remind:{delivery.key}:{delivery.reminders + 1}"
        sent, _ = await self._take_turn(
            delivery.participant, key, act, not_before=not_before, need_person=True
        )
        return sent

    async def send_to(self, participant_id: str, message: Outbound, key: str) -> bool:
        """A message for someone outside any conversation (a weekly digest), once per key."""

        async def act(turn: Turn) -> None:
            turn.send(message)

        sent, _ = await self._take_turn(participant_id, key, act, need_person=True)
        return sent

    async def nudge(self, participant_id: str, run_id: str, given: Input) -> None:
        """Move someone's current run on without a message from them (a paced gathering
        opening a question; later, the scheduler's timeouts)."""

        async def act(turn: Turn) -> None:
            run_row = turn.run
            if run_row is None or run_row.id != run_id:
                raise _Skip  # they have moved on to another conversation since
            if run_row.gathering is not None and await self._closed(run_row.gathering):
                # Closed while the room's nudges went round: what was said stays as it
                # was summarised, and nobody is asked another question.
                raise _Skip
            flow = await self._flow(run_row.guide_hash)
            state = RunState.model_validate_json(run_row.state)
            outcome = flow.resume(state, given, turn.now)
            # Someone it changes nothing for (moved on already) is left as they were:
            # not even when they last moved, which their run's expiry counts from.
            moved = outcome.state.model_copy(update={"updated_at": state.updated_at}) != state
            if outcome.events or moved:
                await self._record(turn, flow, outcome, None)

        await self._take_turn(participant_id, None, act, need_person=True)

    # Routing one message ---------------------------------------------------------

    async def _route(self, turn: Turn) -> str | None:
        inbound = turn.inbound
        command = inbound.command
        if command is not None:
            command = self.router.deep_link(command)
        tap = inbound.tap
        on_tap = self.router.button_for(tap.step) if tap is not None else None
        if tap is not None and on_tap is not None and not inbound.group:
            turn.pending = ""  # a bot-level question, answered by its button
            return await self._then_ask_again(turn, await on_tap(turn, tap.value))
        if command is None and tap is None and inbound.kind == "text" and not inbound.group:
            answered = self._typed_answer(turn)
            if answered is UNCLEAR:
                return None
            if answered is not None:
                on_tap = self.router.button_for(answered.step)
                if on_tap is not None:
                    return await self._then_ask_again(turn, await on_tap(turn, answered.value))
        if command is not None:
            declared = self.router.find(command[0])
            if declared is not None and declared.handler is not None:
                if inbound.group and not declared.in_groups:
                    self._group_intro(turn)
                    return None
                if not await self.router.allowed(declared, turn, self._role_of):
                    return None
                if turn.person is not None and turn.person.pending:
                    # Another command: the question asked before is no longer the one
                    # being answered (a "yes" typed later must not confirm an erasure).
                    turn.pending = ""
                status = await declared.handler(turn, command[1])
                if status != TO_GUIDE:
                    return await self._then_ask_again(turn, status)
        if inbound.group:
            self._group_intro(turn)
            return None
        if inbound.kind != "text":
            turn.say("edited" if inbound.kind == "edited" else "unsupported")
            return None
        run_row = turn.run
        if run_row is None:
            if command is None or command[0] != "stop":
                return await self._no_conversation(turn, command)
            return None
        if (
            command is not None
            and (own := GUIDE_COMMANDS.get(command[0])) is not None
            and own.after_end
            and RunStatus(run_row.status).ended
        ):
            # Their last conversation has ended: these mean the same with none under way
            # (/language es is kept, /help lists a role's commands), not "this
            # conversation is finished". /skip or /back still hear that it is.
            return await self._no_conversation(turn, command)
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
            if gathering is not None and not gathering.is_open:
                # Closed: what was said stays as it was summarised. Only leaving,
                # help and their own data remain.
                declared = self.router.find(command[0]) if command is not None else None
                if declared is None or not declared.after_close:
                    turn.say("gathering_closed", title=gathering.title)
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

    def _typed_answer(self, turn: Turn) -> Button | None:
        """What someone typed, read as the answer to the bot-level question they were
        asked last (a confirmation, an offer, a menu): its number, its label, or yes/no
        for a yes-or-no question. None if it answers none, and the question is no longer
        pending; UNCLEAR if it was a yes-or-no question and this is neither: asked to
        choose, it stays pending (its answer decides something, such as an erasure, that
        a stray word must never decide)."""
        person = turn.person
        buttons = buttons_of(person.pending if person is not None else None)
        if not buttons:
            return None
        yes_no = self.router.is_yes_no(buttons[0].step)
        picked = pick(buttons, turn.inbound.text or "", turn.voice.phrases, turn.language, yes_no)
        if picked is None and yes_no:
            turn.say("pending_unclear")
            return UNCLEAR
        turn.pending = ""
        return picked

    def _group_intro(self, turn: Turn) -> None:
        """Answers are never collected in a group: explain, and point to a private chat."""
        button = Button(turn.text("group_button"), "", "")
        turn.reply(Reply(turn.text("group_intro"), (button,)), link=turn.inbound.link)

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

    async def _start_command(self, turn: Turn, arg: str) -> str | None:
        if arg:
            return await self._start_guide(turn, arg)
        await self._menu(turn)
        return None

    async def _guides_command(self, turn: Turn, arg: str) -> str | None:
        await self._menu(turn)
        return None

    async def _start_guide_tapped(self, turn: Turn, guide_id: str) -> str | None:
        return await self._start_guide(turn, guide_id)

    # Starting and resuming guides --------------------------------------------

    async def start_guide(self, turn: Turn, guide_id: str) -> str | None:
        """Start a guide for the person of this turn (a feature's way in: joining a
        gathering starts its guide)."""
        return await self._start_guide(turn, guide_id)

    async def _start_guide(
        self, turn: Turn, guide_id: str, *, scheduled: bool = False
    ) -> str | None:
        """Start a guide, or carry on with the one already under way (from a gathering
        too, when the run joined through it is the one under way)."""
        loaded = self.library.get(guide_id.strip().lower())
        if loaded is None or loaded.guide is None:
            # Echo what they typed only scrubbed and short: it reaches the outbox on disk.
            turn.say("unknown_guide", guide=scrub(guide_id)[:40])
            await self._menu(turn)
            return None
        existing = await self.storage.open_run(turn.participant_id, loaded.guide.id)
        return await self._carry_on_or_begin(turn, loaded, existing, scheduled=scheduled)

    async def _carry_on_or_begin(
        self, turn: Turn, loaded: LoadedGuide, existing: RunRow | None, *, scheduled: bool
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
        self, turn: Turn, existing: RunRow | None, *, scheduled: bool
    ) -> Outcome | None:
        """Welcome someone back to `existing`, recorded in the turn's commit; or end it, if
        it has expired. None if there is no run to carry on with (none, or one from
        another gathering than the one they are joining)."""
        joining = turn.gathering.id if turn.gathering is not None else None
        if existing is None or (joining is not None and existing.gathering != joining):
            return None
        if (
            existing.gathering is not None
            and existing.gathering != joining
            and await self._closed(existing.gathering)
        ):
            # Its gathering has closed: what was said there stays as summarised, and the
            # guide begins afresh, on their own (found by review: it was resumed, only to
            # be refused, again and again).
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

    async def _begin(self, turn: Turn, loaded: LoadedGuide, run_id: str) -> Outcome:
        """A new run of a guide: the engine's start, recorded in the turn's commit."""
        flow = self._flow_for(loaded)
        wanted = turn.language
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

    async def _closed(self, gathering_id: str) -> bool:
        """Whether a run's gathering no longer takes answers (closed, or gone)."""
        held = await self.storage.gathering(gathering_id)
        return held is None or not held.is_open

    async def _flow(self, guide_hash: str) -> Flow:
        """The flow a run is pinned to: the current guide file, or the stored older text."""
        if guide_hash not in self._flows:
            loaded = self.library.by_hash(guide_hash)
            if loaded is None:
                source = await self.storage.guide_source(guide_hash)
                if source is None:
                    raise LookupError(f"no guide with hash {guide_hash}")
                loaded = parse_stored_guide(source, f"stored guide {guide_hash}")
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
        self, turn: Turn, flow: Flow, outcome: Outcome, new: LoadedGuide | None
    ) -> None:
        state = outcome.state
        commit = turn.commit
        guide = flow.guide
        if turn.pending is None:
            turn.pending = ""  # the guide speaks: any bot-level question is behind it now
        if new is not None:
            commit.guide_source = GuideSourceRow(new.hash, guide.id, guide.version, new.source)
        for event in outcome.events:
            match event:
                case Reply():
                    edit = turn.inbound.message_ref if event.update else None
                    turn.reply(event, state.run_id, edit=edit)
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
        finished = any(
            isinstance(e, RunEnded) and e.status is RunStatus.FINISHED for e in outcome.events
        )
        if finished and guide.keep_in_touch is not None and self._offer is not None:
            await self._offer(turn, guide.keep_in_touch, state.language)
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

    @staticmethod
    def _tapped(turn: Turn, step: str) -> bool:
        tap = turn.inbound.tap
        return tap is not None and tap.step == step and turn.inbound.message_ref is not None

    def _answered(self, turn: Turn, step: str, display: str, asked: str) -> OutboxRow:
        """Mark the tapped question as answered, so its buttons can't change it again."""
        message = Outbound(
            text=display, input="answered", step=step, edit=turn.inbound.message_ref, asked=asked
        )
        return turn.row(message)

    # Messages outside a run ----------------------------------------------------

    async def _menu(self, turn: Turn) -> None:
        turn.ask(self._menu_reply(turn.language, await self._role_of(turn.actor)))

    def _menu_reply(self, language: str, role: str | None) -> Reply:
        """The guides someone may pick: those for everyone, and for anyone whose role has
        commands of its own (a facilitator, coordinator or admin) also those for
        facilitators (a host's report after a gathering)."""
        staff = role is not None and bool(self.router.for_role(role))
        guides = [
            loaded.guide
            for loaded in self.library.all()
            if loaded.guide is not None and (loaded.guide.audience == "everyone" or staff)
        ]
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
        try:
            person = await self.storage.participant(participant_id)
            runs = await self.storage.open_runs(participant_id) if person else []
        except STORAGE_FAILURES as error:
            raise NotStored(str(error)) from error
        language = (person.language if person else None) or inbound.language or "en"
        sections = [Reply(self.phrases.text(language, "home_intro"))]
        unfinished = []
        for run in runs:
            loaded = self.library.get(run.guide_id)
            if loaded is not None and loaded.guide is not None:
                title = localize(loaded.guide.title, language, loaded.guide.default_language)
                unfinished.append(Button(title, GUIDE_MENU_STEP, run.guide_id))
        if unfinished:
            text = self.phrases.text(language, "home_unfinished")
            sections.append(Reply(text, tuple(unfinished), InputKind.CHOICE, step=GUIDE_MENU_STEP))
        sections.append(self._menu_reply(language, await self._role_of(participant_id)))
        return [Outbound.from_reply(reply, None) for reply in sections]

    async def _no_conversation(self, turn: Turn, command: tuple[str, str] | None) -> str | None:
        """Someone with no conversation under way: help if asked; a language chosen; a
        guide if what they typed names one on the menu (its number or title); otherwise
        the menu."""
        name = command[0] if command is not None else None
        if name in ("help", "privacy"):
            turn.say(name)
            if name == "help":
                await self._help_for_role(turn)
            return None
        if name == "language" and command is not None and not self._language(turn, command[1]):
            return None
        menu = self._menu_reply(turn.language, await self._role_of(turn.actor))
        if command is None and turn.inbound.tap is None:
            picked = pick(list(menu.buttons), turn.inbound.text or "", self.phrases, turn.language)
            if picked is not None:
                return await self._start_guide(turn, picked.value)
        turn.ask(menu)  # the role read once for both
        return None

    async def _then_ask_again(self, turn: Turn, status: str | None) -> str | None:
        """After a feature answered in the middle of a guide (their data, a check-in
        setting, "nothing was erased"), the question they are at again, so they know
        where they were (it was left unasked; found by review). Not when the feature
        began, ended or erased a run, asked a question of its own, or spoke to a room."""
        run = turn.run
        if (
            run is None
            or turn.inbound.group
            or turn.pending
            or turn.commit.runs
            or turn.commit.forget is not None
            or RunStatus(run.status).ended
        ):
            return status
        if run.gathering is not None and await self._closed(run.gathering):
            return status  # answers there are closed: nothing to ask
        flow = await self._flow(run.guide_hash)
        state = RunState.model_validate_json(run.state)
        asked = None if flow.expired(state, turn.now) else flow.asking(state)
        if asked is not None:
            turn.reply(asked, state.run_id)
        return status

    async def _help_for_role(self, turn: Turn) -> None:
        """After /help's list, the commands this person's role gives them (a facilitator's
        /launch, /status, /close...), which the list for everyone leaves out."""
        role = await self._role_of(turn.actor)
        extra = self.router.for_role(role) if role else []
        if extra:
            lines = [f"/{c.name} {turn.text(c.help_key)}" for c in extra]
            turn.reply(Reply("\n".join([turn.text(f"help_as_{role}"), *lines])))

    def _language(self, turn: Turn, wanted: str) -> bool:
        """/language outside a conversation: the bot speaks the language named from now
        on (kept with how to reach them), and says so; False, having listed the languages
        it speaks, if none was named (it once only showed the menu, in the old one)."""
        key = fold_answer(wanted)
        codes = self.phrases.languages
        chosen = next(
            (code for number, code in enumerate(codes, start=1)
             if key and key in (code, str(number), fold_answer(self.phrases.language_name(code)))),
            None,
        )  # fmt: skip
        if chosen is None:
            listed = ", ".join(f"{self.phrases.language_name(c)} ({c})" for c in codes)
            turn.say("language_options", languages=listed)
            return False
        turn.keep_address()
        if turn.commit.participant is not None:
            turn.commit.participant = dataclasses.replace(turn.commit.participant, language=chosen)
            turn.person = turn.commit.participant
        turn.say("language_kept")
        return True


# What `_typed_answer` gives for a yes-or-no question answered with neither.
UNCLEAR = Button("", "", "")


def pick(
    buttons: list[Button], typed: str, phrases: Phrasebook, language: str, yes_no: bool = False
) -> Button | None:
    """The button someone meant by what they typed: its number, its label, or, for a
    yes-or-no question (`yes_no`: two buttons, the first is yes), yes or no."""
    key = fold_answer(typed)  # "Yes!" is yes
    if not key:
        return None
    for number, button in enumerate(buttons, start=1):
        if key in (str(number), fold_answer(button.label)):
            return button
    if yes_no and len(buttons) == 2:
        meant = phrases.yes_or_no(language, typed)
        if meant is not None:
            return buttons[0] if meant else buttons[1]
    return None


def _empty(commit: Commit) -> bool:
    """A commit that writes nothing at all (a condition on writing is not a write)."""
    return commit == Commit(still_kept=commit.still_kept)


async def _nobody(_: str) -> str | None:
    return None
