"""The Gatherings pages: the live gatherings (a facilitator sees only their own,
coordinators and admins every one); a gathering's page with its live status (joined,
answering, finished, how many at each step), which `static/gathering-live.js` refreshes
every few seconds and which works without it (a Refresh link); opening a new one (its
join code, link and QR code, and a view of them large enough for a projector); Next for
a paced one; Close (asked first) and its summary.

Every decision and change goes through `bot/features/gatherings.Gatherings`, the same
service as `/launch`, `/next`, `/close` and `/summary` in chat, and is written to the
audit log. A gathering launched here has no chat room: its place is the facilitator's
own (as when launched in a private chat), and people join by its code, link or QR code.
"""

from __future__ import annotations

import io
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import segno
from aiohttp import web
from markupsafe import Markup

from bot.console.context import Visit, see_other
from bot.console.pages import Pages
from bot.features.gatherings import HOSTS
from bot.features.roles import ADMIN, COORDINATOR, FACILITATOR
from bot.flows.text import localize
from storage.rows import GatheringRow

if TYPE_CHECKING:
    from bot.features.gatherings import Gatherings

EVERYONE = (FACILITATOR, COORDINATOR, ADMIN)
LONGEST_TITLE = 80  # what the service keeps of a title
REFRESH_SECONDS = 5  # how often the live page asks again (static/gathering-live.js)
RECENT = timedelta(days=30)  # closed gatherings listed: launched within this
RECENT_SHOWN = 20


def setup(pages: Pages) -> None:
    pages.get("/gatherings", show_list, name="gatherings", roles=EVERYONE)
    pages.post("/gatherings", open_new, name="gathering_open", roles=HOSTS)
    pages.get("/gatherings/{id}", show, name="gathering", roles=EVERYONE)
    pages.get("/gatherings/{id}/live", live, name="gathering_live", roles=EVERYONE)
    pages.get("/gatherings/{id}/join", projector, name="gathering_join", roles=EVERYONE)
    pages.get("/gatherings/{id}/qr.svg", qr_image, name="gathering_qr", roles=EVERYONE)
    pages.post("/gatherings/{id}/next", advance, name="gathering_next", roles=HOSTS)
    pages.get("/gatherings/{id}/close", confirm_close, name="gathering_close_ask", roles=HOSTS)
    pages.post("/gatherings/{id}/close", close, name="gathering_close", roles=HOSTS)
    pages.get("/gatherings/{id}/summary", summary, name="gathering_summary", roles=EVERYONE)
    pages.nav("nav_gatherings", "gatherings", roles=EVERYONE, order=20)


def service(visit: Visit) -> Gatherings:
    found = visit.services.gatherings
    if found is None:
        raise web.HTTPNotFound()  # a console without the feature wired has no such page
    return found


def refused(visit: Visit) -> web.Response:
    return visit.render("refused.html", status=403, reason="not_your_gathering")


async def reachable(visit: Visit) -> GatheringRow | web.Response:
    """The gathering in the URL, if this person may see it: a facilitator only their
    own (anyone else's is refused, 403, as if it were any other page not theirs)."""
    gathering = await visit.services.storage.gathering(visit.request.match_info["id"])
    if gathering is None:
        raise web.HTTPNotFound()
    if visit.can(FACILITATOR) and gathering.facilitator != visit.who:
        return refused(visit)
    return gathering


def join_link(visit: Visit, gathering: GatheringRow) -> str | None:
    bot = visit.services.bot_link
    return f"{bot}?start=join-{gathering.code}" if bot else None


def guide_title(visit: Visit, guide_id: str) -> str:
    loaded = visit.services.library.get(guide_id)
    if loaded is None or loaded.guide is None:
        return guide_id
    guide = loaded.guide
    return localize(guide.title, visit.language, guide.default_language)


def to(visit: Visit, route: str, gathering: GatheringRow, **query: str) -> web.Response:
    url = visit.request.app.router[route].url_for(id=gathering.id)
    return see_other(str(url.with_query(query) if query else url))


# The list, and opening a new one -------------------------------------------------


async def recent(visit: Visit) -> list[GatheringRow]:
    """Closed gatherings launched lately, the latest first (each found by its code, which
    no two gatherings share)."""
    storage = visit.services.storage
    held = await storage.gatherings_held(visit.now - RECENT, visit.now + timedelta(seconds=1))
    found: list[GatheringRow] = []
    for each in reversed(held):
        gathering = await storage.gathering_by_code(each.code)
        if gathering is not None and not gathering.is_open:
            found.append(gathering)
    return found


async def show_list(visit: Visit, *, status: int = 200, **data: Any) -> web.Response:
    live_ones = await visit.services.storage.open_gatherings()
    closed = await recent(visit)
    if visit.can(FACILITATOR):
        live_ones = [g for g in live_ones if g.facilitator == visit.who]
        closed = [g for g in closed if g.facilitator == visit.who]
    guides = sorted(
        (g.guide.id, localize(g.guide.title, visit.language, g.guide.default_language))
        for g in visit.services.library.all() if g.guide is not None
    )  # fmt: skip
    defaults: dict[str, Any] = {
        "live": [(g, guide_title(visit, g.guide_id)) for g in live_ones],
        "closed": [(g, guide_title(visit, g.guide_id)) for g in closed[:RECENT_SHOWN]],
        "guides": guides,
        "may_launch": visit.can(*HOSTS),
        "problem": None,
        "typed_title": "",
        "typed_guide": "",
        "longest_title": LONGEST_TITLE,
    }
    return visit.render("gatherings.html", status=status, **{**defaults, **data})


async def open_new(visit: Visit) -> web.StreamResponse:
    form = await visit.form()
    guide_id = str(form.get("guide", ""))[:100]
    title = str(form.get("title", ""))[:LONGEST_TITLE]
    paced = form.get("paced") == "yes"
    if visit.services.library.get(guide_id.lower()) is None:
        return await show_list(visit, status=400, problem="gathering_no_guide",
                               typed_title=title, typed_guide=guide_id)  # fmt: skip
    gathering = await service(visit).open_gathering(
        visit.who, guide_id, title, paced, visit.language, visit.now
    )
    if gathering is None:
        return refused(visit)
    await visit.audit("gathering_opened", f"{gathering.code} {gathering.guide_id}")
    return to(visit, "gathering", gathering, done="opened")


# One gathering -------------------------------------------------------------------


async def status_data(visit: Visit, gathering: GatheringRow) -> dict[str, Any]:
    """What the live part of the page shows: counts, and how many are at each step."""
    gatherings = service(visit)
    report = await gatherings.status(gathering)
    loaded = visit.services.library.get(gathering.guide_id)
    steps: list[tuple[int, str, int]] = []  # (number, words, how many are there)
    if report is not None and loaded is not None and loaded.guide is not None:
        at = dict(report.at_question)
        guide = loaded.guide
        steps.append((0, visit.t("gathering_at_consent"), at.get(0, 0)))
        for number, step in enumerate(guide.questions, start=1):
            words = localize(step.text, visit.language, guide.default_language)
            steps.append((number, words, at.get(number, 0)))
    return {
        "gathering": gathering,
        "report": report,
        "steps": steps,
        "total_steps": len(steps) - 1 if steps else 0,
    }


async def show(visit: Visit) -> web.StreamResponse:
    gathering = await reachable(visit)
    if isinstance(gathering, web.Response):
        return gathering
    gatherings = service(visit)
    done = visit.request.query.get("done", "")
    return visit.render(
        "gathering.html",
        **await status_data(visit, gathering),
        guide_title=guide_title(visit, gathering.guide_id),
        link=join_link(visit, gathering),
        may_run=await gatherings.may_run(visit.who, gathering),
        may_summary=await gatherings.may_read_summary(visit.who, gathering),
        done=done if done in ("opened", "next", "not_paced", "gathering_closed") else "",
        refresh_seconds=REFRESH_SECONDS,
    )


async def live(visit: Visit) -> web.StreamResponse:
    """The live part alone, for the page's script to put in place."""
    gathering = await reachable(visit)
    if isinstance(gathering, web.Response):
        return gathering
    return visit.render("gathering_live.html", **await status_data(visit, gathering))


async def projector(visit: Visit) -> web.StreamResponse:
    """The join code, link and QR code, large, for a room's screen."""
    gathering = await reachable(visit)
    if isinstance(gathering, web.Response):
        return gathering
    return visit.render("gathering_join.html", gathering=gathering,
                        link=join_link(visit, gathering))  # fmt: skip


def qr_svg(content: str) -> bytes:
    """A QR code as SVG, black on white whatever the page's colours, sized by its <img>."""
    buffer = io.BytesIO()
    segno.make(content, error="m").save(
        buffer, kind="svg", scale=1, border=4, xmldecl=False, svgns=True, omitsize=True,
        dark="#000", light="#fff",
    )  # fmt: skip
    return buffer.getvalue()


async def qr_image(visit: Visit) -> web.StreamResponse:
    gathering = await reachable(visit)
    if isinstance(gathering, web.Response):
        return gathering
    # As `/qr` in chat: the deep link where there is one, else what to type.
    content = join_link(visit, gathering) or f"/join {gathering.code}"
    return web.Response(body=qr_svg(content), content_type="image/svg+xml")


async def advance(visit: Visit) -> web.StreamResponse:
    gathering = await reachable(visit)
    if isinstance(gathering, web.Response):
        return gathering
    outcome = await service(visit).advance(visit.who, gathering, visit.now)
    if outcome == "not_your_gathering":
        return refused(visit)
    if isinstance(outcome, str):
        return to(visit, "gathering", gathering, done=outcome)
    part, last = outcome
    await visit.audit("gathering_next", f"{gathering.code} {part}/{last}")
    return to(visit, "gathering", gathering, done="next")


async def confirm_close(visit: Visit) -> web.StreamResponse:
    gathering = await reachable(visit)
    if isinstance(gathering, web.Response):
        return gathering
    if not await service(visit).may_run(visit.who, gathering):
        return refused(visit)
    return visit.render("gathering_close.html", gathering=gathering)


async def close(visit: Visit) -> web.StreamResponse:
    gathering = await reachable(visit)
    if isinstance(gathering, web.Response):
        return gathering
    was_open = gathering.is_open
    closed = await service(visit).close(visit.who, gathering, visit.now)
    if closed is None:
        return refused(visit)
    if was_open:
        await visit.audit("gathering_closed", f"{gathering.code} {gathering.guide_id}")
    return to(visit, "gathering_summary", closed)


async def summary(visit: Visit) -> web.StreamResponse:
    gathering = await reachable(visit)
    if isinstance(gathering, web.Response):
        return gathering
    gatherings = service(visit)
    reports = visit.services.reports
    if not await gatherings.may_read_summary(visit.who, gathering):
        return visit.render("refused.html", status=403, reason="summary_not_yet")
    made = await gatherings.summary(gathering, visit.language)
    if made is None or reports is None:
        raise web.HTTPNotFound()
    # The report's own HTML: every value escaped by its environment on the way out.
    text = Markup(reports.render("summary", "page", visit.language, s=made))
    return visit.render("gathering_summary.html", gathering=gathering, summary=text,
                        guide_title=guide_title(visit, gathering.guide_id))  # fmt: skip
