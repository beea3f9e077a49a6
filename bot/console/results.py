"""The Results pages: the guides to choose from, and one guide's results over a date range
(each question as a chart with a table, any question broken down by a choice question,
how far people got, quotes), for coordinators and admins.

Figures come from the read side (`bot/reports/results.py`), which keeps the
minimum-group rule; this module reads the query string and renders. Every view's state
is in its query string (guide, dates, question and what it is broken down by: nothing
that names a person), so its address is its permalink. Facilitators don't see results:
their own gatherings' figures would need answers read by gathering, which the read side
doesn't do; they read a gathering's summary instead.
"""

from __future__ import annotations

from aiohttp import web

from bot.console.context import Visit
from bot.console.pages import Pages
from bot.console.results_view import ResultsView, read_view
from bot.console.themes_page import summaries
from bot.features.console import STAFF
from bot.flows.text import localize
from bot.reports.results import build_results


def setup(pages: Pages) -> None:
    pages.get("/results", guides, name="results", roles=STAFF)
    pages.get("/results/{guide}", show, name="guide_results", roles=STAFF)
    pages.nav("nav_results", "results", roles=STAFF, order=20)


async def guides(visit: Visit) -> web.StreamResponse:
    found = [
        (loaded.guide.id, localize(loaded.guide.title, visit.language, loaded.guide.default_language))
        for loaded in visit.services.library.all()
        if loaded.guide is not None
    ]  # fmt: skip
    found.sort(key=lambda item: item[1].casefold())
    return visit.render("results_guides.html", guides=found)


async def show(visit: Visit) -> web.StreamResponse:
    services = visit.services
    loaded = services.library.get(visit.request.match_info["guide"])
    if loaded is None or loaded.guide is None:
        raise web.HTTPNotFound()
    view = read_view(visit.request.query, visit.now, services.timezone)
    results = await build_results(
        services.storage, loaded.guide, view.since, view.until, min_group=services.min_group,
        language=visit.language, question=view.question, by=view.by,
    )  # fmt: skip
    # The permalink: this page's address, with every part of the view in its query.
    path = visit.request.app.router["guide_results"].url_for(guide=loaded.guide.id)
    # Relative, so it holds on whatever address the console is reached by.
    permalink = str(path.with_query(view.query()))
    return visit.render("results.html", results=results, view=view, permalink=permalink,
                        show=ResultsView(visit.t, services.min_group),
                        themes=await summaries(visit, loaded.guide, results, view))  # fmt: skip
