"""Themes where people read them, against golden files: the weekly digest as text,
Markdown and an HTML page, and a gathering's closing summary as a chat shows it.
Participants' words are escaped for each target; nothing from the sensitive question;
English and Spanish answers grouped apart. `KT_UPDATE_GOLDEN=1` rewrites the files
(read the diff before committing it)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from bot.reports.digest import build_digest
from bot.reports.summary import summarize
from tests.conftest import Harness

GOLDEN = Path(__file__).parent / "data" / "themes" / "golden"
GUIDE = """
guide: talk
version: 1
languages: [en, es]
title: {en: Talk about work, es: Hablemos del trabajo}
steps:
  - id: changed
    ask:
      en: What has changed at your work this year?
      es: ¿Qué ha cambiado en tu trabajo este año?
    quotable: true
  - id: private
    ask: {en: Anything just for us?, es: ¿Algo solo para nosotros?}
    sensitive: true
"""
ENGLISH = ["pay has not kept up with rent", "we need better pay", "pay raise was tiny",
           "the pay is too low for rent", "<b>better pay</b> & *rent* help", "better pay please",
           "my hours got cut", "hours cut to 20 a week", "they cut hours without notice",
           "hours cut again", "fewer hours every month, cut cut cut", "hours cut for everyone",
           "nothing much"]  # fmt: skip
SPANISH = ["nos recortaron las horas", "me quitaron horas", "menos horas cada semana",
           "recortaron horas otra vez", "horas recortadas a todos", "las horas no alcanzan"]  # fmt: skip


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("KT_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


async def _answered(h: Harness) -> None:
    for n, text in enumerate(ENGLISH):
        await h.say("/start talk", user=f"en{n}")
        await h.say(text, user=f"en{n}")
        await h.say(f"between us {n}", user=f"en{n}")
    for n, text in enumerate(SPANISH):
        await h.say("/start talk", user=f"es{n}", language="es")
        await h.say(text, user=f"es{n}", language="es")
        await h.say(f"solo entre nosotros {n}", user=f"es{n}", language="es")


async def test_the_digest_shows_themes_in_every_format(make_harness) -> None:  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    start = h.clock()
    await _answered(h)
    digest = await build_digest(h.storage, h.library, start, h.clock() + timedelta(seconds=1),
                                min_group=5)  # fmt: skip
    (talk,) = digest.guides
    (question,) = talk.themes
    assert {t.language for t in question.found.themes} == {"en", "es"}
    assert all(t.people >= 5 for t in question.found.themes)
    reports = h.house.reports
    text = reports.render("digest", "text", "en", d=digest)
    markdown = reports.render("digest", "md", "en", d=digest)
    page = reports.render("digest_page", "page", "en", d=digest)
    for shown in (text, markdown, page):
        assert "between us" not in shown and "entre nosotros" not in shown
    assert "<b>better pay</b>" not in page and "&lt;b&gt;better pay&lt;/b&gt;" in page
    assert "\\<b\\>better pay\\</b\\> \\& \\*rent\\*" in markdown
    golden("digest.txt", text + "\n")
    golden("digest.md", markdown + "\n")
    golden("digest.html", page + "\n")


async def test_a_gathering_summary_shows_the_room_its_themes(make_harness) -> None:  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    await _answered(h)
    guide = h.library.get("talk").guide  # type: ignore[union-attr]
    runs, answers = [], []
    for user in [f"en{n}" for n in range(len(ENGLISH))] + [f"es{n}" for n in range(len(SPANISH))]:
        (kept,) = (await h.storage.mine(h.pseudonym(user))).runs
        run = await h.storage.run(kept.id)
        assert run is not None
        runs.append(run)
        answers += await h.storage.answers(run.id)
    summary = summarize(guide, "en", "Tuesday supper", runs, answers, 5, seed="g1")  # type: ignore[arg-type]
    assert len(summary.themes) == 1
    reports = h.house.reports
    telegram = reports.render("summary", "html", "en", s=summary)
    assert "&lt;b&gt;better pay&lt;/b&gt;" in telegram and "between us" not in telegram
    golden("summary.telegram.html", telegram + "\n")
    golden("summary.txt", reports.render("summary", "text", "en", s=summary) + "\n")


async def test_words_quoted_under_a_theme_are_not_quoted_again_below(make_harness) -> None:  # type: ignore[no-untyped-def]
    """ "In their own words" leaves out what a theme above already quotes, in digests
    (whatever the draw: ten periods, ten draws) and in a gathering's summary."""
    h: Harness = make_harness(GUIDE)
    start = h.clock()
    await _answered(h)
    for late in range(10):
        digest = await build_digest(h.storage, h.library, start - timedelta(seconds=late),
                                    h.clock() + timedelta(seconds=1), min_group=5)  # fmt: skip
        (talk,) = digest.guides
        under_themes = {q for qt in talk.themes for t in qt.found.themes for q in t.quotes}
        assert len(under_themes) == 9 and len(talk.quotes) == 3
        assert not under_themes & set(talk.quotes)
    guide = h.library.get("talk").guide  # type: ignore[union-attr]
    kept = [(await h.storage.mine(h.pseudonym(u))).runs[0].id
            for u in [f"en{n}" for n in range(len(ENGLISH))]]  # fmt: skip
    rows = [run for run_id in kept if (run := await h.storage.run(run_id)) is not None]
    answers = [a for row in rows for a in await h.storage.answers(row.id)]
    for seed in range(10):
        summary = summarize(guide, "en", "Supper", rows, answers, 5, seed=f"g{seed}")  # type: ignore[arg-type]
        under_themes = {q for qt in summary.themes for t in qt.found.themes for q in t.quotes}
        assert under_themes and summary.quotes
        assert not under_themes & set(summary.quotes)
