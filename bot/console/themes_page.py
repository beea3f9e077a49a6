"""The Themes pages (issue #22), for coordinators and admins: what people wrote to a
free-text question, grouped into themes (each with its label, how many people, its
language and up to three quotes), and the codebook a coordinator corrects: rename a
theme, merge two, or split one off by choosing example answers.

Everything goes through `ThemeService` (`bot/reports/themes/service.py`), as the CLI's
`kitchen-table themes` does; the service keeps the minimum-group rule and never returns
anything from a sensitive question. The period is read as the Results page reads it
(`from`, `to`), and every form sends it back, because a candidate theme's id holds only
for the same answers. An edit that can't be made (`CodebookError`) is shown on the page
with the form as it was typed, and nothing is saved; each edit is audited.

`summaries` gives the Results page its few lines per question, from `ThemesCache` only,
so the Results page never waits for grouping.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup

from bot.console.context import SERVICES, Visit, see_other
from bot.console.pages import Pages
from bot.console.results_view import View, read_view
from bot.console.themes_cache import JUST_SAVED, THEMES_CACHE, WARM_MOST, Key, ThemesCache
from bot.features.console import STAFF
from bot.flows.guide import Guide, Step
from bot.flows.text import localize
from bot.reports.results import Results
from bot.reports.themes.codebook import CodebookError
from bot.reports.themes.model import Theme, Themes
from bot.reports.themes.service import ThemeService, free_text_steps, without_answers

SUMMARY_MOST = 3  # themes named on the Results page; the rest are a click away


def setup(pages: Pages) -> None:
    cache = ThemesCache(pages.app[SERVICES].clock)
    pages.app[THEMES_CACHE] = cache
    pages.app.on_cleanup.append(cache.close)
    pages.get("/themes", index, name="themes", roles=STAFF)
    pages.get("/themes/{guide}/{step}", show, name="themes_question", roles=STAFF)
    pages.post("/themes/{guide}/{step}/rename", rename, name="themes_rename", roles=STAFF)
    pages.post("/themes/{guide}/{step}/merge", merge, name="themes_merge", roles=STAFF)
    pages.get("/themes/{guide}/{step}/split", split_form, name="themes_split", roles=STAFF)
    pages.post("/themes/{guide}/{step}/split", split, name="themes_split_save", roles=STAFF)
    pages.nav("nav_themes", "themes", roles=STAFF, order=25)


def service_of(visit: Visit) -> ThemeService:
    services = visit.services
    return ThemeService(services.storage, services.library, min_group=services.min_group)


def _cache(visit: Visit) -> ThemesCache | None:
    return visit.request.app.get(THEMES_CACHE)


def _text(visit: Visit, guide: Guide, words: Any) -> str:
    return localize(words, visit.language, guide.default_language)


def error_text(visit: Visit, error: CodebookError) -> str:
    """A CodebookError in the reader's language: the console's own words when it has
    them (the bot's mention the CLI), else the bot's phrase the key names."""
    try:
        return visit.t(error.key, **error.params)
    except KeyError:
        pass
    reports = visit.services.reports
    if reports is not None:
        try:
            return reports.phrases.text(visit.language, error.key, **error.params)
        except KeyError:
            pass
    return visit.t("themes_error_other")


def _language(visit: Visit, code: str) -> str:
    try:
        return visit.t(f"themes_language_{code}")
    except KeyError:
        return code


async def index(visit: Visit) -> web.StreamResponse:
    """Every guide's free-text questions, each a link to its themes."""
    found = []
    for loaded in visit.services.library.all():
        guide = loaded.guide
        if guide is None:
            continue
        steps = [(s.id, _text(visit, guide, s.text)) for s in free_text_steps(guide)]
        if steps:
            found.append((guide.id, _text(visit, guide, guide.title), steps))
    found.sort(key=lambda item: item[1].casefold())
    return visit.render("themes_index.html", guides=found)


QuestionPage = Callable[[Visit, Guide, Step], Awaitable[web.StreamResponse]]


def _on_question(page: QuestionPage) -> Callable[[Visit], Awaitable[web.StreamResponse]]:
    """A page about the guide and question its address names, given them; or a 404 page
    saying what is wrong with the address."""

    async def handler(visit: Visit) -> web.StreamResponse:
        match = visit.request.match_info
        try:
            guide, step = service_of(visit).question(match["guide"], match["step"])
        except CodebookError as error:
            message = error_text(visit, error)
            return visit.render("themes_missing.html", status=404, message=message)
        return await page(visit, guide, step)

    return handler


def _period(visit: Visit, source: Mapping[str, str]) -> View:
    return read_view(source, visit.now, visit.services.timezone)


DONE = ("renamed", "merged", "split")  # what the page says after an edit (`?done=`)


def _here(visit: Visit, guide: Guide, step: Step, view: View, done: str = "") -> str:
    """The themes of this period: its permalink (`done`: after an edit, says it was saved)."""
    path = visit.request.app.router["themes_question"].url_for(guide=guide.id, step=step.id)
    query = {"from": view.start.isoformat(), "to": view.end.isoformat()}
    return str(path.with_query({**query, "done": done} if done else query))


async def _render_page(
    visit: Visit, guide: Guide, step: Step, view: View, *, status: int = 200,
    error: str | None = None, kept: Mapping[str, str] | None = None, done: str = "",
) -> web.Response:  # fmt: skip
    key: Key = (guide.id, step.id, view.since, view.until)
    cache = _cache(visit)
    service = service_of(visit)
    themes = None
    if cache is not None and done in DONE:
        themes = await cache.get(key, _still_holding(service, key), JUST_SAVED)
    if themes is None:
        themes = without_answers(await service.themes(*key))
        if cache is not None:
            cache.put(key, themes)
    results = visit.request.app.router["guide_results"].url_for(guide=guide.id)
    return visit.render(
        "themes.html", status=status, guide=guide, step=step, view=view, found=themes,
        title=_text(visit, guide, guide.title), question=_text(visit, guide, step.text),
        permalink=_here(visit, guide, step, view), error=error, kept=kept or {},
        done=done if done in DONE and error is None else "",
        results=str(results.with_query({"from": view.start.isoformat(),
                                        "to": view.end.isoformat()})),
        label=lambda theme: theme.label or visit.t("themes_unnamed"),
        language_name=lambda code: _language(visit, code),
        quotable=step.quotable, min_group=visit.services.min_group,
    )  # fmt: skip


@_on_question
async def show(visit: Visit, guide: Guide, step: Step) -> web.StreamResponse:
    query = visit.request.query
    return await _render_page(visit, guide, step, _period(visit, query), done=query.get("done", ""))


async def _edit(visit: Visit, guide: Guide, step: Step, what: str) -> web.StreamResponse:
    """A rename or a merge: made through the service, audited, then back to the themes of
    the same period; or, when it can't be made, the page again with the error and the
    form as typed (nothing saved)."""
    form = await visit.form()
    view = _period(visit, form)
    service = service_of(visit)
    kept = {key: str(form.get(key, "")) for key in ("theme", "name", "keep", "gone")}
    kept["form"] = what
    try:
        if what == "rename":
            shown = await service.rename(guide.id, step.id, kept["theme"], kept["name"], view.since,
                                 view.until)  # fmt: skip
            detail = f"{guide.id} · {step.id} · {kept['theme']} → {' '.join(kept['name'].split())}"
        else:
            shown = await service.merge(guide.id, step.id, kept["keep"], kept["gone"], view.since,
                                view.until)  # fmt: skip
            detail = f"{guide.id} · {step.id} · {kept['gone']} → {kept['keep']}"
    except CodebookError as error:
        _refused(visit, guide, step, error)
        return await _render_page(visit, guide, step, view, status=422,
                                  error=error_text(visit, error), kept=kept)  # fmt: skip
    _saved(visit, guide, step, view, shown)
    await visit.audit(f"themes_{what}d", detail)
    return see_other(_here(visit, guide, step, view, f"{what}d"))


@_on_question
async def rename(visit: Visit, guide: Guide, step: Step) -> web.StreamResponse:
    return await _edit(visit, guide, step, "rename")


@_on_question
async def merge(visit: Visit, guide: Guide, step: Step) -> web.StreamResponse:
    return await _edit(visit, guide, step, "merge")


def _refused(visit: Visit, guide: Guide, step: Step, error: CodebookError) -> None:
    """An edit refused because someone else changed the codebook first (perhaps on
    another instance, whose edit this one's cache never heard of): the page shows the
    themes as they are now, found afresh."""
    cache = _cache(visit)
    if cache is not None and error.key == "themes_error_changed_meanwhile":
        cache.forget(guide.id, step.id)


def _saved(visit: Visit, guide: Guide, step: Step, view: View, shown: Themes) -> None:
    """The codebook changed: this question's themes found before no longer hold; these
    (what the edit gave, for this period) are the page's next."""
    cache = _cache(visit)
    if cache is not None:
        cache.forget(guide.id, step.id)
        cache.put((guide.id, step.id, view.since, view.until), without_answers(shown))


async def _render_split(
    visit: Visit, guide: Guide, step: Step, view: View, theme_id: str, *, status: int = 200,
    error: str | None = None, chosen: frozenset[str] = frozenset(), name: str = "",
) -> web.Response:  # fmt: skip
    service = service_of(visit)
    key: Key = (guide.id, step.id, view.since, view.until)
    cache = _cache(visit)
    # The page the coordinator came from, unless its codebook has changed since.
    themes = await cache.get(key, _still_holding(service, key)) if cache else None
    theme = next((t for t in themes.themes if t.id == theme_id), None) if themes else None
    if theme is None:
        themes = without_answers(await service.themes(*key))
        theme = next((t for t in themes.themes if t.id == theme_id), None)
    examples = []
    if theme is None:  # an old link, or new answers moved it: say so, as a missing page
        error = error or error_text(visit, CodebookError("themes_error_unknown", theme=theme_id))
        status = 404 if status == 200 else status
    else:
        try:
            examples = await service.examples(guide.id, step.id, theme_id, view.since,
                                              view.until)  # fmt: skip
        except CodebookError as problem:
            error = error or error_text(visit, problem)
    return visit.render(
        "themes_split.html", status=status, guide=guide, step=step, view=view,
        theme=theme, theme_id=theme_id, examples=examples, error=error, chosen=chosen,
        name=name, back=_here(visit, guide, step, view),
        title=_text(visit, guide, guide.title), question=_text(visit, guide, step.text),
        label=_label(visit, theme),
    )  # fmt: skip


def _label(visit: Visit, theme: Theme | None) -> str:
    return (theme.label or visit.t("themes_unnamed")) if theme else ""


@_on_question
async def split_form(visit: Visit, guide: Guide, step: Step) -> web.StreamResponse:
    query = visit.request.query
    theme_id = query.get("theme", "")
    view = _period(visit, query)
    if not theme_id:
        return see_other(_here(visit, guide, step, view))
    return await _render_split(visit, guide, step, view, theme_id)


@_on_question
async def split(visit: Visit, guide: Guide, step: Step) -> web.StreamResponse:
    form = await visit.form()
    view = _period(visit, form)
    theme_id = str(form.get("theme", ""))
    chosen = [str(value) for value in form.getall("answer", [])]
    name = str(form.get("name", ""))
    try:
        shown = await service_of(visit).split(guide.id, step.id, theme_id, chosen,
                                      name if name.strip() else None, view.since,
                                      view.until)  # fmt: skip
    except CodebookError as error:
        _refused(visit, guide, step, error)
        return await _render_split(visit, guide, step, view, theme_id, status=422,
                                   error=error_text(visit, error), chosen=frozenset(chosen),
                                   name=name)  # fmt: skip
    _saved(visit, guide, step, view, shown)
    named = f" → {' '.join(name.split())}" if name.strip() else ""
    await visit.audit("themes_split", f"{guide.id} · {step.id} · {theme_id}: {len(chosen)}"
                                      f" answers{named}")  # fmt: skip
    return see_other(_here(visit, guide, step, view, "split"))


async def summaries(visit: Visit, guide: Guide, results: Results, view: View) -> dict[str, Markup]:
    """For the Results page: each free-text question's top themes with their sizes, when
    found lately with the codebook it has now (`ThemesCache`), and the link to its Themes
    page. A question with few answers is grouped in the background for the next visit;
    the page never waits for grouping (only for each codebook's row)."""
    cache = _cache(visit)
    if cache is None:  # a console without this module: no Themes page to link to
        return {}
    answered = {q.id: q.responses.value for q in results.questions}
    env = aiohttp_jinja2.get_env(visit.request.app)
    template = env.get_template("themes_summary.html")
    service = service_of(visit)
    found: dict[str, Markup] = {}
    for step in free_text_steps(guide):
        key: Key = (guide.id, step.id, view.since, view.until)
        people = answered.get(step.id)
        if not people:  # fewer than the minimum group answered: no themes to find
            continue
        themes = await cache.get(key, _still_holding(service, key))
        if themes is None and people <= WARM_MOST:
            cache.warm(key, _finder(service, key))
        link = visit.request.app.router["themes_question"].url_for(guide=guide.id, step=step.id)
        query = {"from": view.start.isoformat(), "to": view.end.isoformat()}
        found[step.id] = Markup(template.render(
            t=visit.t, found=themes, most=SUMMARY_MOST, min_group=visit.services.min_group,
            link=str(link.with_query(query)), step=step.id,
            label=lambda theme: theme.label or visit.t("themes_unnamed"),
        ))  # fmt: skip
    return found


def _still_holding(service: ThemeService, key: Key) -> Callable[[Themes], Awaitable[bool]]:
    """Whether a kept copy of these themes still holds (`ThemeService.still_hold`)."""
    guide, step, _, until = key

    async def hold(themes: Themes) -> bool:
        return await service.still_hold(themes, guide, step, until)

    return hold


def _finder(service: ThemeService, key: Key) -> Any:
    guide, step, since, until = key

    async def find() -> Themes:
        return without_answers(await service.themes(guide, step, since, until))

    return find
