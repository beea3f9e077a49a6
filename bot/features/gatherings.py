"""Facilitated gatherings: a host launches a guide for a room, watches it fill, closes it.

This is the dispatcher's handling of the facilitator's commands, kept apart for
size: `/launch`, `/join`, `/status`, `/next`, `/close`, `/summary`, `/qr` and
`/redeem`. Like the dispatcher, it only adds rows to the turn's commit (one
transaction); work on other people's runs (opening the next question for a paced
room) happens after that commit, each under that person's own lock. An opening is
written down in the commit that makes it (a record) and crossed off once everyone has
it: if the process stops part-way, the scheduler's next tick, on any instance, does
the rest (`open_left_over`), so nobody in the room waits for a question that came.

The same decisions serve the console (`bot/console/gatherings.py`): the service methods
below the chat commands (`open_gathering`, `advance`, `close`, `status`, `summary`,
`may_run`, `may_read_summary`) take a pseudonym and write their own commit, where the
commands add to the turn's.

Who may do what:
- only facilitators and admins launch;
- only the gathering's own facilitator, or an admin, checks, paces or closes it;
- coordinators (and admins, and its facilitator) may read any gathering's summary;
- participants only ever see their own answers.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shlex
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.conversation.router import Router
from bot.conversation.turn import Turn
from bot.features.roles import (
    ADMIN,
    COORDINATOR,
    FACILITATOR,
    WRONG_CODES_OVERALL,
    WRONG_CODES_PER_PERSON,
    WRONG_CODES_WINDOW,
    Roles,
    new_code,
    normal_code,
)
from bot.flows.events import Button, Input, Open, Reply
from bot.flows.scrub import scrub
from bot.flows.text import localize
from bot.messages import Outbound, OutButton
from bot.reports.render import Reports
from bot.reports.summary import Progress, Summary, progress, summarize
from storage.rows import Commit, GatheringRow, RecordRow, WrongCodeRow

if TYPE_CHECKING:
    from datetime import datetime

    from bot.features.cohorts import Cohorts
    from bot.library import GuideLibrary
    from storage.protocol import Storage

log = logging.getLogger(__name__)

# What the conversation core does for gatherings: start a guide for someone (joining
# through the gathering), and move someone's run on (a paced room's next question).
StartGuide = Callable[[Turn, str], Awaitable[str | None]]
Nudge = Callable[[str, str, Input], Awaitable[None]]
NewId = Callable[[], str]

OPENING = "opening"  # a record: a question opened to a paced room, until everyone has it
# An opening left over longer than this is given up: those still waiting catch up when
# they next type, as anyone does who joins late.
OPENING_LASTS = timedelta(hours=6)
# The process that opened a question has this long to cross it off before a tick, on
# any instance, takes it for left over (doing it again is harmless: only slower).
OPENING_GRACE = timedelta(minutes=1)
JOIN_STEP = "_join"
STATUS_STEP = "_status"
JOIN_CODE_LENGTH = 6
HOSTS = (FACILITATOR, ADMIN)  # who may launch a gathering
PRIVATE_REPLIES = {"not_your_gathering", "only_facilitators", "summary_refused", "no_gathering",
                   "gathering_needs_code", "not_paced", "launch_usage", "unknown_guide"}  # fmt: skip


class Gatherings:
    def __init__(
        self,
        storage: Storage,
        library: GuideLibrary,
        roles: Roles,
        reports: Reports,
        cohorts: Cohorts,
        *,
        start_guide: StartGuide,
        nudge: Nudge,
        new_id: NewId,
        min_group: int = 5,
        code_lasts: timedelta = timedelta(days=7),
    ) -> None:
        self.storage = storage
        self.library = library
        self.roles = roles
        self.reports = reports
        self.cohorts = cohorts
        self.start_guide = start_guide
        self.nudge = nudge
        self.new_id = new_id
        self.min_group = min_group
        self.code_lasts = code_lasts

    def register(self, router: Router) -> None:
        router.command("launch", self._launch_command, roles=HOSTS, in_groups=True,
                       usage="GUIDE [title] [--paced]")  # fmt: skip
        router.command("join", self._join_command, usage="CODE", deep_link=True)
        router.command("redeem", self._redeem_command, usage="CODE", deep_link=True, listed=False)
        for name in ("status", "next", "close", "summary", "qr"):
            handler = functools.partial(self._gathering_command, name)
            # The host's own: told to them when they launch, not in everyone's help.
            readers = (*HOSTS, COORDINATOR) if name == "summary" else HOSTS
            router.command(name, handler, in_groups=True, usage="[CODE]", listed=False,
                           help_for=readers)  # fmt: skip
        router.button(JOIN_STEP, self._join_tapped)
        router.button(STATUS_STEP, self._refresh)

    # Entry points ------------------------------------------------------------------

    async def _launch_command(self, turn: Turn, arg: str) -> str | None:
        words, flags = _split(arg)
        await self._launch(turn, words, paced="--paced" in flags)
        return None

    async def _join_command(self, turn: Turn, arg: str) -> str | None:
        words, _ = _split(arg)
        return await self.join(turn, "".join(words))  # "K7M 2QP" is one code

    async def _redeem_command(self, turn: Turn, arg: str) -> str | None:
        words, _ = _split(arg)
        await self._redeem(turn, words)
        return None

    async def _join_tapped(self, turn: Turn, code: str) -> str | None:
        return await self.join(turn, code)

    async def _gathering_command(self, name: str, turn: Turn, arg: str) -> str | None:
        words, flags = _split(arg)
        gathering = await self._find(turn, words[0] if words else None, name)
        if gathering is None:
            return None
        if name == "summary":
            await self._summary(turn, gathering)
        elif not await self._may_run(turn, gathering):
            self._say(turn, "not_your_gathering")
        elif name == "status":
            await self._status(turn, gathering)
        elif name == "next":
            await self._next(turn, gathering)
        elif name == "close":
            await self._close(turn, gathering, share="--share" in flags)
        elif name == "qr":
            self._qr(turn, gathering)
        return None

    async def _refresh(self, turn: Turn, gathering_id: str) -> str | None:
        """The Refresh button under a status: redraw it in place."""
        gathering = await self.storage.gathering(gathering_id)
        if gathering is not None and await self._may_run(turn, gathering):
            await self._status(turn, gathering, edit=turn.inbound.message_ref)
        return None

    async def join(self, turn: Turn, code: str) -> str | None:
        if not code:
            self._say(turn, "join_needs_code")  # "didn't work" for a code never sent
            return None
        gathering = await self.storage.gathering_by_code(normal_code(code))
        if gathering is None:
            # Not a gathering: perhaps a cohort's code, for scheduled check-ins.
            if not await self.cohorts.join(turn, code):
                self._say(turn, "join_unknown")
            return None
        if not gathering.is_open or turn.now >= gathering.expires_at:
            self._say(turn, "join_closed", title=gathering.title)
            return None
        runs = await self.storage.gathering_runs(gathering.id)
        if any(r.participant == turn.participant_id and r.status == "finished" for r in runs):
            self._say(turn, "join_already", title=gathering.title)  # one voice each
            return None
        turn.gathering = gathering
        return await self.start_guide(turn, gathering.guide_id)

    # The commands ------------------------------------------------------------------

    async def _redeem(self, turn: Turn, words: list[str]) -> None:
        if not words:
            self._say(turn, "redeem_needs_code")  # not a wrong code: none was sent
            return
        since = turn.now - WRONG_CODES_WINDOW
        tried = await self.storage.wrong_codes(turn.actor, since)
        if tried.theirs >= WRONG_CODES_PER_PERSON:
            self._say(turn, "redeem_later")  # not even checked: they are guessing
            return
        role = await self.roles.invitation(words[0])
        if role is None:
            if tried.everyone >= WRONG_CODES_OVERALL:
                self._say(turn, "redeem_later")
                return
            if tried.everyone + 1 == WRONG_CODES_OVERALL:
                log.warning("%d wrong invitation codes in an hour: someone may be guessing",
                            WRONG_CODES_OVERALL)  # fmt: skip
            # Counted in the turn's own commit: several instances share it.
            turn.commit.wrong_code = WrongCodeRow(turn.actor, turn.now, since)
            self._say(turn, "redeem_failed")
            return
        # The code is used up and the role granted in the turn's one commit: a failure
        # between the two can neither burn the code nor grant without it.
        self.roles.grant(turn.commit, words[0], turn.actor, role)
        # Keep how to reach them (sealed), for digests and gathering summaries.
        turn.keep_address()
        self._say(turn, f"redeemed_{role}")

    async def _launch(self, turn: Turn, words: list[str], paced: bool) -> None:
        if not words:
            self._say(turn, "launch_usage")
            return
        loaded = self.library.get(words[0].lower())
        if loaded is None or loaded.guide is None:
            self._say(turn, "unknown_guide", guide=scrub(words[0])[:40])
            return
        guide = loaded.guide
        language = self._language(turn)
        # Titles are shown to rooms and kept: scrubbed like any free text.
        title = scrub(" ".join(words[1:]))[:80] or localize(
            guide.title, language, guide.default_language
        )
        private = turn.inbound.private or turn.inbound.address
        gathering = GatheringRow(
            self.new_id(), await self._free_code(), guide.id, title, turn.actor,
            turn.inbound.channel, turn.sealed_address, turn.voice.identity.seal(private), paced,
            1 if paced else 0, "open", turn.now, turn.now + self.code_lasts,
            place=turn.participant_id,
        )  # fmt: skip
        code = gathering.code
        turn.commit.gathering = gathering
        invite = turn.text("gathering_invite", title=title, code=code)
        if turn.inbound.group:
            # The room gets a Join button: a deep link on Telegram, a click on Slack.
            button = Button(turn.text("join_button"), JOIN_STEP, code)
            link = f"{turn.inbound.link}?start=join-{code}" if turn.inbound.link else None
            turn.reply(Reply(invite, (button,)), link=link)
            self._to_facilitator(turn, gathering, self._text(turn, "launched", code=code))
        else:
            launched = self._text(turn, "launched", code=code)
            self._say_text(turn, f"{invite}\n\n{launched}")

    async def _status(self, turn: Turn, gathering: GatheringRow, edit: str | None = None) -> None:
        report = await self.status(gathering)
        if report is None:
            return
        language = self._language(turn)
        refresh = OutButton(label=turn.text("refresh"), step=STATUS_STEP, value=gathering.id)
        message = Outbound(
            text=self.reports.render("status", "text", language, p=report),
            markup=self.reports.every_format("status", language, p=report),
            buttons=[refresh],
            input="choice",
            edit=edit,
        )
        self._to_facilitator(turn, gathering, message, here=edit is not None)

    async def _next(self, turn: Turn, gathering: GatheringRow) -> None:
        step = self._next_part(gathering)
        if isinstance(step, str):
            self._say(turn, step, title=gathering.title)
            return
        part, last = step
        turn.commit.gathering_part = (gathering.id, part)
        turn.commit.records.append(_opening(gathering.id, part, turn.now))
        self._say(turn, "next_opened", number=part, total=last)
        turn.after.append(functools.partial(self._open_for_everyone, gathering.id, part))

    async def _close(self, turn: Turn, gathering: GatheringRow, share: bool) -> None:
        if gathering.is_open:
            turn.commit.gathering_closed = (gathering.id, turn.now)
            gathering = _changed(gathering, status="closed", closed_at=turn.now)
        summary = await self._summary_message(turn, gathering)
        if summary is None:
            return
        self._to_facilitator(turn, gathering, summary)
        in_room = gathering.place != gathering.facilitator  # launched in a group or channel
        if share and in_room:
            room = turn.voice.identity.pseudonym(gathering.channel, f"gathering:{gathering.id}")
            turn.send_to(gathering.channel, room, gathering.address, summary)
            if turn.inbound.group:
                # Said after the summary, in its queue: as the room's own reply it raced
                # it, and came first once delivery looked at whom a summary quotes.
                said = Outbound(text=turn.text("closed_shared", title=gathering.title))
                turn.send_to(gathering.channel, room, gathering.address, said)
            return
        if turn.inbound.group:
            self._say(turn, "closed_shared" if share else "closed", title=gathering.title)

    async def _summary(self, turn: Turn, gathering: GatheringRow) -> None:
        """Always privately: sharing with the room is `/close --share`."""
        if not await self.may_read_summary(turn.actor, gathering):
            self._say(turn, "summary_refused")
            return
        summary = await self._summary_message(turn, gathering)
        if summary is not None:
            self._to_facilitator(turn, gathering, summary)

    def _qr(self, turn: Turn, gathering: GatheringRow) -> None:
        link = f"{turn.inbound.link}?start=join-{gathering.code}" if turn.inbound.link else None
        text = self._text(turn, "qr_caption", title=gathering.title, code=gathering.code)
        turn.send(Outbound(text=text, qr=link or f"/join {gathering.code}"))

    # The service: for the console, as for the commands above -----------------------

    async def may_launch(self, who: str) -> bool:
        return await self.roles.role_of(who) in HOSTS

    async def may_run(self, who: str, gathering: GatheringRow) -> bool:
        """Check, pace or close it: its own facilitator, or an admin."""
        return who == gathering.facilitator or await self.roles.role_of(who) == ADMIN

    async def may_read_summary(self, who: str, gathering: GatheringRow) -> bool:
        """Coordinators read any gathering's summary; its facilitator, once it has closed
        (a summary asked for again as each person joins would show that person's
        answers)."""
        role = await self.roles.role_of(who)
        owner = who == gathering.facilitator and not gathering.is_open
        return role in (COORDINATOR, ADMIN) or owner

    async def open_gathering(
        self, who: str, guide_id: str, title: str, paced: bool, language: str, now: datetime
    ) -> GatheringRow | None:
        """Launch a guide from outside a chat (the console): its place is the
        facilitator's own, as when launched in a private chat, and people join by its
        code or link. None if `who` may not launch or there is no such guide."""
        loaded = self.library.get(guide_id.lower())
        if loaded is None or loaded.guide is None or not await self.may_launch(who):
            return None
        guide = loaded.guide
        title = scrub(" ".join(title.split()))[:80] or localize(
            guide.title, language, guide.default_language
        )
        person = await self.storage.participant(who)  # how their chat is reached, if kept
        channel, address = (person.channel, person.address) if person else ("console", b"")
        gathering = GatheringRow(
            self.new_id(), await self._free_code(), guide.id, title, who, channel, address,
            address, paced, 1 if paced else 0, "open", now, now + self.code_lasts, place=who,
        )  # fmt: skip
        await self.storage.commit(Commit(gathering=gathering))
        return gathering

    async def advance(
        self, who: str, gathering: GatheringRow, now: datetime
    ) -> tuple[int, int] | str:
        """Next: open one more question to everyone in a paced gathering. (the part now
        open, how many there are), or why not: a phrase key (`not_your_gathering`,
        `not_paced`, `gathering_closed`)."""
        if not await self.may_run(who, gathering):
            return "not_your_gathering"
        step = self._next_part(gathering)
        if isinstance(step, str):
            return step
        opened = Commit(
            gathering_part=(gathering.id, step[0]), records=[_opening(gathering.id, step[0], now)]
        )
        await self.storage.commit(opened)
        await self._open_for_everyone(gathering.id, step[0])
        return step

    async def close(self, who: str, gathering: GatheringRow, now: datetime) -> GatheringRow | None:
        """Close it (its code stops working); None if `who` may not."""
        if not await self.may_run(who, gathering):
            return None
        if gathering.is_open:
            await self.storage.commit(Commit(gathering_closed=(gathering.id, now)))
            gathering = _changed(gathering, status="closed", closed_at=now)
        return gathering

    async def status(self, gathering: GatheringRow) -> Progress | None:
        """Who joined, is answering, finished, and how many are at each step."""
        loaded = self.library.get(gathering.guide_id)
        if loaded is None or loaded.guide is None:
            return None
        runs = await self.storage.gathering_runs(gathering.id)
        part = gathering.part if gathering.paced else None
        return progress(loaded.guide, gathering.title, gathering.code, gathering.status, part, runs)

    async def summary(self, gathering: GatheringRow, language: str) -> Summary | None:
        """What the room said, by the minimum-group rule (render it with `Reports`)."""
        loaded = self.library.get(gathering.guide_id)
        if loaded is None or loaded.guide is None:
            return None
        runs = await self.storage.gathering_runs(gathering.id)
        answers = await self.storage.gathering_answers(gathering.id)
        return summarize(
            loaded.guide, language, gathering.title, runs, answers, self.min_group, gathering.id
        )

    # Helpers -----------------------------------------------------------------------

    async def _find(self, turn: Turn, code: str | None, command: str) -> GatheringRow | None:
        """The gathering named by its code, or else the latest one launched here."""
        if code:
            found = await self.storage.gathering_by_code(normal_code(code))
        else:
            found = await self.storage.latest_gathering(turn.actor, turn.participant_id)
            if found is not None and turn.group and found.place != turn.participant_id:
                # Typed in a room with no gathering of its own: /close or /next here must
                # not act on the facilitator's gathering in another room.
                found = None
        if found is None and code:
            self._say(turn, "no_gathering")
        elif found is None:  # none launched here: which one did they mean?
            self._say(turn, "gathering_needs_code", command=command)
        return found

    async def _may_run(self, turn: Turn, gathering: GatheringRow) -> bool:
        return await self.may_run(turn.actor, gathering)

    async def _free_code(self) -> str:
        code = new_code(JOIN_CODE_LENGTH)
        while await self.storage.gathering_by_code(code) is not None:
            code = new_code(JOIN_CODE_LENGTH)
        return code

    def _next_part(self, gathering: GatheringRow) -> tuple[int, int] | str:
        """(the part to open up to, how many questions there are), or why not (a key)."""
        loaded = self.library.get(gathering.guide_id)
        if not gathering.paced or loaded is None or loaded.guide is None:
            return "not_paced"
        if not gathering.is_open:
            return "gathering_closed"
        last = len(loaded.guide.questions)
        return min(gathering.part + 1, last), last

    async def _open_for_everyone(self, gathering_id: str, part: int) -> bool:
        """Open question `part` for everyone answering (each person's run moves under
        their own lock; someone moved on already is left as they are), then cross the
        opening off, unless it failed for someone (then a tick tries again). Run once
        the opening is committed. Whether everyone has it."""
        runs = await self.storage.gathering_runs(gathering_id)
        everyone = True
        for run in runs:
            if run.status not in ("active", "consent"):
                continue
            try:
                await self.nudge(run.participant, run.id, Open(part))
            except Exception:  # one person's trouble must not hold the room back
                log.exception("could not open the next question for one participant")
                everyone = False
        if everyone:
            await self.storage.delete_records(OPENING, _opening_key(gathering_id, part))
        return everyone

    async def open_left_over(self, now: datetime) -> None:
        """Finish the openings a process began and did not cross off (it stopped
        part-way): the scheduler's tick, on every instance. Each is claimed like a
        scheduled occurrence, so one instance takes it up (another, if that one stops
        too, once its lease has run out)."""
        for record in await self.storage.records_of(OPENING, now):
            assert record.expires_at is not None
            if record.expires_at - OPENING_LASTS > now - OPENING_GRACE:
                continue  # just opened: its process is most likely at it
            claim = (f"{OPENING}:{record.key}", "UTC", record.expires_at)
            if await self.storage.claim_occurrence(*claim, now, OPENING_GRACE) != "claimed":
                continue
            gathering_id, _, part = record.key.rpartition(":")
            gathering = await self.storage.gathering(gathering_id)
            if gathering is None or not gathering.is_open:  # closed since: as it was
                await self.storage.delete_records(OPENING, record.key)
            else:
                log.info("finishing a paced room's opening that a process left part-way")
                if not await self._open_for_everyone(gathering_id, int(part)):
                    continue  # someone still hasn't it: claimed again once the lease ends
            await self.storage.finish_occurrence(*claim, "sent")

    async def _summary_message(self, turn: Turn, gathering: GatheringRow) -> Outbound | None:
        language = self._language(turn)
        summary = await self.summary(gathering, language)
        if summary is None:
            return None
        return Outbound(
            text=self.reports.render("summary", "text", language, s=summary),
            markup=self.reports.every_format("summary", language, s=summary),
            quoting=summary.quoting,
        )

    def _language(self, turn: Turn) -> str:
        return turn.language

    def _text(self, turn: Turn, key: str, **params: object) -> str:
        return turn.text(key, **params)

    def _say(self, turn: Turn, key: str, **params: object) -> None:
        if key in PRIVATE_REPLIES:
            # A refusal is for the person who asked, not for the whole room.
            turn.privately(turn.text(key, **params))
        else:
            turn.say(key, **params)

    def _say_text(self, turn: Turn, text: str) -> None:
        turn.reply(Reply(text))

    def _to_facilitator(
        self,
        turn: Turn,
        gathering: GatheringRow | None,
        message: Outbound | str,
        here: bool = False,
    ) -> None:
        """To the facilitator's own chat (or, for `here`, where they asked)."""
        if here:
            turn.send(Outbound(text=message) if isinstance(message, str) else message)
        else:
            turn.privately(message)


def _split(arg: str) -> tuple[list[str], set[str]]:
    """The words of a command's argument, and its --flags apart."""
    words = _words(arg)
    return [w for w in words if not w.startswith("--")], {w for w in words if w.startswith("--")}


def _words(arg: str) -> list[str]:
    try:
        return shlex.split(arg)
    except ValueError:  # an unbalanced quote: take the words as they are
        return arg.split()


def _changed(gathering: GatheringRow, **changes: object) -> GatheringRow:
    return dataclasses.replace(gathering, **changes)  # type: ignore[arg-type]


def _opening_key(gathering_id: str, part: int) -> str:
    return f"{gathering_id}:{part}"


def _opening(gathering_id: str, part: int, now: datetime) -> RecordRow:
    """The record of a question opened to a paced room, until everyone has it."""
    return RecordRow(OPENING, _opening_key(gathering_id, part), b"", now + OPENING_LASTS)
