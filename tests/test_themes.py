"""Themes as a coordinator relies on them: the same answers give the same themes, no
theme from fewer than the minimum group, languages apart, quotes only from quotable
answers and one per person, nothing sent anywhere, and a codebook whose renames,
merges and splits carry over to the next week."""

from __future__ import annotations

import io
import json
import random
import re
import socket
import unicodedata
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.flows.scrub import scrub, strip_invisible
from bot.reports.themes.codebook import Codebook, CodebookError
from bot.reports.themes.engine import find_themes
from bot.reports.themes.model import Answer
from bot.reports.themes.service import ThemeService
from tests.conftest import Harness

DATA = Path(__file__).parent / "data" / "themes"


@pytest.fixture(scope="module")
def changed() -> list[Answer]:
    """The labelled answers to "What has changed at your work this year?", both languages."""
    answers = []
    for language in ("en", "es"):
        found = yaml.safe_load((DATA / f"changed.{language}.yaml").read_text(encoding="utf-8"))
        texts = [text for texts in found["themes"].values() for text in texts]
        answers += [Answer(f"{language}{n:03d}", f"{language}-p{n:03d}", language, text, True)
                    for n, text in enumerate(texts)]  # fmt: skip
    return answers


def test_same_answers_same_themes_in_any_order(changed: list[Answer]) -> None:
    first = find_themes(changed, min_group=5)
    shuffled = changed[:]
    random.Random(3).shuffle(shuffled)
    again = find_themes(shuffled, min_group=5)
    assert first == again and first.themes
    assert [t.label for t in first.themes] == [t.label for t in again.themes]
    assert [t.quotes for t in first.themes] == [t.quotes for t in again.themes]


def test_no_socket_is_opened_while_themes_are_found(changed, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("themes tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    assert find_themes(changed, min_group=5).themes


def test_every_theme_holds_the_minimum_group_and_one_language(changed: list[Answer]) -> None:
    for k in (5, 8):
        found = find_themes(changed, min_group=k)
        language = {a.id: a.language for a in changed}
        person = {a.id: a.person for a in changed}
        assert found.themes and found.min_group == k
        for theme in found.themes:
            assert theme.people >= k
            assert len({person[a] for a in theme.answers}) == theme.people
            assert {language[a] for a in theme.answers} == {theme.language}
        assert {t.language for t in found.themes} == {"en", "es"}


def test_a_few_people_saying_the_same_thing_is_not_a_theme() -> None:
    # Four people, twice each, about pay: eight answers, but fewer than five people.
    answers = [Answer(f"a{n}", f"p{n % 4}", "en", "we need better pay now", True) for n in range(8)]
    found = find_themes(answers, min_group=5)
    assert not found.themes and found.other is None  # "fewer than 5", never 4


def test_two_answers_each_given_by_many_are_two_themes_quoted_once() -> None:
    said = ["My hours got cut again this month"] * 6 + ["We need better pay for the rent"] * 6
    answers = [Answer(f"a{n:02d}", f"p{n}", "en", text, True) for n, text in enumerate(said)]
    found = find_themes(answers, min_group=5)
    assert sorted((t.people, t.quotes) for t in found.themes) == [
        (6, ("My hours got cut again this month",)),
        (6, ("We need better pay for the rent",)),
    ]
    assert found.other == 0


def test_quotes_are_quotable_nearest_and_one_per_person() -> None:
    texts = ["my hours were cut again", "hours cut every week", "they cut my hours",
             "cut hours and no warning", "hours keep getting cut", "fewer hours cut"]  # fmt: skip
    answers = [Answer(f"a{n}", "same" if n < 3 else f"p{n}", "en", text, n != 5)
               for n, text in enumerate(texts)]  # fmt: skip
    answers += [Answer(f"b{n}", f"q{n}", "en", f"call me at +1 415 555 019{n} about hours cut {n}",
                       True) for n in range(2)]  # fmt: skip
    theme = find_themes(answers, min_group=4).themes[0]
    assert theme.people >= 4 and len(theme.quotes) <= 3
    by = {scrub(a.text): a.person for a in answers}
    assert len({by[q] for q in theme.quotes}) == len(theme.quotes)  # "same" said three
    assert "fewer hours cut" not in theme.quotes  # not quotable
    assert not any("555" in q for q in theme.quotes)  # scrubbed again before it is shown
    assert "hours" in theme.label


def test_nothing_from_answers_that_say_nothing() -> None:
    answers = [Answer(f"a{n}", f"p{n}", "en", text, True)
               for n, text in enumerate(["the", "and", "", "   ", "it is", "of"] * 2)]  # fmt: skip
    assert not find_themes(answers, min_group=5).themes


def test_a_codebook_keeps_no_answer_and_reads_back_the_same(changed: list[Answer]) -> None:
    found = find_themes(changed, min_group=5)
    book = Codebook("g", "s")
    for theme in found.themes:
        book, _ = book.add(theme.language, theme.centre)
    book = book.rename("t1", "  Pay   and raises ")
    saved = book.to_json()
    assert Codebook.from_json(saved) == book and book.get("t1").name == "Pay and raises"
    for answer in changed:  # no answer kept whole (one of two words is a feature itself)
        assert len(answer.text.split()) < 3 or answer.text.lower().encode() not in saved
    with pytest.raises(CodebookError) as error:
        book.rename("t1", " ")
    assert error.value.key == "themes_error_empty_name"
    with pytest.raises(CodebookError):
        book.merge("t1", "t1", (1, 1))
    assert book.merge("t2", "t1", (3, 4)).get("t2").name == "Pay and raises"  # kept
    with pytest.raises(CodebookError):
        book.get("t99")


GUIDE = """
guide: talk
version: 1
title: Talk about work
steps:
  - id: changed
    ask: What has changed at your work this year?
    quotable: true
  - id: private
    ask: Anything just for us?
    sensitive: true
"""
PAY = ["pay has not kept up with rent", "we need better pay", "pay raise was tiny",
       "the pay is too low for rent", "no pay rise this year", "better pay please"]  # fmt: skip
HOURS = ["my hours got cut", "hours cut to 20 a week", "they cut hours without notice",
         "hours cut again", "fewer hours every month, cut cut cut", "hours cut for everyone"]  # fmt: skip


async def _week(h: Harness, week: int, answers: list[str]) -> None:
    for n, text in enumerate(answers):
        who = f"w{week}-{n}"
        await h.say("/start talk", user=who)
        await h.say(text, user=who)
        await h.say(f"secret {who}", user=who)


async def test_the_codebook_carries_over_to_the_next_week(make_harness) -> None:  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    service = ThemeService(h.storage, h.library, min_group=5)
    start = h.clock()
    await _week(h, 1, PAY + HOURS)
    first = await service.themes("talk", "changed", start, h.clock() + timedelta(seconds=1))
    assert len(first.themes) == 2 and not any(t.new for t in first.themes)
    pay = next(t for t in first.themes if "pay" in t.label)
    assert any("hours" in t.label for t in first.themes if t is not pay)
    end = h.clock() + timedelta(seconds=1)
    renamed = await service.rename("talk", "changed", pay.id, "Pay", start, end)
    assert {t.name for t in renamed.themes} == {"Pay", None} and renamed.coded
    assert not any(t.new for t in renamed.themes)
    with pytest.raises(CodebookError) as error:
        await service.rename("talk", "changed", "t42", "Nope", start, end)
    assert error.value.key == "themes_error_unknown"
    with pytest.raises(CodebookError):
        await service.themes("talk", "private", start, end)  # sensitive: never grouped

    # The next week: pay again, and something new that fits neither theme.
    h.clock.advance(days=7)
    week_two = h.clock()
    new = ["robots in the warehouse", "new robots on the line", "robots replaced the packers",
           "the robots broke down", "robots everywhere now", "they bought robots"]  # fmt: skip
    await _week(h, 2, [p + " again" for p in PAY] + new)
    later = await service.themes("talk", "changed", week_two, h.clock() + timedelta(seconds=1))
    named = next(t for t in later.themes if t.name == "Pay")
    assert named.people == 6 and not named.new
    robots = next(t for t in later.themes if "robots" in t.label)
    assert robots.new and robots.people == 6
    assert {t.id for t in later.themes if not t.new} == {named.id}  # nobody spoke of hours


async def test_merge_and_split_by_example(make_harness) -> None:  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    service = ThemeService(h.storage, h.library, min_group=5)
    start = h.clock()
    await _week(h, 1, PAY + HOURS)
    end = h.clock() + timedelta(seconds=1)
    shown = await service.themes("talk", "changed", start, end)
    a, b = (t.id for t in shown.themes)
    merged = await service.merge("talk", "changed", a, b, start, end)
    assert len(merged.themes) == 1 and merged.themes[0].people == 12
    whole = merged.themes[0]
    examples = await service.examples("talk", "changed", whole.id, start, end)
    chosen = [e.id for e in examples if "hours" in e.text]
    assert len(chosen) == 6
    split = await service.split("talk", "changed", whole.id, chosen, "Hours", start, end)
    assert sorted((t.name or "", t.people) for t in split.themes) == [("", 6), ("Hours", 6)]
    with pytest.raises(CodebookError) as error:
        await service.split("talk", "changed", whole.id, [], None, start, end)
    assert error.value.key == "themes_error_split_none"
    with pytest.raises(CodebookError) as error:
        await service.split("talk", "changed", whole.id, ["nope"], None, start, end)
    assert error.value.key == "themes_error_split_outside"
    # One answer alone, split off or left behind, would be kept as that person's words.
    hours = next(t for t in (await service.themes("talk", "changed", start, end)).themes
                 if t.name == "Hours")  # fmt: skip
    ids = [e.id for e in await service.examples("talk", "changed", hours.id, start, end)]
    for alone in (ids[:1], ids[1:]):
        with pytest.raises(CodebookError) as error:
            await service.split("talk", "changed", hours.id, alone, None, start, end)
        assert error.value.key == "themes_error_split_one"
    still = await service.themes("talk", "changed", start, end)
    assert sorted((t.name or "", t.people) for t in still.themes) == [("", 6), ("Hours", 6)]


async def test_words_one_person_wrote_twice_stay_out_of_the_codebook(make_harness) -> None:  # type: ignore[no-untyped-def]
    """A name one person wrote in two weeks' answers was kept in a theme's stored centre,
    where /forget could not reach it, and a split of their answers alone was allowed
    (both counted answers, not people; found by review)."""
    h: Harness = make_harness(GUIDE)
    service = ThemeService(h.storage, h.library, min_group=5)
    start = h.clock()
    await _week(h, 1, HOURS)
    for _ in range(2):
        for said in ("/start talk", "supervisor Kowalski cut my hours", "nothing"):
            await h.say(said, user="kasia")
        h.clock.advance(days=7)
    end = h.clock()
    hours = next(t for t in (await service.themes("talk", "changed", start, end)).themes
                 if "hours" in t.label)  # fmt: skip
    assert hours.people == 7 and len(hours.answers) == 8
    renamed = await service.rename("talk", "changed", hours.id, "Hours", start, end)
    hours = next(t for t in renamed.themes if t.name == "Hours")
    saved = json.loads((await service.codebook("talk", "changed", end)).to_json())
    kept = [name for theme in saved["themes"] for name, _ in theme["centre"]]
    only_theirs = ("kowa", "wals", "lski", "supe", "perv", "viso")  # no one else wrote these
    assert kept and not [name for name in kept if any(bit in name for bit in only_theirs)]
    theirs = [e.id for e in await service.examples("talk", "changed", hours.id, start, end)
              if "Kowalski" in e.text]  # fmt: skip
    assert len(theirs) == 2
    with pytest.raises(CodebookError) as error:
        await service.split("talk", "changed", hours.id, theirs, None, start, end)
    assert error.value.key == "themes_error_split_one"


async def test_an_edit_made_meanwhile_by_someone_else_is_not_undone(make_harness) -> None:  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    start = h.clock()
    await _week(h, 1, PAY + HOURS)
    end = h.clock() + timedelta(seconds=1)
    other = ThemeService(h.storage, h.library, min_group=5)  # another coordinator

    class Meanwhile(ThemeService):
        """Between this coordinator's look at the codebook and their save, the other
        coordinator names a theme (on any instance)."""

        async def _save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            shown = await other.themes("talk", "changed", start, end)
            hours = next(t for t in shown.themes if "hours" in t.label)
            await other.rename("talk", "changed", hours.id, "Hours", start, end)
            return await super()._save(*args, **kwargs)

    mine = Meanwhile(h.storage, h.library, min_group=5)
    pay = next(t for t in (await mine.themes("talk", "changed", start, end)).themes
               if "pay" in t.label)  # fmt: skip
    with pytest.raises(CodebookError) as error:
        await mine.rename("talk", "changed", pay.id, "Pay", start, end)
    assert error.value.key == "themes_error_changed_meanwhile"
    # The other's name stands; theirs was not undone, and nothing of this one was kept.
    now = await other.themes("talk", "changed", start, end)
    assert sorted(t.name or "" for t in now.themes) == ["", "Hours"]
    # Looked at again, the change goes through, and both stand.
    pay = next(t for t in now.themes if "pay" in t.label)
    again = await other.rename("talk", "changed", pay.id, "Pay", start, end)
    assert sorted(t.name or "" for t in again.themes) == ["Hours", "Pay"]


async def _cli(h: Harness, *words: str) -> str:
    from bot.app.cli import _parser
    from bot.app.themes_cli import run

    out = io.StringIO()
    args = _parser().parse_args(["themes", *words])
    code = await run(h.storage, h.library, h.house.reports, args, now=h.clock() +
                     timedelta(seconds=1), min_group=5, out=out)  # fmt: skip
    assert code == 0
    return out.getvalue()


async def test_the_themes_command_lists_and_corrects(make_harness) -> None:  # type: ignore[no-untyped-def]
    from bot.app.usage import UsageError

    h: Harness = make_harness(GUIDE)
    await _week(h, 1, PAY + HOURS)
    listed = await _cli(h, "--guide", "talk", "--step", "changed")
    assert "What people wrote about: What has changed at your work this year?" in listed
    assert re.search(r"\[en-\d\] 6 people · better pay", listed) and "secret" not in listed
    pay = re.search(r"\[(en-\d)\] 6 people · better pay", listed).group(1)  # type: ignore[union-attr]
    renamed = await _cli(
        h, "rename", "--guide", "talk", "--step", "changed", pay, "Pay", "and", "rent"
    )
    assert "Saved to the codebook for talk · changed" in renamed
    assert re.search(r"\[t\d\] 6 people · Pay and rent\n", renamed)
    as_json = json.loads(await _cli(h, "--guide", "talk", "--step", "changed", "--format", "json"))
    assert as_json["coded"] and {t["name"] for t in as_json["themes"]} == {"Pay and rent", None}
    assert all("answers" not in t and "centre" not in t for t in as_json["themes"])
    spanish = await _cli(h, "--guide", "talk", "--step", "changed", "--lang", "es")
    assert "De qué habló la gente" in spanish and "6 personas" in spanish
    for words, said in [(["--guide", "talk", "--step", "private"], "marked sensitive"),
                        (["--guide", "nope", "--step", "changed"], "There is no guide nope"),
                        (["merge", "--guide", "talk", "--step", "changed", "t1", "t1"], "itself"),
                        (["--guide", "talk"], "give --guide ID and --step STEP")]:  # fmt: skip
        with pytest.raises(UsageError, match=said):
            await _cli(h, *words)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
@example("\x1b[2J\x1b]52;c;cGF5\x07 Pay")
def test_any_name_is_kept_as_typed_or_refused_with_a_reason(name: str) -> None:
    """Kept as typed, but for runs of spaces and invisible characters (an escape
    sequence in a name would act on the terminal of whoever lists the themes)."""
    book, theme = Codebook("g", "s").add("en", (("w:pay", 1.0),))
    visible = " ".join(strip_invisible(name).split())
    try:
        renamed = book.rename(theme, name)
    except CodebookError as error:
        assert error.key in ("themes_error_empty_name", "themes_error_long_name")
        assert not visible or len(visible) > 80
        return
    kept = renamed.get(theme).name
    assert kept == visible and 0 < len(kept or "") <= 80
    assert not any(unicodedata.category(c) == "Cc" for c in kept or "")
    assert Codebook.from_json(renamed.to_json()) == renamed  # any text survives the record


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["en", "es", "fr"]), st.text(max_size=40),
                          st.integers(0, 9), st.booleans()), max_size=40))  # fmt: skip
def test_whatever_people_type_themes_keep_their_rules(
    rows: list[tuple[str, str, int, bool]],
) -> None:
    answers = [Answer(f"a{n}", f"p{who}", language, text, quotable)
               for n, (language, text, who, quotable) in enumerate(rows)]  # fmt: skip
    found = find_themes(answers, min_group=3)
    by_id = {a.id: a for a in answers}
    for theme in found.themes:
        assert theme.people >= 3 and len(theme.quotes) <= 3
        assert {by_id[a].language for a in theme.answers} == {theme.language}
        assert len({by_id[a].person for a in theme.answers}) == theme.people
    assert found.other is None or found.other == 0 or found.other >= 3
    assert find_themes(list(reversed(answers)), min_group=3) == found


def test_a_big_question_is_fitted_on_a_sample_and_every_answer_placed(
    changed: list[Answer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above `FIT_ON` answers, themes are fitted on a sample and the rest placed in
    chunks: the same answers still give the same themes in any order, and each theme
    counts the people of all its answers, sampled or not."""
    from bot.reports.themes import engine

    monkeypatch.setattr(engine, "FIT_ON", 60)
    monkeypatch.setattr(engine, "CHUNK", 25)
    # Some people answered twice: a chunk never splits a person's answers.
    answers = [Answer(a.id, f"{a.language}-p{n // 2:03d}", a.language, a.text, n % 3 > 0)
               for n, a in enumerate(changed)]  # fmt: skip
    found = find_themes(answers, min_group=5)
    shuffled = answers[:]
    random.Random(5).shuffle(shuffled)
    assert find_themes(shuffled, min_group=5) == found and found.themes
    by_id = {a.id: a for a in answers}
    placed = [a for t in found.themes for a in t.answers]
    assert len(placed) == len(set(placed)) > 2 * 60  # beyond the two samples of 60
    everyone = {a.person for a in answers}
    inside = {by_id[a].person for a in placed}
    for theme in found.themes:
        people = {by_id[a].person for a in theme.answers}
        assert theme.people == len(people) >= 5
        assert {by_id[a].language for a in theme.answers} == {theme.language}
        said = {scrub(by_id[a].text) for a in theme.answers if by_id[a].quotable}
        assert set(theme.quotes) <= said and len(theme.quotes) <= 3
        assert theme.label
    outside = {a.person for a in answers if a.id not in set(placed)}
    assert found.other == len(outside) and outside | inside == everyone


async def test_a_big_question_is_grouped_in_a_worker_process_to_the_same_themes(
    changed: list[Answer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """From `IN_PROCESS` answers, grouping runs in a spawned process (the bot's own never
    loads scikit-learn); the themes are the ones found in the bot's process."""
    import multiprocessing

    from bot.reports.themes import service

    spawned: list[str] = []
    real = multiprocessing.get_context

    def watched(method: str | None = None):  # type: ignore[no-untyped-def]
        spawned.append(str(method))
        return real(method)

    monkeypatch.setattr(service.multiprocessing, "get_context", watched)
    monkeypatch.setattr(service, "IN_PROCESS", len(changed))
    assert await service._grouped(changed, 5, None) == find_themes(changed, min_group=5)
    assert spawned == ["spawn"]
    assert await service._grouped(changed[:-1], 5, None) == find_themes(changed[:-1], min_group=5)
    assert spawned == ["spawn"]  # one answer fewer: in the bot's process


def test_a_centre_keeps_only_words_two_people_share() -> None:
    """What the codebook keeps of a theme: never one person's own words, even when the
    theme is made of one answer (a split of one did that; found by review) or when they
    wrote them twice (counting answers kept them; found by review)."""
    from bot.reports.themes.space import centre_of, fit

    texts = ["zebulon quartermaine docked my pay", "better pay please", "pay is low",
             "zebulon docked my pay again"]  # fmt: skip
    space = fit(texts, "en")
    assert centre_of(space, [0], ["p0"]) == ()
    for rows, people in (([0, 1, 2], ["p0", "p1", "p2"]), ([0, 1, 2, 3], ["p0", "p1", "p2", "p0"])):
        shared = dict(centre_of(space, rows, people))
        assert shared and all("zebulon" not in name for name in shared), people
    assert any("zebulon" in name for name in dict(centre_of(space, [0, 3], ["p0", "p3"])))
