"""Scheduled prompts and reminders, with a fake clock: local hours across daylight saving,
quiet hours, catch-up after downtime, two schedulers on one database, reminders, opt-outs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.messages import Inbound
from bot.scheduling.scheduler import occurrence_key, prompt_key
from tests.town import CODE, Town, at, setup


async def test_nine_on_monday_where_each_person_lives_across_daylight_saving(town: Town):
    _, scheduler, deliverer = await setup(town, {"chi": None, "mad": "Europe/Madrid"})
    assert "America/Chicago" in town.texts("chi")[0]  # told their time zone when joining
    chicago, madrid = ZoneInfo("America/Chicago"), ZoneInfo("Europe/Madrid")
    # Europe changes its clocks on 25 October, the United States on 1 November.
    for monday in (19, 26):
        for who, place in (("mad", madrid), ("chi", chicago)):
            before = town.prompts(who)
            await at(town, datetime(2026, 10, monday, 8, 59, tzinfo=place), scheduler, deliverer)
            assert town.prompts(who) == before, (who, monday)
            await at(town, datetime(2026, 10, monday, 9, 0, tzinfo=place), scheduler, deliverer)
            assert town.prompts(who) == before + 1, (who, monday)
    for who, place in (("mad", madrid), ("chi", chicago)):
        await at(town, datetime(2026, 11, 2, 9, 0, tzinfo=place), scheduler, deliverer)
        assert town.prompts(who) == 3
    # The same wall-clock hour each week, whatever the UTC offset.
    keys = [d.key for d in await scheduler.storage.deliveries("s1")]
    assert len(keys) == 6


async def test_a_prompt_due_in_quiet_hours_waits_until_morning(town: Town):
    _dispatcher, scheduler, deliverer = await setup(town, {"owl": "Asia/Tokyo"})
    tokyo = ZoneInfo("Asia/Tokyo")
    # Nine in Chicago on Monday 19 October is 23:00 in Tokyo.
    await at(town, datetime(2026, 10, 19, 23, 0, tzinfo=tokyo), scheduler, deliverer)
    assert town.prompts("owl") == 0  # the run started, its message waits in the outbox
    town.clock.now = datetime(2026, 10, 20, 7, 59, tzinfo=tokyo).astimezone(UTC)
    await deliverer.drain("terminal")
    assert town.prompts("owl") == 0
    town.clock.now = datetime(2026, 10, 20, 8, 0, tzinfo=tokyo).astimezone(UTC)
    await deliverer.drain("terminal")
    assert town.prompts("owl") == 1


async def test_after_downtime_recent_occurrences_go_out_and_old_ones_are_missed(town: Town):
    _, scheduler, deliverer = await setup(town, {"ana": None})
    chicago = ZoneInfo("America/Chicago")
    # Down from Friday until Wednesday: Monday's prompt is 2 days old, the guide lasts 3.
    await at(town, datetime(2026, 10, 21, 10, 0, tzinfo=chicago), scheduler, deliverer)
    assert town.prompts("ana") == 1
    # Down for three weeks: only what is younger than 3 days still goes out.
    await town.say(scheduler.dispatcher, "ana", "/stop")
    await town.say(scheduler.dispatcher, "ana", f"/join {CODE}")
    report = await scheduler.tick()
    town.clock.now = datetime(2026, 11, 10, 10, 0, tzinfo=chicago).astimezone(UTC)
    report = await scheduler.tick()
    await deliverer.drain("terminal")
    assert [due.date().isoformat() for _, due in report.missed] == ["2026-10-26", "2026-11-02"]
    assert report.prompted == 1  # 9 November, a day ago
    statuses = [o.status for o in await scheduler.storage.occurrences("s1")]
    assert statuses == ["sent", "missed", "missed", "sent"]


async def test_two_schedulers_on_one_database_prompt_each_person_once(town: Town):
    people = {f"p{n}": None for n in range(12)}
    _, first, deliverer = await setup(town, people)
    _, second, _ = await town.process()
    town.clock.now = datetime(2026, 10, 19, 14, 0, tzinfo=UTC)  # nine in Chicago
    await asyncio.gather(first.tick(), second.tick(), first.tick())
    await deliverer.drain("terminal")
    assert [town.prompts(who) for who in people] == [1] * 12
    assert len(await first.storage.deliveries("s1")) == 12


async def test_a_scheduler_that_died_mid_way_is_taken_over_without_repeats(town: Town):
    people = {f"p{n}": None for n in range(6)}
    dispatcher, first, deliverer = await setup(town, people)
    _, second, _ = await town.process()
    due = datetime(2026, 10, 19, 14, 0, tzinfo=UTC)
    town.clock.now = due
    # The first process claims the occurrence, prompts two people, then dies.
    lease = timedelta(minutes=10)
    claim = await first.storage.claim_occurrence("s1", "America/Chicago", due, due, lease)
    assert claim == "claimed"
    for who in ("p0", "p1"):
        pid = town.identity.pseudonym("terminal", who)
        key = prompt_key(occurrence_key("s1", due, "America/Chicago"), pid)
        await dispatcher.prompt(pid, key, "s1", "pulse")
    assert (await second.tick()).prompted == 0  # still held by the first
    town.clock.advance(minutes=11)
    assert (await second.tick()).prompted == 4  # taken over: the four not yet prompted
    await deliverer.drain("terminal")
    assert [town.prompts(who) for who in people] == [1] * 6


async def test_one_reminder_after_a_day_never_to_finishers_or_at_night(town: Town):
    dispatcher, scheduler, deliverer = await setup(town, {"slow": None, "done": None})
    chicago = ZoneInfo("America/Chicago")
    await at(town, datetime(2026, 10, 19, 9, 0, tzinfo=chicago), scheduler, deliverer)
    for answer in ("4", "A day off"):
        await town.say(dispatcher, "done", answer)
    await at(town, datetime(2026, 10, 20, 8, 59, tzinfo=chicago), scheduler, deliverer)
    assert not any("reminder" in t for t in town.texts("slow"))  # not yet a day
    await at(town, datetime(2026, 10, 20, 22, 0, tzinfo=chicago), scheduler, deliverer)
    assert not any("reminder" in t for t in town.texts("slow"))  # quiet hours
    await at(town, datetime(2026, 10, 21, 8, 0, tzinfo=chicago), scheduler, deliverer)
    reminders = [t for t in town.texts("slow") if "reminder" in t]
    assert len(reminders) == 1
    assert town.texts("slow")[-1] == "How was your week?"  # and the question again
    await at(town, datetime(2026, 10, 22, 9, 0, tzinfo=chicago), scheduler, deliverer)
    assert len([t for t in town.texts("slow") if "reminder" in t]) == 1  # only once
    assert not any("reminder" in t for t in town.texts("done"))


async def test_an_expired_run_gets_no_reminder(town: Town):
    _dispatcher, scheduler, deliverer = await setup(town, {"gone": None})
    chicago = ZoneInfo("America/Chicago")
    await at(town, datetime(2026, 10, 19, 9, 0, tzinfo=chicago), scheduler, deliverer)
    await at(town, datetime(2026, 10, 23, 9, 0, tzinfo=chicago), scheduler, deliverer)  # 4 days
    assert not any("reminder" in t or "expired" in t for t in town.texts("gone"))
    assert await scheduler.storage.due_reminders(town.clock(), 1) == []


async def test_leave_stop_and_pause_mean_no_prompts(town: Town):
    dispatcher, scheduler, deliverer = await setup(
        town, {"leaver": None, "stopper": None, "holiday": None, "stays": None}
    )
    await town.say(dispatcher, "leaver", "/leave")
    await town.say(dispatcher, "stopper", "/stop")
    await town.say(dispatcher, "holiday", "/pause until 2026-10-31")
    await deliverer.drain("terminal")
    assert "won't get any more" in town.texts("leaver")[-1]
    assert "paused until 2026-10-31" in town.texts("holiday")[-1]
    chicago = ZoneInfo("America/Chicago")
    await at(town, datetime(2026, 10, 19, 9, 0, tzinfo=chicago), scheduler, deliverer)
    counts = {who: town.prompts(who) for who in ("leaver", "stopper", "holiday", "stays")}
    assert counts == {"leaver": 0, "stopper": 0, "holiday": 0, "stays": 1}
    await at(town, datetime(2026, 11, 2, 9, 0, tzinfo=chicago), scheduler, deliverer)
    assert town.prompts("holiday") == 1  # back after the holiday


async def test_stop_under_a_check_in_ends_it_and_says_the_check_ins_go_on(town: Town):
    """Stop sits under every question beside Skip and Back: during a conversation it ends
    that one, and someone in a cohort is told the check-ins go on and how to end them."""
    dispatcher, scheduler, deliverer = await setup(town, {"busy": None, "stays": None})
    chicago = ZoneInfo("America/Chicago")
    await at(town, datetime(2026, 10, 19, 9, 0, tzinfo=chicago), scheduler, deliverer)
    await town.say(dispatcher, "busy", "/stop")
    await deliverer.drain("terminal")
    stopped, note = town.texts("busy")[-2:]
    assert stopped.startswith("Stopped.")
    assert "still come" in note and "/leave" in note
    await at(town, datetime(2026, 10, 26, 9, 0, tzinfo=chicago), scheduler, deliverer)
    assert town.prompts("busy") == town.prompts("stays") == 2
    # A Stop tapped under a question already answered stops nothing, and says nothing of
    # check-ins.
    await town.say(dispatcher, "busy", "4")
    run = await scheduler.storage.open_run(town.identity.pseudonym("terminal", "busy"), "pulse")
    assert run is not None
    stale = Inbound("terminal", "busy", "busy", "/stop", control_step="week", tap_run=run.id)
    await dispatcher.handle(stale)
    await deliverer.drain("terminal")
    assert not any("still come" in t for t in town.texts("busy")[-2:])
    assert (await scheduler.storage.run(run.id)).status == "active"  # type: ignore[union-attr]
    # Someone in no cohort who stops a guide is told nothing about check-ins.
    await town.say(dispatcher, "walker", "/start pulse")
    await town.say(dispatcher, "walker", "/stop")
    await deliverer.drain("terminal")
    assert town.texts("walker")[-1].startswith("Stopped.")
    # With nothing under way, /stop ends the check-ins.
    await town.say(dispatcher, "busy", "/stop")
    await town.say(dispatcher, "busy", "/stop")
    await deliverer.drain("terminal")
    assert "won't get any more" in town.texts("busy")[-1]
    await at(town, datetime(2026, 11, 2, 9, 0, tzinfo=chicago), scheduler, deliverer)
    assert (town.prompts("busy"), town.prompts("stays")) == (2, 3)


async def test_a_facilitator_pauses_and_resumes_a_schedule_in_their_language(town: Town):
    dispatcher, scheduler, deliverer = await setup(town, {"ana": None})
    invite = await town.houses[-1].roles.invite("facilitator", timedelta(days=7))
    await town.say(dispatcher, "host", f"/redeem {invite}")
    await town.say(dispatcher, "host", "/language es")
    await town.say(dispatcher, "host", "/schedule pause s1")
    await deliverer.drain("terminal")
    assert town.texts("host")[-1] == "El envío s1 ahora está en pausa.", town.texts("host")
    chicago = ZoneInfo("America/Chicago")
    await at(town, datetime(2026, 10, 19, 9, 0, tzinfo=chicago), scheduler, deliverer)
    assert town.prompts("ana") == 0
    await town.say(dispatcher, "host", "/schedule resume s1")
    await deliverer.drain("terminal")
    assert town.texts("host")[-1] == "El envío s1 vuelve a estar activo."


async def test_pause_and_resume_say_what_will_really_happen(town: Town):
    dispatcher, _, deliverer = await setup(town, {"ana": None})
    await town.say(dispatcher, "nobody", "/pause")
    await town.say(dispatcher, "nobody", "/resume")
    await town.say(dispatcher, "ana", "/pause tomorrow")  # not a date: not paused for ever
    await town.say(dispatcher, "ana", "/pause until 2026-10-01")  # the town's Friday is later
    await town.say(dispatcher, "ana", "/language es")
    await town.say(dispatcher, "ana", "/pause hasta 2026-10-31")
    await deliverer.drain("terminal")
    assert [t.startswith("You aren't getting check-ins") for t in town.texts("nobody")] == [
        True,
        True,
    ]
    assert "year-month-day" in town.texts("ana")[-5]
    assert "already passed" in town.texts("ana")[-4]
    assert town.texts("ana")[-1].startswith("Las conversaciones están en pausa hasta el 2026-10-31")
    preference = await dispatcher.storage.preference(town.identity.pseudonym("terminal", "ana"))
    assert preference is not None and preference.paused_until is not None
    assert preference.paused_until.date().isoformat() in ("2026-10-31", "2026-11-01")


async def test_a_guide_offers_to_keep_in_touch_and_nobody_else_is_written_to(town: Town):
    dispatcher, scheduler, deliverer = await setup(town, {})
    await town.say(dispatcher, "walkin", "/start pulse")
    for answer in ("5", "Rest"):
        await town.say(dispatcher, "walkin", answer)
    await town.say(dispatcher, "stranger", "/start pulse")
    await deliverer.drain("terminal")
    assert "keep in touch" in " ".join(town.texts("walkin")).lower() or any(
        "check-in from us" in t for t in town.texts("walkin")
    )
    from bot.flows.events import Tap

    await dispatcher.handle(Inbound("terminal", "walkin", "walkin", tap=Tap("_keep", "yes:weekly")))
    chicago = ZoneInfo("America/Chicago")
    await at(town, datetime(2026, 10, 19, 9, 0, tzinfo=chicago), scheduler, deliverer)
    assert town.prompts("walkin") == 2  # the one they did, and Monday's
    assert town.prompts("stranger") == 1  # only the one they asked for


async def test_time_zones_are_checked(town: Town):
    dispatcher, _, deliverer = await setup(town, {"tz": None})
    for wrong in ("Mars/Olympus", "CST6", "../../etc/passwd"):
        await town.say(dispatcher, "tz", f"/timezone {wrong}")
        await deliverer.drain("terminal")
        assert "don't know that time zone" in town.texts("tz")[-1]
    await town.say(dispatcher, "tz", "/timezone Europe/Madrid")
    await deliverer.drain("terminal")
    assert "Europe/Madrid" in town.texts("tz")[-1]
    # Typed as people type it: any case, spaces for underscores.
    for typed, kept in (("america/new york", "America/New_York"), ("utc", "UTC")):
        await town.say(dispatcher, "tz", f"/timezone {typed}")
        await deliverer.drain("terminal")
        assert kept in town.texts("tz")[-1], town.texts("tz")[-1]


async def test_expired_records_are_cleared_once_a_day_by_one_instance(town: Town):
    _, first, _ = await setup(town, {})
    _, second, _ = await town.process()
    now = town.clock.now
    storage = first.storage
    # A sign-in link nobody used and a session that ran out: reads ignore them already;
    # the day's housekeeping deletes them, so nothing says who signed in when.
    await storage.put_record("console-link", "unused", b"who", now - timedelta(minutes=1))
    await storage.put_record("console-session", "old", b"who", now - timedelta(hours=1))
    await storage.put_record("console-session", "live", b"who", now + timedelta(hours=1))
    reports = await asyncio.gather(first.tick(), second.tick())
    assert sorted(r.cleared for r in reports) == [0, 2]  # one of them, once
    assert [r.key for r in await storage.records_of("console-session", now)] == ["live"]
    town.clock.advance(hours=2)  # the same UTC day: not again
    assert (await first.tick()).cleared == 0
    town.clock.advance(days=1)
    assert (await second.tick()).cleared == 1  # the next day: the session that ran out


async def test_a_stop_tapped_under_a_finished_check_in_keeps_the_check_ins(town: Town):
    dispatcher, scheduler, deliverer = await setup(town, {"ana": None})
    chicago = ZoneInfo("America/Chicago")
    await at(town, datetime(2026, 10, 19, 9, 0, tzinfo=chicago), scheduler, deliverer)
    run = await scheduler.storage.open_run(town.identity.pseudonym("terminal", "ana"), "pulse")
    assert run is not None
    await town.say(dispatcher, "ana", "4")
    await town.say(dispatcher, "ana", "A fair week")  # finished
    old = Inbound("terminal", "ana", "ana", "/stop", control_step="week", tap_run=run.id)
    await dispatcher.handle(old)  # scrolled up, tapped Stop under last question
    await deliverer.drain("terminal")
    assert not any("won't get any more" in t for t in town.texts("ana"))
    await at(town, datetime(2026, 10, 26, 9, 0, tzinfo=chicago), scheduler, deliverer)
    assert town.prompts("ana") == 2


async def test_someone_who_moves_west_after_their_prompt_is_not_prompted_again(town: Town):
    """Prompted at nine in Madrid, ana sets her time zone to Chicago's that morning: at
    nine in Chicago the same Monday she is not prompted a second time for that week;
    the next Monday she is, at nine in Chicago."""
    dispatcher, scheduler, deliverer = await setup(town, {"ana": "Europe/Madrid"})
    madrid, chicago = ZoneInfo("Europe/Madrid"), ZoneInfo("America/Chicago")

    async def prompted() -> int:
        return len(await scheduler.storage.deliveries("s1"))

    await at(town, datetime(2026, 10, 19, 9, 0, tzinfo=madrid), scheduler, deliverer)
    assert await prompted() == 1
    await town.say(dispatcher, "ana", "/timezone America/Chicago")
    await deliverer.drain("terminal")
    sent = len(town.texts("ana"))
    await at(town, datetime(2026, 10, 19, 9, 0, tzinfo=chicago), scheduler, deliverer)
    assert await prompted() == 1 and len(town.texts("ana")) == sent  # nothing more
    await at(town, datetime(2026, 10, 26, 8, 59, tzinfo=chicago), scheduler, deliverer)
    assert await prompted() == 1
    await at(town, datetime(2026, 10, 26, 9, 0, tzinfo=chicago), scheduler, deliverer)
    assert await prompted() == 2


def test_the_hour_that_comes_twice_when_the_clocks_go_back_ends_and_prompts_once():
    """01:30 comes twice in Chicago on 1 November 2026. Looking for the occurrences
    across it never ended (the second 01:30 led back to itself), and with it the tick
    and every tick after. Both 01:30s are found, and name the same prompt."""
    from bot.scheduling.schedule_time import occurrences

    after, until = datetime(2026, 10, 31, 12, tzinfo=UTC), datetime(2026, 11, 2, 12, tzinfo=UTC)
    found = occurrences("30 1 * * *", "America/Chicago", after, until)
    assert [f.astimezone(UTC).strftime("%d %H:%M") for f in found] == [
        "01 06:30", "01 07:30", "02 07:30",
    ]  # fmt: skip
    keys = {prompt_key(occurrence_key("s1", due, "America/Chicago"), "ana") for due in found}
    assert len(keys) == 2  # 1 November once, 2 November once
    assert len(occurrences("0 * * * *", "America/Chicago", after, until)) == 48
