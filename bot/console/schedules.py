"""The Cohorts and schedules page (coordinators and admins): create a cohort and see its
join code and link; list schedules with the next time each sends; add one, seeing its next
three times in its own time zone before saving (Preview, then Save: no script needed);
pause, resume and remove (remove asks first).

Every change goes through `admin/schedules.ScheduleDesk`, the same service as
`kitchen-table cohort|schedule`, and is written to the audit log. What the desk refuses
(a cron line it can't read, an unknown time zone) comes back here as a `Problem`, worded
from the console's locale files, with what was typed kept in the form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, available_timezones

from aiohttp import web

from bot.console.context import Visit, see_other
from bot.console.pages import Pages
from bot.features.console import STAFF
from bot.flows.text import localize
from storage.rows import ScheduleRow

if TYPE_CHECKING:
    from admin.schedules import Problem, ScheduleDesk

LONGEST = 100  # what is kept of a typed value to show back: enough for any real cron line or zone
DONE = ("cohort_added", "cohort_exists", "schedule_added", "schedule_paused",
        "schedule_resumed", "schedule_removed")  # fmt: skip
ZONES = sorted(
    z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/"))
)


def setup(pages: Pages) -> None:
    pages.get("/schedules", show, name="schedules", roles=STAFF)
    pages.post("/cohorts", add_cohort, name="cohort_add", roles=STAFF)
    pages.post("/schedules/preview", preview, name="schedule_preview", roles=STAFF)
    pages.post("/schedules/add", add_schedule, name="schedule_add", roles=STAFF)
    pages.post("/schedules/{id}/pause", pause, name="schedule_pause", roles=STAFF)
    pages.post("/schedules/{id}/resume", resume, name="schedule_resume", roles=STAFF)
    pages.get("/schedules/{id}/remove", confirm_remove, name="schedule_remove_ask", roles=STAFF)
    pages.post("/schedules/{id}/remove", remove, name="schedule_remove", roles=STAFF)
    pages.nav("nav_schedules", "schedules", roles=STAFF, order=50)


@dataclass
class Draft:
    """The add-a-schedule form as typed (kept, trimmed, to show back)."""

    guide: str = ""
    cohort: str = ""
    cron: str = ""
    tz: str = ""

    @classmethod
    def read(cls, form: Any) -> Draft:
        def field(name: str) -> str:
            value = form.get(name, "")
            return " ".join(value.split())[:LONGEST] if isinstance(value, str) else ""

        return cls(field("guide"), field("cohort"), field("cron"), field("tz"))


def desk(visit: Visit) -> ScheduleDesk:
    found = visit.services.schedule_desk
    if found is None:
        raise web.HTTPNotFound()  # a console without the desk wired has no such page
    return found


def problem_text(visit: Visit, problem: Problem) -> str:
    """What is wrong, in the reader's words: which part, what was typed, how to fix it."""
    if problem.reason == "cron_field":
        if not problem.part:  # each field reads alone, not together
            return visit.t("problem_cron_line", value=problem.value)
        part = visit.t(f"cron_part_{problem.part}")
        return visit.t("problem_cron_field", part=part, value=problem.value)
    if problem.reason == "cron_fields":
        return visit.t("problem_cron_fields", value=problem.value, count=problem.part)
    if problem.reason == "bad_name":
        return visit.t("problem_bad_name", value=problem.value,
                       suggestion=problem.suggestion or "riverside")  # fmt: skip
    return visit.t(f"problem_{problem.reason}", value=problem.value)


def local_time(visit: Visit, moment: datetime, tz: str) -> str:
    """A time as people read it where the schedule runs: Mon 2026-12-07 09:00 CST."""
    here = moment.astimezone(ZoneInfo(tz))
    weekday = visit.t(f"weekday_{here.isoweekday()}")
    return f"{weekday} {here:%Y-%m-%d %H:%M} {here.tzname()}"


async def page(visit: Visit, *, status: int = 200, **data: Any) -> web.Response:
    """The whole page: cohorts, schedules and the add form (with what `data` adds)."""
    schedules = desk(visit)
    guides = sorted(
        (g.guide.id, localize(g.guide.title, visit.language, g.guide.default_language))
        for g in visit.services.library.all() if g.guide is not None
    )  # fmt: skip
    done = visit.request.query.get("done", "")
    defaults: dict[str, Any] = {
        "cohorts": await schedules.cohorts(),
        "listed": await schedules.listing(visit.now),
        "guides": guides,
        "zones": ZONES,
        "draft": Draft(tz=schedules.default_tz),
        "problem": None,
        "problem_text": None,
        "name_typed": "",
        "name_problem": None,
        "upcoming": None,
        "done": done if done in DONE else "",
        "done_what": visit.request.query.get("what", "")[:LONGEST],
        "bot_link": visit.services.bot_link,
        "local_time": lambda moment, tz: local_time(visit, moment, tz),
    }
    return visit.render("schedules.html", status=status, **{**defaults, **data})


def back(visit: Visit, done: str, what: str, anchor: str) -> web.Response:
    """To the page, saying what was just done (a 303: a reload posts nothing again)."""
    url = visit.request.app.router["schedules"].url_for().with_query(done=done, what=what)
    return see_other(f"{url}#{anchor}")


async def show(visit: Visit) -> web.StreamResponse:
    return await page(visit)


async def add_cohort(visit: Visit) -> web.StreamResponse:
    form = await visit.form()
    typed = str(form.get("name", ""))[:LONGEST]
    cohort, made, problem = await desk(visit).add_cohort(typed.strip(), visit.now)
    if problem is not None:
        return await page(visit, status=400, name_typed=typed,
                          name_problem=problem_text(visit, problem))  # fmt: skip
    assert cohort is not None
    if made:
        await visit.audit("cohort_added", cohort.name)
    return back(visit, "cohort_added" if made else "cohort_exists", cohort.name, "cohorts")


async def preview(visit: Visit) -> web.StreamResponse:
    """The form again, with the next three times (or what is wrong), and Save."""
    draft = Draft.read(await visit.form())
    problem = await desk(visit).check(draft.guide, draft.cohort, draft.cron, draft.tz)
    if problem is not None:
        return await refused(visit, draft, problem)
    from_now = await upcoming(visit, draft)
    return await page(visit, draft=draft, upcoming=from_now)


async def upcoming(visit: Visit, draft: Draft) -> list[str]:
    times = desk(visit).upcoming(draft.cron, draft.tz, visit.now)
    return [local_time(visit, moment, draft.tz) for moment in times]


async def refused(visit: Visit, draft: Draft, problem: Problem) -> web.Response:
    return await page(visit, status=400, draft=draft, problem=problem,
                      problem_text=problem_text(visit, problem))  # fmt: skip


async def add_schedule(visit: Visit) -> web.StreamResponse:
    draft = Draft.read(await visit.form())
    added = await desk(visit).add(draft.guide, draft.cohort, draft.cron, draft.tz, visit.now)
    if not isinstance(added, ScheduleRow):  # what is wrong; nothing was saved
        return await refused(visit, draft, added)
    await visit.audit("schedule_added", f"{added.id}: {added.guide_id} -> {added.cohort}, "
                      f"{added.cron} ({added.tz})")  # fmt: skip
    return back(visit, "schedule_added", added.id, "schedules")


async def _pause(visit: Visit, paused: bool) -> web.StreamResponse:
    schedule_id = visit.request.match_info["id"]
    found = await desk(visit).set_paused(schedule_id, paused, visit.now)
    if found is None:
        raise web.HTTPNotFound()
    what = "schedule_paused" if paused else "schedule_resumed"
    await visit.audit(what, f"{found.id}: {found.guide_id} -> {found.cohort}")
    return back(visit, what, found.id, f"schedule-{found.id}")


async def pause(visit: Visit) -> web.StreamResponse:
    return await _pause(visit, True)


async def resume(visit: Visit) -> web.StreamResponse:
    return await _pause(visit, False)


async def confirm_remove(visit: Visit) -> web.StreamResponse:
    found = await desk(visit).find(visit.request.match_info["id"])
    if found is None:
        raise web.HTTPNotFound()
    return visit.render("schedule_remove.html", schedule=found)


async def remove(visit: Visit) -> web.StreamResponse:
    found = await desk(visit).remove(visit.request.match_info["id"])
    if found is None:
        raise web.HTTPNotFound()
    await visit.audit("schedule_removed", f"{found.id}: {found.guide_id} -> {found.cohort}")
    return back(visit, "schedule_removed", found.id, "schedules")
