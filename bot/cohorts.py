"""Cohorts and people's own settings for scheduled prompts.

A cohort is a named group that people opt into (`/join CODE`, a deep link, or
"yes" when a guide offers to keep in touch); nobody is messaged first without
that. `/leave` and `/stop` opt out. `/timezone`, `/pause [until DATE]` and
`/resume` are each person's own. Facilitators see and pause schedules with
`/schedule`. Like the dispatcher, everything here only adds to the turn's commit.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING

from bot.flows.events import Button, Reply
from bot.roles import ADMIN, COORDINATOR, FACILITATOR, normal_code
from bot.schedule_time import zone
from storage.protocol import Storage
from storage.rows import ParticipantRow, PreferenceRow, ScheduleRow

if TYPE_CHECKING:
    from bot.dispatcher import Dispatcher, _Turn

COMMANDS = {"leave", "pause", "resume", "timezone", "schedule"}
KEEP_STEP = "_keep"
DEFAULT_TZ = "UTC"
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)  # paused with no end date


class Cohorts:
    def __init__(self, dispatcher: Dispatcher, default_tz: str = DEFAULT_TZ) -> None:
        self.d = dispatcher
        self.default_tz = default_tz

    async def command(self, turn: _Turn, name: str, arg: str) -> None:
        if name == "leave":
            await self.leave(turn)
        elif name == "timezone":
            await self._timezone(turn, arg.strip())
        elif name == "pause":
            await self._pause(turn, arg.strip())
        elif name == "resume":
            await self._set(turn, paused_until=None)
            self._say(turn, "resumed")
        elif name == "schedule":
            await self._schedule(turn, arg.split())

    async def join(self, turn: _Turn, code: str) -> bool:
        """Join the cohort with this code; False if no cohort has it."""
        cohort = await self.d.storage.cohort_by_code(normal_code(code))
        if cohort is None:
            return False
        await self._enrol(turn, cohort)
        return True

    async def keep(self, turn: _Turn, value: str) -> None:
        """The answer to a guide's offer to keep in touch."""
        wanted, _, cohort = value.partition(":")
        if wanted == "yes" and await self.d.storage.cohort(cohort) is not None:
            await self._enrol(turn, cohort)
        else:
            self._say(turn, "keep_in_touch_declined")

    def offer(self, cohort: str, language: str) -> Reply:
        text = self.d.phrases.text
        buttons = (
            Button(text(language, "keep_in_touch_yes"), KEEP_STEP, f"yes:{cohort}"),
            Button(text(language, "keep_in_touch_no"), KEEP_STEP, "no"),
        )
        return Reply(text(language, "keep_in_touch"), buttons)

    async def leave(self, turn: _Turn, quietly: bool = False) -> None:
        turn.commit.left.append((None, turn.participant_id))
        # Kept only to be asked again: with no run of theirs either, they go now.
        turn.commit.delete_unused_participant = turn.participant_id
        if not quietly:
            self._say(turn, "cohort_left")

    # Commands ------------------------------------------------------------------------

    async def _enrol(self, turn: _Turn, cohort: str) -> None:
        turn.commit.joined.append((cohort, turn.participant_id))
        # The scheduler must be able to write to them: keep their (sealed) address.
        person = turn.person or ParticipantRow(turn.participant_id, turn.inbound.channel, b"")
        if turn.commit.participant is None:
            turn.commit.participant = dataclasses.replace(
                person, address=turn.sealed_address, unreachable=False
            )
        preference = await self.d.storage.preference(turn.participant_id)
        tz = preference.tz if preference and preference.tz else self.default_tz
        self._say(turn, "cohort_joined", cohort=cohort, tz=tz)

    async def _timezone(self, turn: _Turn, name: str) -> None:
        if not name:
            preference = await self.d.storage.preference(turn.participant_id)
            tz = preference.tz if preference and preference.tz else self.default_tz
            self._say(turn, "timezone_is", tz=tz)
            return
        found = zone(name)
        if found is None or ("/" not in name and name.upper() != "UTC"):
            self._say(turn, "timezone_unknown")
            return
        await self._set(turn, tz=found.key)
        self._say(turn, "timezone_set", tz=found.key)

    async def _pause(self, turn: _Turn, arg: str) -> None:
        words = arg.removeprefix("until").strip()
        if not words:
            await self._set(turn, paused_until=FOREVER)
            self._say(turn, "paused_forever")
            return
        try:
            day = datetime.strptime(words, "%Y-%m-%d").date()
        except ValueError:
            self._say(turn, "pause_bad_date")
            return
        preference = await self.d.storage.preference(turn.participant_id)
        tz = zone(preference.tz if preference and preference.tz else self.default_tz)
        until = datetime.combine(day, time(23, 59), tzinfo=tz).astimezone(turn.now.tzinfo)
        await self._set(turn, paused_until=until)
        self._say(turn, "paused", until=day.isoformat())

    async def _set(self, turn: _Turn, **changes: object) -> None:
        current = await self.d.storage.preference(turn.participant_id)
        base = current or PreferenceRow(turn.participant_id)
        turn.commit.preference = dataclasses.replace(base, **changes)  # type: ignore[arg-type]

    async def _schedule(self, turn: _Turn, words: list[str]) -> None:
        role = await self.d.roles.role_of(turn.actor)
        if role not in (FACILITATOR, COORDINATOR, ADMIN):
            self._say(turn, "only_facilitators_schedules")
            return
        schedules = await self.d.storage.schedules()
        if len(words) >= 2 and words[0] in ("pause", "resume"):
            found = next((s for s in schedules if s.id == words[1]), None)
            if found is None:
                self._say(turn, "schedule_unknown", id=words[1][:20])
                return
            await set_paused(self.d.storage, found, words[0] == "pause", turn.now)
            self._say(turn, "schedule_changed", id=found.id, state=words[0] + "d")
            return
        if not schedules:
            self._say(turn, "schedules_none")
            return
        language = self.d._language(turn, None)
        mark = self.d.phrases.text(language, "schedule_paused_mark")
        lines = [
            self.d.phrases.text(
                language,
                "schedule_line",
                id=s.id,
                guide=s.guide_id,
                cohort=s.cohort,
                cron=s.cron,
                tz=s.tz,
                paused=mark if s.paused else "",
            )
            for s in schedules
        ]
        turn.commit.outbox.append(self.d._outbox(turn, Reply("\n".join(lines))))

    def _say(self, turn: _Turn, key: str, **params: object) -> None:
        text = self.d.phrases.text(self.d._language(turn, None), key, **params)
        turn.commit.outbox.append(self.d._outbox(turn, Reply(text)))


async def set_paused(storage: Storage, schedule: ScheduleRow, paused: bool, now: datetime) -> None:
    """Pause or resume a schedule; occurrences while paused are skipped, not sent later."""
    checked = max(schedule.checked_until, now)
    await storage.save_schedule(dataclasses.replace(schedule, paused=paused, checked_until=checked))
