"""Coordinators' digests: figures and their change, small-group suppression, escaping in
every format, the /digest command, the weekly digest sent once and saved as a page, and
free text read a page at a time keeping the rules it had when read all at once."""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import json
import random
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.features.digests import DigestArchive, remove_kept_pages
from bot.flows.scrub import scrub
from bot.reports.digest import build_digest
from bot.reports.stopwords import STOP_WORDS
from bot.scheduling.scheduler import DIGEST, LEASE, Scheduler
from storage.rows import AnswerRow, Commit, RunRow
from tests.conftest import Harness

GUIDE = """
guide: pulse
version: 1
title: Pulse
steps:
  - id: sector
    choose: What do you do?
    options: [Retail, Health care, Other]
  - id: week
    scale: How was your week?
    labels: {1: Hard, 5: Good}
  - id: hope
    ask: One hope for next week?
    quotable: true
  - id: private
    ask: Anything just for us?
    sensitive: true
"""
OTHER = """
guide: other
version: 1
title: Other talk
steps:
  - id: q
    ask: Say something.
"""
TRICKY = "<script>alert(1)</script> *bold* <!channel> {{ 7*7 }} {% if x %} & more rest"


async def answer(h: Harness, who: str, *answers: str, guide: str = "pulse") -> None:
    await h.say(f"/start {guide}", user=who)
    for text in answers:
        await h.say(text, user=who)


async def test_figures_changes_and_suppression(make_harness):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE, OTHER)
    for n in range(5):  # last week
        await answer(h, f"a{n}", "1", "2", "More rest please", "secret-a")
    h.clock.advance(days=7)
    for n in range(7):  # this week
        await answer(h, f"b{n}", str(1 + n % 2), "4", f"More rest and fair pay {n}", f"secret-{n}")
    for n in range(3):
        await answer(h, f"c{n}", "hello there", guide="other")
    second = timedelta(seconds=1)  # the weeks are [last answers + 1 s, this week's + 1 s)
    digest = await build_digest(h.storage, h.library, h.clock() - timedelta(days=7) + second,
                                h.clock() + second, min_group=5)  # fmt: skip
    text = h.house.reports.render("digest", "text", "en", d=digest)
    pulse = text.split("Other talk")[0]
    assert "People: 7, of whom new: 7 (+2)" in pulse
    assert "Started: 7 · finished: 7 · completion 100%" in pulse
    # 4 chose Retail now (5 the week before) and 3 Health care: too few to show, or to
    # compare; neither can be worked out from the 7 who answered.
    assert "fewer than 5 · Retail\n" in pulse and "fewer than 5 · Health care\n" in pulse
    assert "0 · Other" in pulse
    assert re.search(r"0 · 1 Hard – 3\n.* 7 · 4\n.* 0 · 5 Good\n", pulse)  # all said 4
    assert "Middle value: 4 · the period before: 2" in pulse
    assert "rest" in pulse.split("Words that came up often")[1] and "fair pay" in pulse
    quotes = re.findall(r"“(.*)”", pulse.split("In their own words")[1])  # not themes' quotes
    assert len(quotes) == 3 and all(q.startswith("More rest and fair pay") for q in quotes)
    assert "secret-" not in text and "just for us" not in text  # sensitive: never
    other = text.split("Other talk")[1]
    assert "Fewer than 5 people took part" in other and "hello" not in other


async def test_someone_who_answered_often_counts_once(make_harness):  # type: ignore[no-untyped-def]
    """Five people chose Retail; one of them then ran the guide five more times and chose
    Health care each time. Counted by answers, "5 · Health care" would show that one
    person's answer as if five people gave it."""
    h: Harness = make_harness(GUIDE)
    for n in range(5):
        await answer(h, f"p{n}", "1", "3", "More rest", "x")
    for _ in range(5):
        await answer(h, "p0", "2", "3", "Again", "x")
    digest = await build_digest(h.storage, h.library, h.clock() - timedelta(days=1),
                                h.clock() + timedelta(seconds=1), min_group=5)  # fmt: skip
    text = h.house.reports.render("digest", "text", "en", d=digest)
    assert "People: 5" in text
    # One person said Health care: shown only together with Retail, and counted once.
    assert "6 · Retail / Health care\n" in text
    assert not re.search(r"\d · Health care\n", text)
    assert re.search(r" 5 · 3\n", text)  # five people said 3, however often


async def test_participant_text_is_shown_literally_in_every_format(make_harness):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    for n in range(5):
        await answer(h, f"p{n}", "1", "3", TRICKY, "x")
    digest = await build_digest(h.storage, h.library, h.clock() - timedelta(days=1),
                                h.clock() + timedelta(seconds=1), min_group=5)  # fmt: skip
    render = h.house.reports.render
    text = render("digest", "text", "en", d=digest)
    assert TRICKY in text  # plain text: exactly as typed, the template syntax untouched
    html = render("digest", "html", "en", d=digest)
    assert "&lt;script&gt;" in html and "<script>" not in html and "{{ 7*7 }}" in html
    assert "49" not in html
    mrkdwn = render("digest", "mrkdwn", "en", d=digest)
    assert "&lt;!channel&gt;" in mrkdwn and "<!channel>" not in mrkdwn
    md = render("digest", "md", "en", d=digest)
    assert r"\<script\>" in md and r"\*bold\*" in md
    page = render("digest_page", "page", "en", d=digest)
    assert page.startswith("<!doctype html>") and "<svg" in page and "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_the_digest_command_is_for_coordinators(make_harness):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    refused = await h.say("/digest", user="p1")
    assert "Only coordinators" in refused[0].text
    code = await h.house.roles.invite("coordinator", timedelta(days=1))
    await h.say(f"/redeem {code}", user="coord")
    digest = await h.say("/digest", user="coord")
    assert digest[0].markup is not None and "What people said" in digest[0].text


async def test_the_weekly_digest_goes_to_coordinators_once_and_is_in_the_archive(make_harness):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    code = await h.house.roles.invite("coordinator", timedelta(days=1))
    await h.say(f"/redeem {code}", user="coord")
    for n in range(5):
        await answer(h, f"p{n}", "1", "3", "Time with family", "x")
    scheduler = Scheduler(h.storage, h.dispatcher, h.library, h.clock,
                          digest_cron="0 8 * * MON", timezone="UTC",
                          digests=h.house.digests)  # fmt: skip
    await scheduler.tick()  # starts the clock on digests: nothing is due yet
    h.clock.now = h.clock.now.replace(day=9, hour=8)  # the next Monday, 08:00
    first, second = await scheduler.tick(), await scheduler.tick()
    await h.deliverer.drain("terminal")
    assert (first.digests, second.digests) == (1, 0)
    sent = [m for a, m in h.channel.sent if a == "coord" and m.markup]
    assert len(sent) == 1 and "5 took part" not in sent[0].text
    assert "People: 5, of whom new: 5" in sent[0].text
    archive = DigestArchive(h.storage, h.house.digests, DIGEST)
    assert await archive.days() == [date(2026, 3, 9)]
    page = await archive.page(date(2026, 3, 9))
    assert page is not None and "Time with family" in page
    assert await archive.page(date(2026, 3, 2)) is None


async def test_templates_can_be_replaced_from_a_folder(make_harness, tmp_path):  # type: ignore[no-untyped-def]
    from bot.locales import load_phrasebook
    from bot.reports.render import Reports

    h: Harness = make_harness(GUIDE)
    (tmp_path / "digest.j2").write_text(
        "Our own digest: {{ d.guides | length }} guide(s), {{ t('digest_fewer', min=5) }}"
    )
    reports = Reports(load_phrasebook(), tmp_path)
    digest = await build_digest(h.storage, h.library, h.clock() - timedelta(days=7), h.clock(),
                                min_group=5)  # fmt: skip
    assert (
        reports.render("digest", "text", "en", d=digest)
        == "Our own digest: 0 guide(s), fewer than 5"
    )
    page = reports.render("digest_page", "page", "en", d=digest)
    assert page.startswith("<!doctype html>")  # templates not replaced stay ours


RULES = """
guide: rules
version: 1
title: Rules
steps:
  - id: a
    ask: What happened?
    quotable: true
  - id: b
    ask: And then?
    quotable: true
  - id: c
    ask: Anything else?
"""
WORDS = ["rest", "pay", "the", "and", "it's", "we", "shifts", "café", "don't", "a", "night",
         "x1", "overtime", "no", "bus", "'tis", "rock'n'roll", "ÉTÉ", "to", "fair"]  # fmt: skip


def reference(rows: list[tuple[str, str, str]], min_group: int, seed: str):  # type: ignore[no-untyped-def]
    """Words, phrases and quotes as the digest chose them when it read every text at once
    (rows in the order answered): the rules the paged reading must keep."""
    word = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
    words: dict[str, set[str]] = defaultdict(set)
    phrases: dict[str, set[str]] = defaultdict(set)
    for who, _step, text in rows:
        tokens = [t for t in word.findall(text.lower()) if len(t) > 2]
        kept = [t if t not in STOP_WORDS else None for t in tokens]
        for token in kept:
            if token:
                words[token].add(who)
        for first, second in itertools.pairwise(kept):
            if first and second:
                phrases[f"{first} {second}"].add(who)

    def top(found: dict[str, set[str]], most: int) -> list[tuple[str, int]]:
        ranked = sorted(found.items(), key=lambda item: (-len(item[1]), item[0]))
        return [(w, len(who)) for w, who in ranked if len(who) >= min_group][:most]

    by_step: dict[str, dict[str, str]] = defaultdict(dict)
    for who, step, text in rows:
        if step in ("a", "b"):
            by_step[step][who] = text
    candidates: dict[str, list[str]] = defaultdict(list)
    for answers in by_step.values():
        if len(answers) >= min_group:
            for who, text in answers.items():
                candidates[who].append(text)
    chooser = random.Random(seed)
    people = sorted(candidates)
    chooser.shuffle(people)
    # Everyone's, in the order drawn: the digest takes the first three no theme quotes.
    quotes = [scrub(chooser.choice(candidates[who])) for who in people]
    return top(words, 10), top(phrases, 5), quotes


async def test_text_read_in_pages_keeps_the_rules(make_harness, monkeypatch):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(RULES)
    # Small pages, so that one person's answers run on from one page into the next.
    pages = functools.partial(h.storage.answer_text_pages, page=3)
    monkeypatch.setattr(h.storage, "answer_text_pages", pages)
    start = h.clock()
    since, until = start - timedelta(hours=1), start + timedelta(days=1)
    for dataset in range(3):
        chooser = random.Random(dataset)
        rows, runs, answers = [], [], []
        at = start + timedelta(minutes=dataset)
        for n in range(12 + dataset * 7):
            who = f"{chooser.getrandbits(64):016x}"  # not in the order they answered
            steps = ["a", "c"] + (["b"] if n % (4 - dataset) == 0 else [])  # b: few, or many
            for run in range(1 + (n % 5 == 0)):  # some answer twice: the latest counts
                run_id = f"d{dataset}-{n}-{run}"
                runs.append(RunRow(run_id, who, "rules", 1, "h", "finished", "{}", at, at))
                for step in steps:
                    text = f"{step}{n}.{run} " + chooser.choice([" ", ", ", "\n", "! "]).join(
                        chooser.choices(WORDS, k=chooser.randint(0, 9)))  # fmt: skip
                    value = json.dumps(text, ensure_ascii=chooser.random() < 0.5)
                    at += timedelta(milliseconds=1)
                    answers.append(AnswerRow(run_id, step, who, "rules", 1, "ask", value, at))
                    rows.append((who, step, text))
        await h.storage.commit(Commit(runs=runs, answers=answers))
        digest = await build_digest(h.storage, h.library, since, until, min_group=5)
        found = digest.guides[0]
        assert found.shown
        words, phrases, quotes = reference(rows, 5, f"rules:{since.isoformat()}")
        assert [(r.label, r.count.value) for r in found.words] == words and words
        assert [(r.label, r.count.value) for r in found.phrases] == phrases and phrases
        under_themes = {q for qt in found.themes for t in qt.found.themes for q in t.quotes}
        themed = {q.casefold() for q in under_themes}
        assert found.quotes == [q for q in quotes if q.casefold() not in themed][:3]
        assert len(found.quotes) == 3
        since = at + timedelta(milliseconds=1)  # the next set alone


HOURS = """
guide: hours
version: 1
title: Hours
steps:
  - id: sector
    choose: What do you do?
    options: [Retail, Transport to good jobs, Health care, Other]
  - id: hours
    number: Hours worked last week?
    range: [0, 100]
  - id: week
    scale: How was your week?
    labels: {1: Hard, 5: Good}
"""
SIX = [("1", "20", "1"), ("1", "38", "2"), ("1", "40", "3"), ("2", "45", "4"), ("3", "52", "5"),
       ("4", "60", "5")]  # fmt: skip


async def six_people_digest(h: Harness):  # type: ignore[no-untyped-def]
    for n, given in enumerate(SIX):
        await answer(h, f"w{n}", *given, guide="hours")
    return await build_digest(h.storage, h.library, h.clock() - timedelta(days=1),
                              h.clock() + timedelta(seconds=1), min_group=5)  # fmt: skip


async def test_no_figure_from_fewer_than_five_in_any_format(make_harness):  # type: ignore[no-untyped-def]
    """The issue's case: six people, hours 20, 38, 40, 45, 52 and 60. No bar per exact
    value, no tally of 1 to 4, no middle value that is one person's answer."""
    h: Harness = make_harness(HOURS)
    digest = await six_people_digest(h)
    render = h.house.reports.render
    outputs = {fmt: render("digest", fmt, "en", d=digest) for fmt in ("text", "md", "html")}
    outputs["page"] = render("digest_page", "page", "en", d=digest)
    for fmt, shown in outputs.items():
        out = re.sub(r"<[^>]*>", " ", shown)  # what a reader sees, not the drawing's numbers
        hours = out.split("Hours worked last week?")[-1].split("How was your week?")[0]
        for value in ("20", "38", "40", "45", "52", "60"):
            assert not re.search(rf"(?<![\d.]){value}(?![\d.])", hours), (fmt, value, hours)
        assert "split their answers into ranges" in hours, fmt
        sector = out.split("What do you do?")[-1].split("Hours worked")[0]
        for tally in ("1", "3"):  # one said Transport, one Health care, three Retail
            assert not re.search(rf"(?<![\d.]){tally}(?![\d.])", sector), (fmt, tally, sector)
        assert "Transport to good jobs" in sector and "fewer than 5" in sector, fmt
        assert "Middle value" not in out, fmt  # six answers in one range: no middle to show
    assert "fewer than 5 · Transport to good jobs" in outputs["text"]


async def test_numbers_and_scales_show_ranges_of_five_and_a_middle_range(make_harness):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(HOURS)
    for n in range(20):  # hours 20, 22, ... 58; scale 1..5 four times over
        await answer(h, f"w{n}", "1", str(20 + 2 * n), str(1 + n % 5), guide="hours")
    digest = await build_digest(h.storage, h.library, h.clock() - timedelta(days=1),
                                h.clock() + timedelta(seconds=1), min_group=5)  # fmt: skip
    text = h.house.reports.render("digest", "text", "en", d=digest)
    hours = text.split("Hours worked last week?")[1].split("How was your week?")[0]
    rows = re.findall(r"^\S+ (\d+) · (.+)$", hours, re.M)
    assert rows == [("5", "under 30"), ("5", "30–39"), ("5", "40–49"), ("5", "50 or more")]
    assert "Middle value: 30–39" in hours  # the median, 38, as the range that holds it
    week = text.split("How was your week?")[1]
    assert re.findall(r"^\S+ (\d+) · (.+)$", week, re.M) == [
        ("8", "1 Hard – 2"), ("12", "3 – 5 Good")  # four each: 5 Good alone is too few
    ]  # fmt: skip
    assert "Middle value: 3 – 5 Good" in week
    assert "20 · Retail" in text and "0 · Other" in text  # 0 and 20 are shown as they are


async def test_a_one_answer_question_hides_what_the_total_would_give_away(make_harness):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(HOURS)
    for n in range(7):  # Retail 6, Health care 1: the 1 would be 7 - 6
        await answer(h, f"w{n}", "1" if n else "3", "40", "3", guide="hours")
    digest = await build_digest(h.storage, h.library, h.clock() - timedelta(days=1),
                                h.clock() + timedelta(seconds=1), min_group=5)  # fmt: skip
    text = h.house.reports.render("digest", "text", "en", d=digest)
    sector = text.split("What do you do?")[1].split("Hours worked")[0]
    assert "7 · Retail / Health care" in sector and "6 · Retail" not in sector
    assert "0 · Transport to good jobs" in sector and "shown together" in sector


async def test_markdown_lists_page_title_and_gatherings_by_name(make_harness):  # type: ignore[no-untyped-def]
    from markdown_it import MarkdownIt

    h: Harness = make_harness(HOURS)
    h.house.roles.admins.add(h.pseudonym("admin"))
    code = await h.house.roles.invite("facilitator", timedelta(days=7))
    await h.say(f"/redeem {code}", user="host")
    launched = await h.say("/launch hours Thursday <b>shift</b> &copy; supper", user="host")
    join = re.search(r"Join code: ([A-Z0-9]{6})", launched[-1].text)
    assert join
    await six_people_digest(h)
    digest = await build_digest(h.storage, h.library, h.clock() - timedelta(days=1),
                                h.clock() + timedelta(seconds=1), min_group=5)  # fmt: skip
    render = h.house.reports.render
    md = render("digest", "md", "en", d=digest)
    html = MarkdownIt().render(md)
    assert "<li>People: 6, of whom new: 6</li>" in html
    assert re.search(r"<li>.*fewer than 5 · Transport to good jobs</li>", html)
    assert f"Thursday \\<b\\>shift\\</b\\> \\&copy; supper ({join.group(1)})" in md
    # A list, escaped; an entity they typed shows as typed, not as "©".
    assert "<li>Thursday &lt;b&gt;shift&lt;/b&gt; &amp;copy; supper" in html
    page = render("digest_page", "page", "en", d=digest)
    title = re.search(r"<title>(.*)</title>", page)
    assert title and title.group(1) == (
        f"What people said, {digest.since:%Y-%m-%d} to {digest.until:%Y-%m-%d}"
        " · Achieving the Promise of Work"
    )
    assert (
        f'<li>Thursday &lt;b&gt;shift&lt;/b&gt; &amp;copy; supper <span class="code">{join.group(1)}'
        in page
    )
    text = render("digest", "text", "en", d=digest)
    assert f"Gatherings held: 1\n  • Thursday <b>shift</b> &copy; supper ({join.group(1)})" in text


def test_pages_earlier_versions_kept_are_removed_and_nothing_else(tmp_path):  # type: ignore[no-untyped-def]
    kept = tmp_path / "digests"
    kept.mkdir()
    (kept / "digest-2026-02-23.html").write_text("<p>Robots took over the till</p>")
    (kept / "digest-2026-03-02.html").write_text("<p>More staff</p>")
    (kept / "notes.txt").write_text("the operator's own")
    assert remove_kept_pages(kept) == 2
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]  # and the folder stays for it
    (kept / "notes.txt").unlink()
    (kept / "digest-2026-03-09.html").write_text("<p>x</p>")
    assert remove_kept_pages(kept) == 1 and not kept.exists()
    assert remove_kept_pages(kept) == 0  # none there: nothing to do


def test_workers_removing_the_kept_pages_at_once_do_not_trip_over_each_other(tmp_path):  # type: ignore[no-untyped-def]
    kept = tmp_path / "digests"
    kept.mkdir()
    for day in range(1, 29):
        (kept / f"digest-2026-02-{day:02d}.html").write_text("<p>x</p>")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(remove_kept_pages, [kept] * 4))
    assert sum(counts) == 28 and not kept.exists()


async def test_a_digest_sent_is_listed_by_the_day_it_fell_due_where_it_was_scheduled(make_harness):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    # Monday 08:00 in Auckland is Sunday 19:00 in UTC.
    due = datetime(2026, 3, 9, 8, tzinfo=ZoneInfo("Pacific/Auckland"))
    assert due.astimezone(UTC).date() == date(2026, 3, 8)
    assert await h.storage.claim_occurrence(DIGEST, "Pacific/Auckland", due, due, LEASE)
    await h.storage.finish_occurrence(DIGEST, "Pacific/Auckland", due, "sent")
    archive = DigestArchive(h.storage, h.house.digests, DIGEST)
    assert await archive.days() == [date(2026, 3, 9)]
    assert await archive.page(date(2026, 3, 9)) is not None
    assert await archive.page(date(2026, 3, 8)) is None


@pytest.mark.parametrize("fmt", ["md", "text", "html", "mrkdwn"])
def test_a_quote_with_line_breaks_cannot_add_lines_of_its_own(fmt: str, tmp_path: Path):
    """What someone wrote stays on the line a report puts it on: a quote "fine\\n- Done:
    100%" must not read as a figure the bot gave, in any format."""
    from markdown_it import MarkdownIt

    from bot.locales import load_phrasebook
    from bot.reports.render import Reports

    (tmp_path / "one.j2").write_text("{{ item }}{{ quote }}\n{{ item }}{{ b(quote) }}\n")
    reports = Reports(load_phrasebook(), override=tmp_path)
    shown = reports.render("one", fmt, "en", quote="fine\r\n- Done: 100%\n\n  1. all good")
    lines = shown.strip().splitlines()
    assert len(lines) == 2, shown
    assert not any(re.match(r"\s*(- |\d+\. )Done", line) for line in lines)
    if fmt == "md":
        assert MarkdownIt().render(shown).count("<li>") == 2, MarkdownIt().render(shown)
        lead = reports.render("one", fmt, "en", quote="- 5 of 5 agreed")
        assert MarkdownIt().render(lead).count("<li>") == 2  # not a list within the item
        for plain in ("2.5 or more", "37.5–40.0", "1. all good", "-3 below"):
            drawn = MarkdownIt().render(reports.render("one", fmt, "en", quote=plain))
            assert drawn.count(f"<li>{plain}</li>") == 1, drawn  # no backslash shows


async def a_coordinator_and_five_who_wrote(h: Harness) -> list[str]:
    """ "coord" a coordinator, and five people who each wrote words only they wrote."""
    code = await h.house.roles.invite("coordinator", timedelta(days=1))
    await h.say(f"/redeem {code}", user="coord")
    users = [f"p{n}" for n in range(5)]
    for user in users:
        await answer(h, user, "1", "3", f"Words only {user} wrote", "x")
    return users


async def test_a_digest_still_owed_is_withdrawn_when_someone_it_quotes_is_forgotten(make_harness):  # type: ignore[no-untyped-def]
    """The weekly digest waits in the outbox (the coordinator's platform is slow, or a
    scheduled prompt fills the send limit) when someone it quotes asks to be forgotten:
    it is not sent, and their words are not left in the database either."""
    from bot.messages import Inbound, Outbound

    h: Harness = make_harness(GUIDE)
    users = await a_coordinator_and_five_who_wrote(h)
    scheduler = Scheduler(h.storage, h.dispatcher, h.library, h.clock,
                          digest_cron="0 8 * * MON", timezone="UTC",
                          digests=h.house.digests)  # fmt: skip
    await scheduler.tick()
    h.clock.now = h.clock.now.replace(day=9, hour=8)
    assert (await scheduler.tick()).digests == 1  # queued, not sent yet
    [owed] = [Outbound.model_validate_json(row.payload)
              for row in await h.storage.claim_due("terminal", h.clock(), 100)]  # fmt: skip
    by_pseudonym = {h.pseudonym(user): user for user in users}
    quoted = [by_pseudonym[who] for who in owed.quoting]
    assert quoted and all(f"Words only {user} wrote" in owed.text for user in quoted)
    gone = quoted[0]
    for said in ("/forget", "yes"):
        await h.dispatcher.handle(Inbound("terminal", gone, gone, said))
    await h.deliverer.drain("terminal")
    to_coordinator = [m.text for address, m in h.channel.sent if address == "coord"]
    assert not any(f"Words only {gone} wrote" in text for text in to_coordinator)
    left = [row.payload for row in await h.storage.claim_due("terminal", h.clock(), 100)]
    assert not any(f"Words only {gone} wrote" in payload for payload in left)
    # The archive makes the digest again, without them.
    page = await DigestArchive(h.storage, h.house.digests, DIGEST).page(date(2026, 3, 9))
    assert page is not None and f"Words only {gone} wrote" not in page


async def test_a_digest_made_before_an_erasure_and_queued_after_it_is_not_sent(make_harness):  # type: ignore[no-untyped-def]
    """The digest reads the week (minutes, at scale) while someone it will quote is
    forgotten: the erasure finds nothing to withdraw yet, and the digest is queued after
    it. Delivery sees that someone it quotes is gone, and drops it (found by review)."""
    h: Harness = make_harness(GUIDE)
    users = await a_coordinator_and_five_who_wrote(h)
    now = h.clock() + timedelta(minutes=1)
    made = await h.house.digests.message("en", now - timedelta(days=7), now)
    gone = next(user for user in users if h.pseudonym(user) in made.quoting)
    await h.storage.forget(h.pseudonym(gone), h.clock())
    assert await h.dispatcher.send_to(h.pseudonym("coord"), made, "digest:late:coord")
    await h.deliverer.drain("terminal")
    to_coordinator = [m.text for address, m in h.channel.sent if address == "coord"]
    assert not any(f"Words only {gone} wrote" in text for text in to_coordinator)
    assert not [row for row in await h.storage.claim_due("terminal", h.clock(), 100)]


async def test_a_digest_due_in_the_hour_that_comes_twice_goes_once(make_harness):  # type: ignore[no-untyped-def]
    """A digest at 01:30 on Sundays in Chicago: on 1 November 2026 01:30 comes twice, and
    the coordinator gets one digest, not two an hour apart."""
    h: Harness = make_harness(GUIDE)
    code = await h.house.roles.invite("coordinator", timedelta(days=1))
    await h.say(f"/redeem {code}", user="coord")
    scheduler = Scheduler(h.storage, h.dispatcher, h.library, h.clock,
                          digest_cron="30 1 * * SUN", timezone="America/Chicago",
                          digests=h.house.digests)  # fmt: skip
    h.clock.now = datetime(2026, 10, 31, 12, tzinfo=UTC)
    await scheduler.tick()  # starts the clock on digests
    h.clock.now = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)  # after both 01:30s
    assert (await scheduler.tick()).digests == 1
    await h.deliverer.drain("terminal")
    assert len([m for a, m in h.channel.sent if a == "coord" and m.markup]) == 1
