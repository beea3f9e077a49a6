"""The public report, `/report/GUIDE`: a guide's results for anyone to read, without
sign-in, only for guides marked `public: true` (any other guide: 404).

It shows what the console's results show (`bot/reports/results.py`, the same one
minimum-group rule: every figure from at least k people, "fewer than k" otherwise),
with no breakdown, no free text but quotes from quotable questions, and all answers up
to the start of a day in the console's time zone (today's, once at least k people have
answered each question it shows since the day it last moved to: `published_through`):
the page is the same all day, so it is cacheable (`Cache-Control: public`, an `ETag` of
its body, answered 304 when it matches, `Last-Modified`), and each instance keeps what
it made for as long as a reader's cache may (an hour), so an answer erased today is
gone from it within the hour. It says the date it was made and links to the open data:
the console's open-data page (coordinators download there; the report's readers are
pointed to it as the partnership publishes it), or the console when that page is not
there. It is an aiohttp application of its own, mounted at /report by
`bot/app/web.py`, with the console's stylesheet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.console.context import SERVICES, Services, language_of, render
from bot.console.results_view import ResultsView
from bot.flows.guide import Guide, StepKind
from bot.reports.results import build_results

TEMPLATES = Path(__file__).parent / "templates"
EVER = datetime(2000, 1, 1, tzinfo=UTC)  # before any answer was kept
MAX_AGE = 3600  # seconds a reader or a proxy may keep it before asking again
OPEN_DATA_ROUTE = "opendata"  # the console's open-data page (bot/console/opendata.py)
CONSOLE = web.AppKey("report_console", web.Application)
STYLESHEET = web.AppKey("report_stylesheet", str)
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class Made:
    """A report as made, kept for readers who ask within MAX_AGE (a cache may keep it that
    long anyway), so a busy link costs one build an hour, not one a load."""

    at: datetime
    body: bytes
    tag: str  # its ETag
    until: datetime  # the answers it shows are those given before this moment


MADE = web.AppKey("report_made", dict)
PUBLISHED = "public-report"  # records: the moment each guide's public report runs up to


def make_reports(services: Services, console: web.Application, stylesheet: str) -> web.Application:
    """The public reports, reading through the console's `services`; `console` is the
    console's application (for its open-data page's address), `stylesheet` the address
    of its stylesheet."""
    app = web.Application()
    app[SERVICES] = services
    app[CONSOLE] = console
    app[STYLESHEET] = stylesheet
    app[MADE] = {}  # (guide, its hash, language, day) -> Made
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_get("/{guide}", show, name="report")
    return app


async def published_through(services: Services, guide: Guide, today: datetime) -> datetime:
    """The moment a guide's public report runs up to: `today` (its start) once every
    question answered since the moment it ran up to before was answered by at least the
    minimum group of people, else that moment still. Moved on daily, anyone comparing
    two days' pages saw what the one or two people who answered between them said (found
    by review); moved on only so, each question's difference is a group's, as every
    figure is. Only the questions the report shows count (not `sensitive` ones, nor
    written answers it never quotes). Kept in the database, so that every instance shows
    the same."""
    storage = services.storage
    shown = {s.id for s in guide.questions
             if not s.sensitive and (s.kind is not StepKind.ASK or s.quotable)}  # fmt: skip
    kept = await storage.record(PUBLISHED, guide.id, services.clock())
    if kept is not None:
        through = datetime.fromisoformat(kept.decode())
        if through >= today:
            return through
        # Counted as the report counts who answered (`answer_people`, as `build_results`).
        since = await storage.answer_people(guide.id, through, today, sorted(shown))
        if not since or min(c.count for c in since) < services.min_group:
            return through
    await storage.put_record(PUBLISHED, guide.id, today.isoformat().encode())
    return today


def _not_found(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    response = render(request, "report_missing.html", services,
                      language_of(request, services.strings.languages), status=404,
                      stylesheet=request.app[STYLESHEET])  # fmt: skip
    response.headers.update(HEADERS)
    return response


def _open_data(request: web.Request, guide_id: str) -> str:
    router = request.app[CONSOLE].router
    if OPEN_DATA_ROUTE in router:
        return str(router[OPEN_DATA_ROUTE].url_for().with_query(guide=guide_id))
    return str(router["overview"].url_for())


async def show(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    loaded = services.library.get(request.match_info["guide"])
    if loaded is None or loaded.guide is None or not loaded.guide.public:
        return _not_found(request)
    guide = loaded.guide
    language = language_of(request, services.strings.languages)
    now = services.clock()
    zone = ZoneInfo(services.timezone)
    today = now.astimezone(zone).date()
    key = (guide.id, loaded.hash, language, today)
    made = request.app[MADE]
    kept = made.get(key)
    if kept is None or now - kept.at >= timedelta(seconds=MAX_AGE):
        # Up to the start of today (the same all day), once enough people answered since.
        until = await published_through(services, guide, datetime.combine(today, time(), zone))
        results = await build_results(services.storage, guide, EVER, until,
                                      min_group=services.min_group, language=language)  # fmt: skip
        show_ = ResultsView(lambda key, **p: services.strings.text(language, key, **p),
                            services.min_group)  # fmt: skip
        page = render(
            request, "report.html", services, language, results=results, show=show_,
            up_to=(until.astimezone(zone).date() - timedelta(days=1)).isoformat(),
            made=today.isoformat(), min_group=services.min_group,
            open_data=_open_data(request, guide.id), stylesheet=request.app[STYLESHEET],
        )  # fmt: skip
        assert isinstance(page.body, bytes)
        tag = '"' + hashlib.sha256(page.body).hexdigest()[:32] + '"'
        kept = Made(now, page.body, tag, until)
        for old in [k for k, v in made.items() if now - v.at >= timedelta(seconds=MAX_AGE)]:
            del made[old]  # what no reader should get any more
        made[key] = kept
    response = web.Response(body=kept.body, content_type="text/html", charset="utf-8")
    tag = kept.tag
    response.headers.update(HEADERS)
    response.headers.update({
        "Cache-Control": f"public, max-age={MAX_AGE}",
        "ETag": tag,
        "Last-Modified": format_datetime(kept.until.astimezone(UTC), usegmt=True),
        "Vary": "Accept-Language",
    })  # fmt: skip
    if tag in {part.strip() for part in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers={k: response.headers[k] for k in (
            "Cache-Control", "ETag", "Last-Modified", "Vary")})  # fmt: skip
    return response
