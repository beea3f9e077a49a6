"""Facilitated gatherings: a host launches a guide for a room, watches it fill, closes it.

This is the dispatcher's handling of the facilitator's commands, kept apart for
size: `/launch`, `/join`, `/status`, `/next`, `/close`, `/summary`, `/qr` and
`/redeem`. Like the dispatcher, it only adds rows to the turn's commit (one
transaction); work on other people's runs (opening the next question for a paced
room) happens after that commit, each under that person's own lock.

Who may do what:
- only facilitators and admins launch;
- only the gathering's own facilitator, or an admin, checks, paces or closes it;
- coordinators (and admins, and its facilitator) may read any gathering's summary;
- participants only ever see their own answers.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.flows.events import Button, Open, Reply
from bot.flows.scrub import scrub
from bot.flows.text import localize
from bot.messages import Outbound, OutButton
from bot.reports import Reports
from bot.roles import (
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
from bot.summary import progress, summarize
from storage.rows import GatheringRow, OutboxRow, ParticipantRow, WrongCodeRow

if TYPE_CHECKING:
    from bot.dispatcher import Dispatcher, _Turn

log = logging.getLogger(__name__)

COMMANDS = {"launch", "join", "status", "next", "close", "summary", "qr", "redeem"}
IN_GROUPS = {"launch", "status", "next", "close", "summary", "qr"}
JOIN_STEP = "_join"
STATUS_STEP = "_status"
JOIN_CODE_LENGTH = 6
PRIVATE_REPLIES = {"not_your_gathering", "only_facilitators", "summary_refused", "no_gathering",
                   "not_paced", "launch_usage", "unknown_guide"}  # fmt: skip


class Gatherings:
    def __init__(
        self,
        dispatcher: Dispatcher,
        roles: Roles,
        reports: Reports,
        min_group: int = 5,
        code_lasts: timedelta = timedelta(days=7),
    ) -> None:
        self.d = dispatcher
        self.roles = roles
        self.reports = reports
        self.min_group = min_group
        self.code_lasts = code_lasts

    # Entry points from the dispatcher -----------------------------------------

    async def command(self, turn: _Turn, name: str, arg: str) -> str | None:
        words = _words(arg)
        flags = {w for w in words if w.startswith("--")}
        words = [w for w in words if not w.startswith("--")]
        if turn.inbound.group and name not in IN_GROUPS:
            self._say(turn, "group_intro")
            return None
        match name:
            case "redeem":
                await self._redeem(turn, words)
            case "join":
                return await self.join(turn, "".join(words))  # "K7M 2QP" is one code
            case "launch":
                await self._launch(turn, words, paced="--paced" in flags)
            case _:
                gathering = await self._find(turn, words[0] if words else None)
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

    async def refresh(self, turn: _Turn, gathering_id: str) -> None:
        """The Refresh button under a status: redraw it in place."""
        gathering = await self.d.storage.gathering(gathering_id)
        if gathering is not None and await self._may_run(turn, gathering):
            await self._status(turn, gathering, edit=turn.inbound.message_ref)

    async def join(self, turn: _Turn, code: str) -> str | None:
        gathering = await self.d.storage.gathering_by_code(normal_code(code)) if code else None
        if gathering is None:
            # Not a gathering: perhaps a cohort's code, for scheduled check-ins.
            if not (code and await self.d.cohorts.join(turn, code)):
                self._say(turn, "join_unknown")
            return None
        if gathering.status != "open" or turn.now >= gathering.expires_at:
            self._say(turn, "join_closed", title=gathering.title)
            return None
        runs = await self.d.storage.gathering_runs(gathering.id)
        if any(r.participant == turn.participant_id and r.status == "finished" for r in runs):
            self._say(turn, "join_already", title=gathering.title)  # one voice each
            return None
        turn.gathering = gathering
        return await self.d._start_guide(turn, gathering.guide_id)

    def refuse_late(self, turn: _Turn, gathering: GatheringRow) -> None:
        """An answer to a gathering that has closed: thank them, keep nothing."""
        self._say(turn, "gathering_closed", title=gathering.title)

    # The commands ------------------------------------------------------------------

    async def _redeem(self, turn: _Turn, words: list[str]) -> None:
        since = turn.now - WRONG_CODES_WINDOW
        theirs, everyone = await self.d.storage.wrong_codes(turn.actor, since)
        if theirs >= WRONG_CODES_PER_PERSON:
            self._say(turn, "redeem_later")  # not even checked: they are guessing
            return
        role = await self.roles.redeem(words[0], turn.actor) if words else None
        if role is None:
            if everyone >= WRONG_CODES_OVERALL:
                self._say(turn, "redeem_later")
                return
            if everyone + 1 == WRONG_CODES_OVERALL:
                log.warning("%d wrong invitation codes in an hour: someone may be guessing",
                            WRONG_CODES_OVERALL)  # fmt: skip
            if words:  # counted in the turn's own commit: several instances share it
                turn.commit.wrong_code = WrongCodeRow(turn.actor, turn.now, since)
            self._say(turn, "redeem_failed")
            return
        # Keep how to reach them (sealed), for digests and gathering summaries.
        if turn.commit.participant is None and not turn.inbound.group:
            person = turn.person or ParticipantRow(turn.actor, turn.inbound.channel, b"")
            turn.commit.participant = dataclasses.replace(person, address=turn.sealed_address)
        self._say(turn, f"redeemed_{role}")

    async def _launch(self, turn: _Turn, words: list[str], paced: bool) -> None:
        if await self.roles.role_of(turn.actor) not in (FACILITATOR, ADMIN):
            self._say(turn, "only_facilitators")
            return
        if not words:
            self._say(turn, "launch_usage")
            return
        loaded = self.d.library.get(words[0].lower())
        if loaded is None or loaded.guide is None:
            self._say(turn, "unknown_guide", guide=scrub(words[0])[:40])
            return
        guide = loaded.guide
        language = self._language(turn)
        # Titles are shown to rooms and kept: scrubbed like any free text.
        title = scrub(" ".join(words[1:]))[:80] or localize(
            guide.title, language, guide.default_language
        )
        code = new_code(JOIN_CODE_LENGTH)
        while await self.d.storage.gathering_by_code(code) is not None:
            code = new_code(JOIN_CODE_LENGTH)
        private = turn.inbound.private or turn.inbound.address
        gathering = GatheringRow(
            self.d.new_id(), code, guide.id, title, turn.actor, turn.inbound.channel,
            turn.sealed_address, self.d.identity.seal(private), paced, 1 if paced else 0,
            "open", turn.now, turn.now + self.code_lasts, place=turn.participant_id,
        )  # fmt: skip
        turn.commit.gathering = gathering
        invite = self.d.phrases.text(language, "gathering_invite", title=title, code=code)
        if turn.inbound.group:
            # The room gets a Join button: a deep link on Telegram, a click on Slack.
            button = Button(self.d.phrases.text(language, "join_button"), JOIN_STEP, code)
            link = f"{turn.inbound.link}?start=join-{code}" if turn.inbound.link else None
            turn.commit.outbox.append(self.d._outbox(turn, Reply(invite, (button,)), link=link))
            self._to_facilitator(turn, gathering, self._text(turn, "launched", code=code))
        else:
            launched = self._text(turn, "launched", code=code)
            self._say_text(turn, f"{invite}\n\n{launched}")

    async def _status(self, turn: _Turn, gathering: GatheringRow, edit: str | None = None) -> None:
        loaded = self.d.library.get(gathering.guide_id)
        if loaded is None or loaded.guide is None:
            return
        runs = await self.d.storage.gathering_runs(gathering.id)
        part = gathering.part if gathering.paced else None
        report = progress(
            loaded.guide, gathering.title, gathering.code, gathering.status, part, runs
        )
        language = self._language(turn)
        refresh = OutButton(
            label=self.d.phrases.text(language, "refresh"), step=STATUS_STEP, value=gathering.id
        )
        message = Outbound(
            text=self.reports.render("status", "text", language, p=report),
            markup=self.reports.every_format("status", language, p=report),
            buttons=[refresh],
            input="choice",
            edit=edit,
        )
        self._to_facilitator(turn, gathering, message, here=edit is not None)

    async def _next(self, turn: _Turn, gathering: GatheringRow) -> None:
        loaded = self.d.library.get(gathering.guide_id)
        if not gathering.paced or loaded is None or loaded.guide is None:
            self._say(turn, "not_paced")
            return
        if gathering.status != "open":
            self._say(turn, "gathering_closed", title=gathering.title)
            return
        last = len(loaded.guide.questions)
        part = min(gathering.part + 1, last)
        turn.commit.gathering_part = (gathering.id, part)
        self._say(turn, "next_opened", number=part, total=last)
        runs = await self.d.storage.gathering_runs(gathering.id)
        waiting = [(r.participant, r.id) for r in runs if r.status in ("active", "consent")]

        async def open_for_everyone() -> None:
            for participant, run_id in waiting:
                try:
                    await self.d.nudge(participant, run_id, Open(part))
                except Exception:  # one person's trouble must not hold the room back
                    log.exception("could not open the next question for one participant")

        turn.after.append(open_for_everyone)

    async def _close(self, turn: _Turn, gathering: GatheringRow, share: bool) -> None:
        if gathering.status == "open":
            turn.commit.gathering_closed = (gathering.id, turn.now)
            gathering = _changed(gathering, status="closed", closed_at=turn.now)
        summary = await self._summary_message(turn, gathering)
        if summary is None:
            return
        self._to_facilitator(turn, gathering, summary)
        in_room = gathering.place != gathering.facilitator  # launched in a group or channel
        if share and in_room:
            room = OutboxRow(
                gathering.channel,
                self.d.identity.pseudonym(gathering.channel, f"gathering:{gathering.id}"),
                gathering.address,
                summary.model_dump_json(exclude_defaults=True),
                turn.now,
            )
            turn.commit.outbox.append(room)
        if turn.inbound.group:
            self._say(turn, "closed_shared" if share else "closed", title=gathering.title)

    async def _summary(self, turn: _Turn, gathering: GatheringRow) -> None:
        """Coordinators read any gathering's summary; its facilitator, once it has closed
        (a summary asked for again as each person joins would show that person's
        answers). Always privately: sharing with the room is `/close --share`."""
        role = await self.roles.role_of(turn.actor)
        owner = turn.actor == gathering.facilitator and gathering.status != "open"
        if role not in (COORDINATOR, ADMIN) and not owner:
            self._say(turn, "summary_refused")
            return
        summary = await self._summary_message(turn, gathering)
        if summary is not None:
            self._to_facilitator(turn, gathering, summary)

    def _qr(self, turn: _Turn, gathering: GatheringRow) -> None:
        link = f"{turn.inbound.link}?start=join-{gathering.code}" if turn.inbound.link else None
        text = self._text(turn, "qr_caption", title=gathering.title, code=gathering.code)
        message = Outbound(text=text, qr=link or f"/join {gathering.code}")
        turn.commit.outbox.append(self.d._row(turn, message))

    # Helpers -----------------------------------------------------------------------

    async def _find(self, turn: _Turn, code: str | None) -> GatheringRow | None:
        """The gathering named by its code, or else the latest one launched here."""
        if code:
            found = await self.d.storage.gathering_by_code(normal_code(code))
        else:
            found = await self.d.storage.latest_gathering(turn.actor, turn.participant_id)
        if found is None:
            self._say(turn, "no_gathering")
        return found

    async def _may_run(self, turn: _Turn, gathering: GatheringRow) -> bool:
        return turn.actor == gathering.facilitator or await self.roles.role_of(turn.actor) == ADMIN

    async def _summary_message(self, turn: _Turn, gathering: GatheringRow) -> Outbound | None:
        loaded = self.d.library.get(gathering.guide_id)
        if loaded is None or loaded.guide is None:
            return None
        runs = await self.d.storage.gathering_runs(gathering.id)
        answers = await self.d.storage.gathering_answers(gathering.id)
        language = self._language(turn)
        summary = summarize(
            loaded.guide, language, gathering.title, runs, answers, self.min_group, gathering.id
        )
        return Outbound(
            text=self.reports.render("summary", "text", language, s=summary),
            markup=self.reports.every_format("summary", language, s=summary),
        )

    def _language(self, turn: _Turn) -> str:
        return self.d._language(turn, None)

    def _text(self, turn: _Turn, key: str, **params: object) -> str:
        return self.d.phrases.text(self._language(turn), key, **params)

    def _say(self, turn: _Turn, key: str, **params: object) -> None:
        text = self._text(turn, key, **params)
        if turn.inbound.group and key in PRIVATE_REPLIES:
            # A refusal is for the person who asked, not for the whole room.
            self._to_facilitator(turn, None, text)
            return
        self._say_text(turn, text)

    def _say_text(self, turn: _Turn, text: str) -> None:
        turn.commit.outbox.append(self.d._outbox(turn, Reply(text)))

    def _to_facilitator(
        self,
        turn: _Turn,
        gathering: GatheringRow | None,
        message: Outbound | str,
        here: bool = False,
    ) -> None:
        """To the facilitator's own chat (or, for `here`, where they asked)."""
        if isinstance(message, str):
            message = Outbound(text=message)
        if here or not turn.inbound.group:
            turn.commit.outbox.append(self.d._row(turn, message))
            return
        private = turn.inbound.private or turn.inbound.address
        turn.commit.outbox.append(
            OutboxRow(
                turn.inbound.channel,
                turn.actor,
                self.d.identity.seal(private),
                message.model_dump_json(exclude_defaults=True),
                turn.now,
            )
        )


def _words(arg: str) -> list[str]:
    try:
        return shlex.split(arg)
    except ValueError:  # an unbalanced quote: take the words as they are
        return arg.split()


def _changed(gathering: GatheringRow, **changes: object) -> GatheringRow:
    return dataclasses.replace(gathering, **changes)  # type: ignore[arg-type]
