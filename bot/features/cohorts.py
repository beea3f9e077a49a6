"""Cohorts and people's own settings for scheduled prompts.

A cohort is a named group that people opt into (`/join CODE`, a deep link, or
"yes" when a guide offers to keep in touch); nobody is messaged first without
that. `/leave` opts out, and so does `/stop` when no conversation is under way
(during one, it ends that conversation and says the check-ins go on).
`/timezone`, `/pause [until DATE]` and `/resume` are each person's own. Facilitators
see and pause schedules with `/schedule`. Like the dispatcher, everything here only
adds to the turn's commit.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING

from bot.conversation.router import TO_GUIDE, Router
from bot.conversation.turn import Turn
from bot.features.roles import ADMIN, COORDINATOR, FACILITATOR, normal_code
from bot.flows.events import Button, Reply
from bot.flows.run import RunStatus
from bot.scheduling.schedule_time import typed_zone, zone
from storage.rows import PreferenceRow, ScheduleRow

if TYPE_CHECKING:
    from storage.protocol import ScheduleStore

KEEP_STEP = "_keep"
DEFAULT_TZ = "UTC"
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)  # paused with no end date
SCHEDULE_ROLES = (FACILITATOR, COORDINATOR, ADMIN)


class Cohorts:
    def __init__(self, storage: ScheduleStore, default_tz: str = DEFAULT_TZ) -> None:
        self.storage = storage
        self.default_tz = default_tz

    def register(self, router: Router) -> None:
        router.command("leave", self._leave_command)
        # /stop ends the guide under way (the guide hears it); with none under way, the
        # check-ins (someone typing "stop" to a bot that wrote first wants it to stop).
        router.command("stop", self._stop_command, after_close=True)
        router.command("pause", self._pause_command, usage="[until YYYY-MM-DD]")
        router.command("resume", self._resume_command)
        router.command("timezone", self._timezone_command, usage="[Area/City]")
        router.command(
            "schedule",
            self._schedule_command,
            roles=SCHEDULE_ROLES,
            refusal="only_facilitators_schedules",
            usage="[pause|resume ID]",
        )
        router.button(KEEP_STEP, self.keep, yes_no=True)

    async def _leave_command(self, turn: Turn, arg: str) -> str | None:
        self.leave(turn)
        return None

    async def _stop_command(self, turn: Turn, arg: str) -> str | None:
        under_way = turn.run is not None and not RunStatus(turn.run.status).ended
        if not under_way and turn.inbound.control_step is None:
            self.leave(turn)  # typed with nothing under way: no more messages from us
            return None
        # Otherwise it ends this conversation, not the check-ins they chose (it ended them
        # silently; found by review): Stop sits under every question beside Skip and Back,
        # and one tapped under a conversation long finished stops nothing (the guide says
        # it has passed). Once the guide has stopped, they are told the check-ins go on,
        # and how to end them too.
        if under_way and await self.storage.cohorts_of(turn.participant_id):
            turn.closing.append(_check_ins_go_on)
        return TO_GUIDE

    async def _pause_command(self, turn: Turn, arg: str) -> str | None:
        await self._pause(turn, arg.strip())
        return None

    async def _resume_command(self, turn: Turn, arg: str) -> str | None:
        if await self._in_none(turn):
            return None
        await self._set(turn, paused_until=None)
        turn.say("resumed")
        return None

    async def _in_none(self, turn: Turn) -> bool:
        """True, having told them, if they are in no check-ins: pausing or resuming would
        only promise what will not happen ("check-ins will come again"; found by review)."""
        if await self.storage.cohorts_of(turn.participant_id):
            return False
        turn.say("checkins_none")
        return True

    async def _timezone_command(self, turn: Turn, arg: str) -> str | None:
        await self._timezone(turn, arg.strip())
        return None

    async def _schedule_command(self, turn: Turn, arg: str) -> str | None:
        await self._schedule(turn, arg.split())
        return None

    async def join(self, turn: Turn, code: str) -> bool:
        """Join the cohort with this code; False if no cohort has it."""
        cohort = await self.storage.cohort_by_code(normal_code(code))
        if cohort is None:
            return False
        await self._enrol(turn, cohort)
        return True

    async def keep(self, turn: Turn, value: str) -> str | None:
        """The answer to a guide's offer to keep in touch."""
        wanted, _, cohort = value.partition(":")
        if wanted == "yes" and await self.storage.cohort(cohort) is not None:
            await self._enrol(turn, cohort)
        else:
            turn.say("keep_in_touch_declined")
        return None

    async def offer(self, turn: Turn, cohort: str, language: str) -> None:
        """At the end of a guide that keeps in touch: ask to join its cohort, unless they
        are in it already or it does not exist (yet)."""
        if await self.storage.cohort(cohort) is None:
            return
        if cohort in await self.storage.cohorts_of(turn.participant_id):
            return
        text = turn.voice.phrases.text
        buttons = (
            Button(text(language, "keep_in_touch_yes"), KEEP_STEP, f"yes:{cohort}"),
            Button(text(language, "keep_in_touch_no"), KEEP_STEP, "no"),
        )
        turn.ask(Reply(text(language, "keep_in_touch"), buttons))

    def leave(self, turn: Turn) -> None:
        turn.commit.left.append((None, turn.participant_id))
        # Kept only to be asked again: with no run of theirs either, they go now.
        turn.commit.delete_unused_participant = turn.participant_id
        turn.say("cohort_left")

    # Commands ------------------------------------------------------------------------

    async def _enrol(self, turn: Turn, cohort: str) -> None:
        turn.commit.joined.append((cohort, turn.participant_id))
        # The scheduler must be able to write to them: keep their (sealed) address.
        turn.keep_address(reachable=True)
        preference = await self.storage.preference(turn.participant_id)
        tz = preference.tz if preference and preference.tz else self.default_tz
        turn.say("cohort_joined", tz=tz)

    async def _timezone(self, turn: Turn, name: str) -> None:
        if not name:
            preference = await self.storage.preference(turn.participant_id)
            tz = preference.tz if preference and preference.tz else self.default_tz
            turn.say("timezone_is", tz=tz)
            return
        found = typed_zone(name)
        if found is None or ("/" not in found.key and found.key != "UTC"):
            turn.say("timezone_unknown")
            return
        await self._set(turn, tz=found.key)
        turn.say("timezone_set", tz=found.key)

    async def _pause(self, turn: Turn, arg: str) -> None:
        if await self._in_none(turn):
            return
        # "until 2026-12-31", "hasta 2026-12-31" or just the date: the word before is theirs.
        parts = arg.split()
        words = " ".join(parts[1:] if len(parts) > 1 and not parts[0][:1].isdigit() else parts)
        if not words:
            await self._set(turn, paused_until=FOREVER)
            turn.say("paused_forever")
            return
        try:
            day = datetime.strptime(words, "%Y-%m-%d").date()
        except ValueError:
            turn.say("pause_bad_date")
            return
        preference = await self.storage.preference(turn.participant_id)
        tz = zone(preference.tz if preference and preference.tz else self.default_tz)
        until = datetime.combine(day, time(23, 59), tzinfo=tz).astimezone(turn.now.tzinfo)
        if until <= turn.now:
            turn.say("pause_past")
            return
        await self._set(turn, paused_until=until)
        turn.say("paused", until=day.isoformat())

    async def _set(self, turn: Turn, **changes: object) -> None:
        current = await self.storage.preference(turn.participant_id)
        base = current or PreferenceRow(turn.participant_id)
        turn.commit.preference = dataclasses.replace(base, **changes)  # type: ignore[arg-type]

    async def _schedule(self, turn: Turn, words: list[str]) -> None:
        schedules = await self.storage.schedules()
        if len(words) >= 2 and words[0] in ("pause", "resume"):
            found = next((s for s in schedules if s.id == words[1]), None)
            if found is None:
                turn.say("schedule_unknown", id=words[1][:20])
                return
            turn.commit.schedule = paused(found, words[0] == "pause", turn.now)
            turn.say(f"schedule_{words[0]}d", id=found.id)  # schedule_paused, _resumed
            return
        if not schedules:
            turn.say("schedules_none")
            return
        mark = turn.text("schedule_paused_mark")
        lines = [
            turn.text(
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
        turn.reply(Reply("\n".join(lines)))


def paused(schedule: ScheduleRow, paused: bool, now: datetime) -> ScheduleRow:
    """A schedule paused or resumed; occurrences while paused are skipped, not sent later."""
    checked = max(schedule.checked_until, now)
    return dataclasses.replace(schedule, paused=paused, checked_until=checked)


async def set_paused(
    storage: ScheduleStore, schedule: ScheduleRow, is_paused: bool, now: datetime
) -> None:
    """Pause or resume a schedule from outside a conversation (the command line)."""
    await storage.save_schedule(paused(schedule, is_paused, now))


def _check_ins_go_on(turn: Turn) -> None:
    if any(run.status == RunStatus.STOPPED for run in turn.commit.runs):
        turn.say("stopped_checkins_go_on")
