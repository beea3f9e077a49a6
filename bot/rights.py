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
from typing import TYPE_CHECKING

from bot.flows.events import Button, Reply
from bot.flows.text import localize
from bot.messages import Outbound

if TYPE_CHECKING:
    from bot.dispatcher import Dispatcher, _Turn

FORGET_STEP = "_forget"
COMMANDS = {"forget", "mydata"}


class Rights:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher

    async def command(self, turn: _Turn, name: str, arg: str) -> None:
        if name == "mydata":
            await self._mydata(turn)
        elif arg.strip().lower() in ("yes", "sí", "si"):
            await self.forget(turn)
        else:
            language = self.d._language(turn, None)
            text = self.d.phrases.text
            buttons = (
                Button(text(language, "forget_yes"), FORGET_STEP, "yes"),
                Button(text(language, "forget_no"), FORGET_STEP, "no"),
            )
            reply = Reply(text(language, "forget_confirm"), buttons)
            turn.commit.outbox.append(self.d._outbox(turn, reply))

    async def tap(self, turn: _Turn, value: str) -> None:
        if value == "yes":
            await self.forget(turn)
        else:
            self._say(turn, "forget_kept")

    async def forget(self, turn: _Turn) -> None:
        language = self.d._language(turn, None)
        await self.d.storage.forget(turn.participant_id, turn.now)
        # Nothing of theirs may be written back: not the participant row, not a run.
        turn.commit.participant = None
        turn.commit.runs = []
        turn.person = None
        turn.run = None
        message = Outbound(text=self.d.phrases.text(language, "forgotten"))
        row = self.d._row(turn, message)
        turn.commit.outbox.append(
            type(row)(
                row.channel, f"erased:{uuid.uuid4().hex}", row.address, row.payload, row.not_before
            )
        )

    async def _mydata(self, turn: _Turn) -> None:
        language = self.d._language(turn, None)
        kept = await self.d.storage.mine(turn.participant_id)
        say = self.d.phrases.text
        if not any(kept.values()):
            self._say(turn, "mydata_nothing")
            return
        lines = [say(language, "mydata_heading")]
        questions: dict[tuple[str, str], str] = {}
        for loaded in self.d.library.all():
            if loaded.guide is not None:
                for step in loaded.guide.questions:
                    questions[(loaded.guide.id, step.id)] = localize(
                        step.text, language, loaded.guide.default_language
                    )
        by_run: dict[str, list[tuple[object, ...]]] = {}
        for answer in kept["answers"]:
            by_run.setdefault(str(answer[0]), []).append(answer)
        for run in kept["runs"]:
            lines.append(f"\n{run[1]} ({run[3]}, {str(run[4])[:10]})")
            for _, guide_id, step, _kind, value, _at in by_run.get(str(run[0]), []):
                shown = json.loads(str(value))
                if isinstance(shown, list):
                    shown = ", ".join(map(str, shown))
                question = questions.get((str(guide_id), str(step)), str(step))
                lines.append(f"• {question} {shown if shown is not None else '–'}")
        if kept["consents"]:
            items = ", ".join(
                f"{c[0]} {say(language, 'consent_given' if c[2] else 'consent_declined')}"
                f" {str(c[3])[:10]}"
                for c in kept["consents"]
            )
            lines.append("\n" + say(language, "mydata_consents", items=items))
        if kept["cohorts"]:
            items = ", ".join(str(c[0]) for c in kept["cohorts"])
            lines.append(say(language, "mydata_cohorts", items=items))
        if kept["roles"]:
            lines.append(
                say(language, "mydata_roles", items=", ".join(str(r[0]) for r in kept["roles"]))
            )
        if kept["preferences"] and kept["preferences"][0][0]:
            lines.append(say(language, "mydata_timezone", tz=kept["preferences"][0][0]))
        turn.commit.outbox.append(self.d._outbox(turn, Reply("\n".join(lines))))
        document = json.dumps(
            {name: [list(map(_plain, row)) for row in rows] for name, rows in kept.items()},
            ensure_ascii=False,
            indent=2,
        )
        message = Outbound(text=say(language, "mydata_file"), document=document)
        turn.commit.outbox.append(self.d._row(turn, message))

    def _say(self, turn: _Turn, key: str) -> None:
        text = self.d.phrases.text(self.d._language(turn, None), key)
        turn.commit.outbox.append(self.d._outbox(turn, Reply(text)))


def _plain(value: object) -> object:
    if isinstance(value, str) and value[:1] in ('"', "[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
