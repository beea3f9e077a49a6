"""The Cohorts and schedules page, in process on the run's storage backend and a fake clock:
a cohort made in the console is joined by its code in chat; a schedule is previewed (its
next three times in its own time zone, across a daylight-saving change) and saved; paused,
resumed and removed (after asking); a cron line or a time zone that can't be read is
refused saying what is wrong, keeping what was typed, saving nothing; a POST without the
CSRF token changes nothing; coordinators and admins only. Each change is in the audit log."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from admin.schedules import CRON_FIELDS, cron_problem
from bot.scheduling.schedule_time import trigger
from storage.protocol import Storage
from tests.conftest import FakeClock
from tests.console_world import World, open_world, text_of


@pytest.fixture
async def world(storage: Storage, clock: FakeClock) -> AsyncIterator[World]:
    opened = await open_world(storage, clock)
    yield opened
    await opened.close()


async def coordinator(world: World) -> str:
    await world.grant("cora", "coordinator")
    return await world.sign_in("cora")


async def sign_in_speaking(world: World, user: str, language: str) -> str:
    """Sign in with a link made in this language (as /console from someone whose chat is
    in it); the CSRF token."""
    link = await world.services.links.issue(world.pseudonym(user), language)
    token = link.split("t=")[1]
    answer = await world.client.post("/console/signin", data={"t": token}, allow_redirects=False)
    assert answer.status == 303
    page = await (await world.client.get("/console/schedules")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def post(world: World, path: str, csrf: str, **fields: str):  # type: ignore[no-untyped-def]
    return await world.client.post(f"/console{path}", data={"csrf": csrf, **fields},
                                   allow_redirects=False)  # fmt: skip


async def audited(world: World) -> list[tuple[str, str]]:
    return [(e.what, e.detail) for e in await world.services.audit_log.newest()]


async def test_a_cohort_made_in_the_console_is_joined_by_its_code_in_chat(world: World):
    csrf = await coordinator(world)
    made = await post(world, "/cohorts", csrf, name="riverside")
    assert made.status == 303
    page = await (await world.client.get(made.headers["Location"])).text()
    assert "Created the cohort riverside." in text_of(page)
    cohort = await world.storage.cohort("riverside")
    assert cohort is not None
    assert f'<code class="code">{cohort.code}</code>' in page
    assert f"https://t.me/KitchenTableBot?start=join-{cohort.code}" in page
    said = await world.say(f"/join {cohort.code}", "pat")
    assert any("You're in" in m.text for m in said)
    assert await world.storage.cohorts_of(world.pseudonym("pat")) == ["riverside"]
    assert ("cohort_added", "riverside") in await audited(world)

    again = await post(world, "/cohorts", csrf, name="riverside")  # no second cohort
    assert "already exists" in text_of(
        await (await world.client.get(again.headers["Location"])).text()
    )
    assert [c.name for c in await world.storage.cohorts()] == ["riverside"]


async def test_a_cohort_name_against_the_rule_is_refused_keeping_what_was_typed(world: World):
    csrf = await coordinator(world)
    refused = await post(world, "/cohorts", csrf, name="River <Side>")
    assert refused.status == 400
    page = await refused.text()
    assert "“River &lt;Side&gt;” can&#39;t be a cohort&#39;s name" in page
    assert "such as river-side" in page
    assert 'value="River &lt;Side&gt;"' in page and 'aria-invalid="true"' in page
    assert await world.storage.cohorts() == []


async def test_a_schedule_is_previewed_in_its_own_zone_then_saved(world: World):
    csrf = await coordinator(world)
    await post(world, "/cohorts", csrf, name="riverside")
    # 09:00 UTC on Monday 2 March 2026 is 03:00 in Chicago; clocks go forward on 8 March.
    form = {"guide": "weekly-checkin", "cohort": "riverside", "cron": "0 9 * * MON",
            "tz": "America/Chicago"}  # fmt: skip
    shown = await post(world, "/schedules/preview", csrf, **form)
    assert shown.status == 200
    words = text_of(await shown.text())
    assert "The next three times, in America/Chicago" in words
    assert ("Mon 2026-03-02 09:00 CST Mon 2026-03-09 09:00 CDT Mon 2026-03-16 09:00 CDT"
            in words)  # fmt: skip
    assert await world.storage.schedules() == []  # a preview saves nothing

    saved = await post(world, "/schedules/add", csrf, **form)
    assert saved.status == 303
    [schedule] = await world.storage.schedules()
    assert (schedule.guide_id, schedule.cohort, schedule.cron, schedule.tz, schedule.paused) == (
        "weekly-checkin", "riverside", "0 9 * * MON", "America/Chicago", False)  # fmt: skip
    page = text_of(await (await world.client.get(saved.headers["Location"])).text())
    assert f"Added schedule {schedule.id}." in page
    assert "Next sends Mon 2026-03-02 09:00 CST" in page
    assert ("schedule_added", f"{schedule.id}: weekly-checkin -> riverside, 0 9 * * MON "
            "(America/Chicago)") in await audited(world)  # fmt: skip


async def test_pause_resume_and_remove_after_asking(world: World):
    csrf = await coordinator(world)
    await post(world, "/cohorts", csrf, name="riverside")
    await post(world, "/schedules/add", csrf, guide="weekly-checkin", cohort="riverside",
               cron="30 18 * * 1-5", tz="Europe/Madrid")  # fmt: skip
    [schedule] = await world.storage.schedules()

    world.clock.advance(seconds=1)  # the audit log, newest first, in order
    assert (await post(world, f"/schedules/{schedule.id}/pause", csrf)).status == 303
    [paused] = await world.storage.schedules()
    assert paused.paused
    page = text_of(await (await world.client.get("/console/schedules")).text())
    assert "State Paused Next sends —" in page and "Resume" in page

    world.clock.advance(seconds=1)
    assert (await post(world, f"/schedules/{schedule.id}/resume", csrf)).status == 303
    [resumed] = await world.storage.schedules()
    assert not resumed.paused

    asked = await world.client.get(f"/console/schedules/{schedule.id}/remove")
    assert asked.status == 200 and "Remove this schedule?" in await asked.text()
    assert len(await world.storage.schedules()) == 1  # asking removes nothing
    world.clock.advance(seconds=1)
    assert (await post(world, f"/schedules/{schedule.id}/remove", csrf)).status == 303
    assert await world.storage.schedules() == []
    whats = [what for what, _ in await audited(world)]
    assert whats[:3] == ["schedule_removed", "schedule_resumed", "schedule_paused"]
    gone = await post(world, f"/schedules/{schedule.id}/pause", csrf)
    assert gone.status == 404


@pytest.mark.parametrize(
    ("cron", "tz", "says", "field"),
    [
        ("0 9 * *", "UTC", "A cron line has five fields (minute, hour, day of the month, month, "
         "day of the week); “0 9 * *” has 4.", "cron"),
        ("0 25 * * MON", "UTC", "The hour (second field, 0-23) can't be “25”.", "cron"),
        ("0 9 * * FUN", "UTC", "The day of the week (fifth field, 0-6 or MON-SUN) can't be “FUN”.",
         "cron"),
        ("0 9 * * MON", "Mars/Olympus", "“Mars/Olympus” isn't a time zone the bot knows.", "tz"),
    ],
)  # fmt: skip
async def test_what_cant_be_read_is_refused_saying_why_and_nothing_is_saved(
    world: World, cron: str, tz: str, says: str, field: str
):
    csrf = await coordinator(world)
    await post(world, "/cohorts", csrf, name="riverside")
    for path in ("/schedules/preview", "/schedules/add"):
        refused = await post(world, path, csrf, guide="weekly-checkin", cohort="riverside",
                             cron=cron, tz=tz)  # fmt: skip
        assert refused.status == 400
        page = await refused.text()
        assert f"Nothing was saved. {says}" in text_of(page)
        assert f'value="{html.escape(cron)}"' in page and f'value="{tz}"' in page  # kept
        invalid = re.search(r'<input id="schedule-(\w+)"[^>]*aria-invalid="true"', page)
        assert invalid is not None and invalid.group(1) == field
    assert await world.storage.schedules() == []
    assert not any(what == "schedule_added" for what, _ in await audited(world))


async def test_spanish_words_for_a_spanish_speaker(world: World):
    await world.grant("carmen", "coordinator")
    csrf = await sign_in_speaking(world, "carmen", "es")
    await post(world, "/cohorts", csrf, name="barrio")
    refused = await post(world, "/schedules/preview", csrf, guide="weekly-checkin",
                         cohort="barrio", cron="0 9 * * LUN", tz="Europe/Madrid")  # fmt: skip
    assert "El campo del día de la semana (el quinto, 0-6 o MON-SUN) no puede ser «LUN»" in (
        text_of(await refused.text()))  # fmt: skip
    shown = await post(world, "/schedules/preview", csrf, guide="weekly-checkin",
                       cohort="barrio", cron="0 9 * * MON", tz="Europe/Madrid")  # fmt: skip
    assert "lun 2026-03-09 09:00 CET" in text_of(await shown.text())


async def test_a_post_without_the_csrf_token_changes_nothing(world: World):
    await coordinator(world)
    refused = await world.client.post("/console/cohorts", data={"name": "riverside"},
                                      allow_redirects=False)  # fmt: skip
    assert refused.status == 403
    assert await world.storage.cohorts() == []


async def test_only_coordinators_and_admins(world: World):
    await world.grant("fay", "facilitator")
    csrf = await world.sign_in("fay")
    assert (await world.client.get("/console/schedules")).status == 403
    assert (await post(world, "/cohorts", csrf, name="riverside")).status == 403
    assert await world.storage.cohorts() == []
    world.client.session.cookie_jar.clear()
    await world.sign_in("root")  # the admin
    assert (await world.client.get("/console/schedules")).status == 200


FIELD_WORDS = st.sampled_from(["*", "0", "9", "25", "60", "*/0", "*/15", "1-5", "MON", "FUN",
                               "JAN", "x", "1,3", "-1", "", "  "])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(max_size=40), st.lists(FIELD_WORDS, min_size=0, max_size=7).map(" ".join)),
    st.sampled_from(["UTC", "America/Chicago", "Mars/Olympus", "", "utc", "../etc"]),
)
def test_whatever_is_typed_a_cron_line_is_accepted_or_refused_saying_why(cron: str, tz: str):
    """Any text as a cron line and a zone: either the scheduler can read it, or there is a
    reason, pointing at what was typed; nothing raises."""
    problem = cron_problem(cron, tz)
    try:
        trigger(cron, tz)
        readable = True
    except ValueError:
        readable = False
    assert (problem is None) == readable
    if problem is None:
        return
    assert problem.reason in {"unknown_tz", "cron_fields", "cron_field"}
    if problem.reason == "unknown_tz":
        assert problem.value == tz and problem.field == "tz"
    elif problem.reason == "cron_fields":
        assert int(problem.part) == len(cron.split()) != 5
    elif problem.part:
        assert problem.value in cron.split() and problem.part in CRON_FIELDS
