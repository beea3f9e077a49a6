"""Participants' rights over their data: /mydata shows it, /forget erases it.

`/forget` asks first. Once confirmed, storage erases every row that refers to the
person's pseudonym (answers, runs, consents, check-ins, roles, messages owed)
and leaves a tombstone with no content; the WAL is checkpointed so no copy of
the text survives in the journal, and `secure_delete` zeroes the freed pages.
The confirmation is sent under a throwaway id, so not even the outbox names them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.conversation.router import Router
from bot.conversation.turn import Turn
from bot.flows.answers import display
from bot.flows.events import Button, Reply
from bot.flows.text import fold_answer, localize
from bot.messages import Outbound

if TYPE_CHECKING:
    from bot.flows.guide import Guide
    from bot.library import GuideLibrary
    from storage.protocol import RightsStore
    from storage.rows import KeptAnswer

FORGET_STEP = "_forget"


class Rights:
    def __init__(self, storage: RightsStore, library: GuideLibrary) -> None:
        self.storage = storage
        self.library = library

    def register(self, router: Router) -> None:
        # Both work after a gathering has closed: someone's data is always theirs.
        router.command("mydata", self._mydata, after_close=True)
        router.command("forget", self._forget_command, after_close=True)
        router.button(FORGET_STEP, self._tap, yes_no=True)

    async def _forget_command(self, turn: Turn, arg: str) -> str | None:
        # Only a whole "yes" skips the question: erasure can't be undone, and "/forget s"
        # or "/forget ok" may be a slip (the other yes-words answer the question itself).
        if fold_answer(arg) in ("yes", "si"):
            self.forget(turn)
            return None
        buttons = (
            Button(turn.text("forget_yes"), FORGET_STEP, "yes"),
            Button(turn.text("forget_no"), FORGET_STEP, "no"),
        )
        turn.ask(Reply(turn.text("forget_confirm"), buttons))
        return None

    async def _tap(self, turn: Turn, value: str) -> str | None:
        if value == "yes":
            self.forget(turn)
        else:
            turn.say("forget_kept")
        return None

    def forget(self, turn: Turn) -> None:
        """Erase everything kept about this person, in the turn's one commit: storage
        erases as it writes it, and writes nothing else of theirs back."""
        language = turn.language
        turn.commit.forget = (turn.participant_id, turn.now)
        turn.commit.participant = None
        turn.commit.runs = []
        turn.person = None
        turn.run = None
        turn.pending = None
        message = Outbound(text=turn.voice.phrases.text(language, "forgotten"))
        # Sent under a throwaway id, so not even the outbox names them.
        turn.commit.outbox.append(turn.row(message, participant=f"erased:{uuid.uuid4().hex}"))

    async def _mydata(self, turn: Turn, arg: str) -> str | None:
        language = turn.language
        kept = await self.storage.mine(turn.participant_id)
        say = turn.voice.phrases.text
        if not kept:
            turn.say("mydata_nothing")
            return None
        lines = [say(language, "mydata_heading")]
        guides = {loaded.guide.id: loaded.guide for loaded in self.library.all() if loaded.guide}
        titles = {g.id: localize(g.title, language, g.default_language) for g in guides.values()}
        by_run: dict[str, list[KeptAnswer]] = {}
        for answer in kept.answers:
            by_run.setdefault(answer.run_id, []).append(answer)
        for run in kept.runs:
            status = say(language, f"run_{run.status}")
            title = titles.get(run.guide_id, run.guide_id)
            day = _day(run.started_at)
            lines.append("\n" + say(language, "mydata_run", guide=title, status=status, day=day))
            for answer in by_run.get(run.id, []):
                lines.append("• " + _answered(guides.get(answer.guide_id), answer, language))
        if kept.consents:
            items = ", ".join(
                f"{titles.get(c.guide_id, c.guide_id)}"
                f" {say(language, 'consent_given' if c.given else 'consent_declined')}"
                f" {_day(c.at)}"
                for c in kept.consents
            )
            lines.append("\n" + say(language, "mydata_consents", items=items))
        if kept.cohorts:
            items = ", ".join(c.cohort for c in kept.cohorts)
            lines.append(say(language, "mydata_cohorts", items=items))
        if kept.roles:
            roles = ", ".join(say(language, f"role_name_{r.role}") for r in kept.roles)
            lines.append(say(language, "mydata_roles", items=roles))
        if kept.preferences and kept.preferences[0].tz:
            lines.append(say(language, "mydata_timezone", tz=kept.preferences[0].tz))
        turn.reply(Reply("\n".join(lines)))
        # Each table a list of rows, each row its columns by name (bare lists of values
        # were unreadable without the schema; found by review).
        document = json.dumps(
            {
                table.name: [
                    {column.name: _plain(getattr(row, column.name)) for column in fields(row)}
                    for row in getattr(kept, table.name)
                ]
                for table in fields(kept)
            },
            ensure_ascii=False,
            indent=2,
        )
        turn.send(Outbound(text=say(language, "mydata_file"), document=document))
        return None


def _day(moment: datetime) -> str:
    return _stored(moment)[:10]


def _stored(moment: datetime) -> str:
    """A moment as storage writes it (UTC, to the microsecond), as /mydata has shown it."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _plain(value: object) -> object:
    if isinstance(value, bool):  # given or not: 1 or 0, as the file has always said
        return int(value)
    if isinstance(value, datetime):
        return _stored(value)
    if isinstance(value, str) and value[:1] in ('"', "[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _answered(guide: Guide | None, answer: KeptAnswer, language: str) -> str:
    """One answer as they gave it: the question, and the option's label, not its id (a
    guide since removed: the step's id and the value as kept)."""
    value = json.loads(answer.value)
    step = next((s for s in guide.steps if s.id == answer.step), None) if guide else None
    if guide is None or step is None:
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        return f"{answer.step} {shown if shown is not None else '–'}"
    question = localize(step.text, language, guide.default_language)
    return f"{question} {display(guide, step, value, language)}"
