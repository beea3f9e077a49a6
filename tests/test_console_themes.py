"""The console's Themes page (bot/console/themes_page.py) on the run's storage backend:
a question's themes with their sizes (each at least the minimum group) and quotes from
quotable questions only, escaped; rename, merge and split through the page change what
the page and the next `ThemeService.themes` (as the digest asks) show, each audited; an
edit that can't be made says why and saves nothing; a POST without the CSRF token and a
facilitator are refused; an unknown question answers a clear 404 page; the Results page
links each free-text question to its themes and names the largest once found."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.console.themes_cache import JUST_SAVED, ThemesCache
from bot.reports.themes.model import Themes
from bot.reports.themes.service import ThemeService
from storage.protocol import Storage
from storage.rows import AnswerRow, Commit, RunRow
from tests.conftest import START, FakeClock
from tests.console_world import World, main_of, open_world, text_of
from tests.results_world import GUIDE_ID, HOURS, PAY, RAISE, Person, add_guide, answer

PAGE = f"/console/themes/{GUIDE_ID}/story"


@pytest.fixture
async def world(storage: Storage, clock: FakeClock, tmp_path: Path) -> AsyncIterator[World]:
    opened = await open_world(storage, clock)
    add_guide(opened.services.library, tmp_path)
    people = [
        Person("kitchen", 3, 40, story=s, note=f"a note about {s}") for s in PAY + RAISE + HOURS
    ]
    people.append(Person("office", 2, 30, story="nothing much", note="nothing"))
    await answer(storage, people, START - timedelta(days=2), "now")
    await opened.grant("cora", "coordinator")
    yield opened
    await opened.close()


async def _page(world: World, path: str = PAGE, status: int = 200) -> str:
    answer = await world.client.get(path)
    assert answer.status == status, await answer.text()
    return await answer.text()


def _service(world: World) -> ThemeService:
    return ThemeService(world.storage, world.services.library, min_group=5)


async def _themes(world: World):  # type: ignore[no-untyped-def]
    """What the next digest would show: the service, for the page's default period."""
    now = world.clock()
    return await _service(world).themes(GUIDE_ID, "story", now - timedelta(days=28),
                                        now + timedelta(days=1))  # fmt: skip


def _ids(html: str) -> list[str]:
    return re.findall(r'<li class="card theme" id="theme-([^"]+)"', html)


async def _post(world: World, path: str, data: dict[str, object]) -> tuple[int, str, str]:
    answer = await world.client.post(path, data=data, allow_redirects=False)
    return answer.status, answer.headers.get("Location", ""), await answer.text()


async def test_themes_with_sizes_quotes_escaped_and_other(world: World):
    csrf = await world.sign_in("cora")
    assert csrf
    html = await _page(world)
    words = text_of(main_of(html))
    assert "Themes: Tell us about your week" in words
    sizes = [int(n) for n in re.findall(r"(\d+) people · English", words)]
    assert sorted(sizes) == [6, 12]  # pay and hours, each at least the minimum group
    assert "pay" in words and "hours" in words
    assert html.count("<blockquote>") >= 2  # the story is quotable
    assert "<b>x</b>" not in html  # a participant's markup is shown as typed
    if "&lt;b&gt;x&lt;/b&gt;" not in html:  # (when that answer is quoted)
        assert "x better pay" not in words
    assert "Fit no theme: fewer than 5" in words  # "nothing much", one person
    assert "a note about" not in html  # nothing from the other question
    # The period form and permalink, as the Results page has them.
    assert 'name="from"' in html and 'class="permalink"' in html


async def test_a_question_not_quotable_shows_themes_without_quotes(world: World):
    await world.sign_in("cora")
    html = await _page(world, f"/console/themes/{GUIDE_ID}/note")
    words = text_of(main_of(html))
    assert re.search(r"\d+ people · English", words)
    assert "<blockquote>" not in html and "a note about" not in html
    assert "/split?" not in html  # its answers may not be shown to choose from


async def test_rename_merge_and_split_change_the_page_and_the_next_digest(world: World):
    csrf = await world.sign_in("cora")
    html = await _page(world)
    first, _second = _ids(html)
    period = re.search(r'name="from" value="([^"]+)".*?name="to" value="([^"]+)"', html, re.S)
    assert period is not None
    dates = {"from": period.group(1), "to": period.group(2)}
    here = f"{PAGE}?from={dates['from']}&to={dates['to']}"

    # Rename: the page and the service show the name.
    status, location, _ = await _post(world, f"{PAGE}/rename",
                                      {"csrf": csrf, "theme": first, "name": "  Rent  and pay ",
                                       **dates})  # fmt: skip
    assert (status, location) == (303, here + "&done=renamed")
    html = await _page(world, location)
    assert "Rent and pay" in text_of(main_of(html))
    assert "Renamed and saved to the codebook" in text_of(main_of(html))
    themes = await _themes(world)
    assert "Rent and pay" in [t.name for t in themes.themes]
    assert all(i.startswith("t") for i in _ids(html))  # kept in the codebook now

    # Split: the examples (escaped), choose the six about raises, name them.
    named = next(t for t in themes.themes if t.name == "Rent and pay")
    assert named.people == 12
    split = await _page(world, f"{PAGE}/split?theme={named.id}&from={dates['from']}"
                               f"&to={dates['to']}")  # fmt: skip
    assert "&lt;b&gt;x&lt;/b&gt; better pay" in split and "<b>x</b>" not in split
    options = re.findall(r'name="answer" value="([^"]+)">\s*<label for="[^"]+">([^<]+)</label>',
                         split)  # fmt: skip
    assert len(options) == 12
    raises = [value for value, text in options if "raise" in text]
    status, location, _ = await _post(world, f"{PAGE}/split",
                                      {"csrf": csrf, "theme": named.id, "answer": raises,
                                       "name": "Raises", **dates})  # fmt: skip
    assert (status, location) == (303, here + "&done=split")
    themes = await _themes(world)
    sizes = {t.name: t.people for t in themes.themes}
    assert sizes["Rent and pay"] == 6 and sizes["Raises"] == 6, sizes
    words = text_of(main_of(await _page(world, location)))
    assert "Raises 6 people" in words and "Rent and pay 6 people" in words

    # Merge: the hours theme joins the pay one; one theme of all their people is left.
    keep = next(t.id for t in themes.themes if t.name == "Rent and pay")
    gone = next(t.id for t in themes.themes if t.name == "Raises")
    status, location, _ = await _post(
        world, f"{PAGE}/merge", {"csrf": csrf, "keep": keep, "gone": gone, **dates}
    )
    assert (status, location) == (303, here + "&done=merged")
    after = await _themes(world)
    merged = next(t for t in after.themes if t.id == keep)
    assert merged.name == "Rent and pay" and merged.people == 12
    assert gone not in {t.id for t in after.themes}
    html = await _page(world, location)
    assert _ids(html) == [t.id for t in after.themes] and len(after.themes) == 2
    assert "Rent and pay 12 people" in text_of(main_of(html)) and "Raises" not in html

    # Each change is in the audit log, by pseudonym.
    await world.sign_in("root")
    log = text_of(await _page(world, "/console/audit"))
    for action in ("Renamed a theme", "Split a theme", "Merged two themes"):
        assert action in log


async def test_an_edit_that_cant_be_made_says_why_keeps_the_form_and_saves_nothing(
    world: World,
):
    csrf = await world.sign_in("cora")
    html = await _page(world)
    first, _second = _ids(html)
    status, _, page = await _post(world, f"{PAGE}/rename",
                                  {"csrf": csrf, "theme": first, "name": "x" * 81})  # fmt: skip
    assert status == 422
    words = text_of(main_of(page))
    assert "Nothing was saved." in words and "at most 80 characters" in words
    assert 'value="' + "x" * 81 + '"' in page  # the form as typed
    assert 'role="alert"' in page
    status, _, page = await _post(world, f"{PAGE}/merge",
                                  {"csrf": csrf, "keep": first, "gone": first})  # fmt: skip
    assert status == 422 and "can't be merged with itself" in text_of(page)
    status, _, page = await _post(world, f"{PAGE}/split",
                                  {"csrf": csrf, "theme": first, "name": "Kept"})  # fmt: skip
    assert status == 422 and "Choose at least one answer" in text_of(page)
    assert 'value="Kept"' in page
    status, _, page = await _post(world, f"{PAGE}/rename",
                                  {"csrf": csrf, "theme": "t99", "name": "Gone"})  # fmt: skip
    assert status == 422 and "not among these dates' themes" in text_of(page)
    themes = await _themes(world)
    assert not themes.coded and all(t.name is None for t in themes.themes)  # nothing saved


async def test_a_post_without_the_csrf_token_is_refused(world: World):
    await world.sign_in("cora")
    first = _ids(await _page(world))[0]
    status, _, _ = await _post(world, f"{PAGE}/rename", {"theme": first, "name": "Pay"})
    assert status == 403
    assert all(t.name is None for t in (await _themes(world)).themes)


async def test_a_facilitator_is_refused(world: World):
    await world.grant("fran", "facilitator")
    csrf = await world.sign_in("fran")
    assert (await world.client.get(PAGE)).status == 403
    status, _, _ = await _post(world, f"{PAGE}/rename", {"csrf": csrf, "theme": "t1", "name": "x"})
    assert status == 403
    assert 'href="/console/themes"' not in await _page(world, "/console/")  # not in the menu


async def test_an_unknown_or_sensitive_question_is_a_clear_404(world: World):
    await world.sign_in("cora")
    words = text_of(main_of(await _page(world, f"/console/themes/{GUIDE_ID}/nope", status=404)))
    assert "No themes here" in words and "has no question nope" in words
    words = text_of(main_of(await _page(world, f"/console/themes/{GUIDE_ID}/pay", status=404)))
    assert "No themes here" in words
    words = text_of(main_of(await _page(world, "/console/themes/no-such-guide/story", status=404)))
    assert "There is no guide no-such-guide" in words
    words = text_of(main_of(await _page(world, f"{PAGE}/split?theme=t99", status=404)))
    assert "not among these dates' themes" in words and "Back to the themes" in words


async def test_the_index_lists_free_text_questions_and_nothing_sensitive(world: World):
    await world.sign_in("cora")
    html = await _page(world, "/console/themes")
    assert f'href="{PAGE}"' in html and f'href="/console/themes/{GUIDE_ID}/note"' in html
    assert f"/console/themes/{GUIDE_ID}/pay" not in html
    assert 'href="/console/themes"' in await _page(world, "/console/")  # in the menu


async def test_results_link_each_question_to_its_themes_and_name_them_once_found(world: World):
    await world.sign_in("cora")
    results = f"/console/results/{GUIDE_ID}"
    html = await _page(world, results)
    assert "Themes and codebook" in html
    assert re.search(rf'href="{PAGE}\?from=[0-9-]+&amp;to=[0-9-]+"', html)
    # Few answers: grouped in the background for the next visit, never while it waits.
    await world.themes_cache().settled()
    words = text_of(main_of(await _page(world, results)))
    assert "Themes found: 2" in words and "6 people" in words


async def test_results_show_a_rename_made_on_another_instance_without_waiting(world: World):
    await world.sign_in("cora")
    results = f"/console/results/{GUIDE_ID}"
    await _page(world, results)
    await world.themes_cache().settled()
    before = text_of(main_of(await _page(world, results)))
    # The story's themes and the note's.
    assert before.count("Themes found: 2") == 2 and "hours cut: 6" in before
    assert "Rent and pay" not in before
    # Another instance's console renames a theme: this one's cache never hears of it.
    now = world.clock()
    biggest = (await _themes(world)).themes[0]
    await _service(world).rename(GUIDE_ID, "story", biggest.id, "Rent and pay",
                                 now - timedelta(days=28), now + timedelta(days=1))  # fmt: skip
    stale = text_of(main_of(await _page(world, results)))
    # Not the story's themes from before the rename (the note's still hold).
    assert stale.count("Themes found") == 1 and "hours cut: 6" not in stale
    await world.themes_cache().settled()
    assert "Rent and pay" in text_of(main_of(await _page(world, results)))


async def test_results_drop_themes_kept_from_before_someone_was_forgotten(world: World):
    """Themes kept a few minutes count and name what people wrote: once someone is
    forgotten (by any instance, or `kitchen-table forget` in a process of its own), the
    kept ones are not shown again; they are found afresh, without that person."""
    await world.sign_in("cora")
    results = f"/console/results/{GUIDE_ID}"
    await _page(world, results)
    await world.themes_cache().settled()
    before = text_of(main_of(await _page(world, results)))
    assert before.count("Themes found: 2") == 2  # the story's themes and the note's
    await world.storage.forget("now-p0", world.clock())  # not through this console
    stale = text_of(main_of(await _page(world, results)))
    assert "Themes found" not in stale  # they wrote both: neither kept copy is shown
    await world.themes_cache().settled()
    again = text_of(main_of(await _page(world, results)))
    assert again.count("Themes found") == 2 and again != before


async def test_spanish(world: World):
    link = await world.services.links.issue(world.pseudonym("cora"), "es")
    taken = await world.client.post("/console/signin", data={"t": link.split("t=")[1]},
                                    allow_redirects=False)  # fmt: skip
    assert taken.status == 303
    words = text_of(main_of(await _page(world)))
    assert "Temas:" in words and "6 personas" in words


async def _story(storage: Storage, texts: list[str], tag: str, language: str = "en") -> None:
    """More people answer the story (in `language`), a day before the page's today."""
    at = START - timedelta(days=1)
    state = json.dumps({"language": language})
    for n, text in enumerate(texts):
        run, who = f"{tag}-run{n}", f"{tag}-p{n}"
        await storage.commit(Commit(
            runs=[RunRow(run, who, GUIDE_ID, 1, "h", "finished", state, at, at)],
            answers=[AnswerRow(run, "story", who, GUIDE_ID, 1, "ask", json.dumps(text), at)],
        ))  # fmt: skip


async def test_after_an_edit_what_fits_no_kept_theme_is_marked_new_and_languages_stay_apart(
    world: World,
):
    csrf = await world.sign_in("cora")
    first = _ids(await _page(world))[0]
    status, _, _ = await _post(world, f"{PAGE}/rename",
                               {"csrf": csrf, "theme": first, "name": "Pay"})  # fmt: skip
    assert status == 303
    await _story(world.storage, [f"night shifts are longer, shift {n}" for n in range(6)], "night")
    await _story(world.storage, ["nos recortaron las horas", "me quitaron horas",
                                 "menos horas cada semana", "recortaron horas otra vez",
                                 "horas recortadas a todos", "las horas no alcanzan"],
                 "es", "es")  # fmt: skip
    html = await _page(world)
    words = text_of(main_of(html))
    assert "Pay 12 people" in words  # the coordinator's theme keeps its name and people
    cards = re.findall(r'<li class="card theme".*?</li>\s*(?=<li class="card theme"|</ul>)',
                       html, re.S)  # fmt: skip
    new = [text_of(card) for card in cards if 'class="mark"' in card]
    assert any("night" in card and "6 people · English" in card for card in new), new
    assert any("6 people · Spanish" in card for card in new), new
    assert not any(card.startswith("Pay") for card in new)
    assert "Themes marked “new” fit none of the themes in the codebook." in words
    # A Spanish theme can't join an English one.
    themes = await _themes(world)
    spanish = next(t.id for t in themes.themes if t.language == "es")
    status, _, page = await _post(world, f"{PAGE}/merge",
                                  {"csrf": csrf, "keep": first, "gone": spanish})  # fmt: skip
    assert status == 422 and "in different languages" in text_of(page)


async def test_the_cache_keeps_themes_a_few_minutes_and_an_edit_forgets_the_question():
    clock = FakeClock()
    cache = ThemesCache(clock)
    found = Themes([], 0, 5, codebook=b"v1")
    key = (GUIDE_ID, "story", None, START)
    other = (GUIDE_ID, "note", None, START)

    def now_kept(book: bytes | None):  # type: ignore[no-untyped-def]
        async def hold(themes: Themes) -> bool:
            return themes.codebook == book

        return hold

    async def unread(themes: Themes) -> bool:
        raise AssertionError("the database was read with nothing kept to compare it with")

    v1 = now_kept(b"v1")
    assert await cache.get(key, unread) is None
    cache.put(key, found)
    cache.put(other, found)
    clock.advance(seconds=31)
    assert await cache.get(key, v1) is found
    assert await cache.get(key, unread, within=JUST_SAVED) is None
    # The codebook changed since they were found (an edit on any instance): not these.
    assert await cache.get(key, now_kept(b"v2")) is None
    assert await cache.get(key, now_kept(None)) is None
    clock.advance(minutes=5)
    assert await cache.get(key, unread) is None  # answers keep coming: found again
    cache.put(key, found)
    cache.put(other, found)
    cache.forget(GUIDE_ID, "story")
    assert await cache.get(key, unread) is None and await cache.get(other, v1) is found

    async def find() -> Themes:
        return found

    cache.warm(key, find)
    await cache.settled()
    assert await cache.get(key, v1) is found
