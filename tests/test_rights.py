"""Participants' rights: /privacy, /mydata (their own data, nobody else's), /forget
(nothing left but a tombstone, not even in the database's spare pages or journal),
and retention of free text."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

from bot.flows.events import Tap
from bot.reports import exports
from bot.reports.digest import build_digest
from tests.conftest import Harness

GUIDE = """
guide: pulse
version: 1
title: Pulse
consent: We keep your answers without your name.
keep_in_touch: weekly
steps:
  - id: sector
    choose: What do you do?
    options: [Retail, Health care, Other]
  - id: hope
    ask: One hope for next week?
    quotable: true
"""
SECRET_WORDS = "Zanzibar-lighthouse-shift"


async def walk(h: Harness, who: str, hope: str) -> None:
    for text in ("/start pulse", "yes", "1", hope):
        await h.say(text, user=who)


def every_text_column(db: Path) -> list[tuple[str, str]]:
    """(table, value) for every text or blob value in every table."""
    connection = sqlite3.connect(db)
    found = []
    tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        for row in connection.execute(f"SELECT * FROM {table}"):
            for value in row:
                if isinstance(value, str | bytes):
                    found.append((table, value if isinstance(value, str) else value.hex()))
    connection.close()
    return found


async def test_privacy_says_what_is_kept_for_what_how_long_and_how_to_erase(make_harness):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    text = (await h.say("/privacy", user="ana"))[0].text
    for words in ("What we keep", "What for", "Who sees it", "How long", "/mydata", "/forget"):
        assert words in text
    spanish = (await h.say("/privacy", user="ana", language="es"))[0].text
    assert "/forget" in spanish and "Qué guardamos" in spanish


async def test_mydata_is_exactly_their_own(make_harness):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    await h.storage.save_cohort("weekly", "WEEKLY1", h.clock())
    await walk(h, "ana", "Fair pay for Ana")
    await h.say(None, user="ana", tap=Tap("_keep", "yes:weekly"))  # type: ignore[arg-type]
    await walk(h, "ben", "Rest for Ben")
    replies = await h.say("/mydata", user="ana")
    readable, document = replies[0].text, replies[1].document
    # Options by their label, as they chose them, not their ids (found by review).
    assert "Fair pay for Ana" in readable and "What do you do? Retail" in readable
    assert "weekly" in readable and "agreed" in readable
    # Each conversation by the guide's title and a status in their words, not its id.
    assert "\nPulse (finished, " in readable and "pulse (" not in readable
    assert "Ben" not in readable and document is not None and "Ben" not in document
    data = json.loads(document)
    # Each row's columns by name, so the file reads without the schema (found by review).
    assert [a["value"] for a in data["answers"]] == ["retail", "Fair pay for Ana"]
    assert data["cohorts"][0]["cohort"] == "weekly" and len(data["consents"]) == 1
    nothing = await h.say("/mydata", user="stranger")
    assert "keep nothing" in nothing[0].text


async def test_forget_asks_first_then_leaves_only_a_tombstone(make_harness, tmp_path: Path):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    await h.storage.save_cohort("weekly", "WEEKLY1", h.clock())
    for n in range(5):
        await walk(h, f"p{n}", f"More rest {n}")
    await walk(h, "ana", SECRET_WORDS)
    await h.say(None, user="ana", tap=Tap("_keep", "yes:weekly"))  # type: ignore[arg-type]
    await h.say("/timezone Europe/Madrid", user="ana")
    pseudonym = h.pseudonym("ana")
    asked = await h.say("/forget", user="ana")
    assert "can't be undone" in asked[0].text and len(asked[0].buttons) == 2
    kept = await h.say(None, user="ana", tap=Tap("_forget", "no"))  # type: ignore[arg-type]
    assert "Nothing was erased" in kept[0].text
    assert await h.storage.participant(pseudonym) is not None
    done = await h.say(None, user="ana", tap=Tap("_forget", "yes"))  # type: ignore[arg-type]
    assert "has been erased" in done[0].text
    await h.deliverer.drain("terminal")
    db = tmp_path / "kt.db"
    leftovers = [(t, v) for t, v in every_text_column(db) if pseudonym in v and t != "tombstones"]
    assert leftovers == []
    assert await h.storage.tombstone(pseudonym) is not None
    # Nothing they typed survives anywhere in the data folder, free pages and journal included.
    for path in tmp_path.glob("kt.db*"):
        assert SECRET_WORDS.encode() not in path.read_bytes(), path
    # Gone from exports and digests made afterwards.
    loaded = h.library.get("pulse")
    assert loaded is not None and loaded.guide is not None
    exported = [a async for a in exports.answers(h.storage, loaded.guide)]
    assert exported and all(a.participant != pseudonym for a in exported)
    digest = await build_digest(h.storage, h.library, h.clock() - timedelta(days=1),
                                h.clock() + timedelta(days=1), min_group=5)  # fmt: skip
    assert digest.guides[0].participants.value == 5
    # Coming back, they start fresh: asked for consent again, nothing remembered.
    again = await h.say("/start pulse", user="ana")
    assert "Is that all right" in again[-1].text
    assert "keep nothing" not in (await h.say("/mydata", user="ana"))[0].text  # the new run only


async def test_an_operators_forget_in_the_middle_of_a_turn_is_not_undone_by_it(make_harness):  # type: ignore[no-untyped-def]
    """`kitchen-table forget` runs in its own process: it can erase someone between
    their turn's read and its commit. That turn then writes nothing back, and says
    nothing; what they type next starts afresh."""
    h: Harness = make_harness(GUIDE)
    for text in ("/start pulse", "yes"):
        await h.say(text, user="ana")
    pseudonym = h.pseudonym("ana")
    committing = h.storage.commit

    async def erased_first(commit):  # type: ignore[no-untyped-def]
        h.storage.commit = committing  # type: ignore[method-assign]
        await h.storage.forget(pseudonym, h.clock())  # the operator, at the worst moment
        return await committing(commit)

    h.storage.commit = erased_first  # type: ignore[method-assign]
    assert await h.say("1", user="ana") == []
    assert await h.storage.participant(pseudonym) is None
    assert not await h.storage.mine(pseudonym)
    again = await h.say("/start pulse", user="ana")
    assert "Is that all right" in again[-1].text


async def test_forget_by_typing_yes_and_by_an_admin(make_harness, tmp_path: Path):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    await walk(h, "ana", "one")
    await h.say("/forget yes", user="ana")
    assert await h.storage.participant(h.pseudonym("ana")) is None
    await walk(h, "beto", "uno")
    await h.say("/forget ¡Sí!", user="beto")  # in Spanish, as yes is read everywhere
    assert await h.storage.participant(h.pseudonym("beto")) is None
    await walk(h, "cy", "two")
    asked = await h.say("/forget ok", user="cy")  # anything but a whole yes asks first
    assert await h.storage.participant(h.pseudonym("cy")) is not None
    assert asked[-1].buttons


async def test_retention_blanks_old_free_text_and_nothing_else(make_harness):  # type: ignore[no-untyped-def]
    from bot.scheduling.scheduler import Scheduler

    h: Harness = make_harness(GUIDE)
    await walk(h, "old", "An old hope")
    h.clock.advance(days=40)
    await walk(h, "new", "A new hope")
    scheduler = Scheduler(h.storage, h.dispatcher, h.library, h.clock, retention_days=30)
    report = await scheduler.tick()
    assert report.expired == 1
    old = await h.storage.mine(h.pseudonym("old"))
    assert [json.loads(a.value) for a in old.answers] == ["retail", ""]  # choice kept
    new = await h.storage.mine(h.pseudonym("new"))
    assert [json.loads(a.value) for a in new.answers] == ["retail", "A new hope"]
    assert (await scheduler.tick()).expired == 0  # once a day


async def test_a_stray_yes_never_confirms_an_erasure(make_harness):  # type: ignore[no-untyped-def]
    """The confirmation answers only itself: another command in between ends it, and a
    reply that is neither yes nor no is asked again, never stored as an answer."""
    h: Harness = make_harness(GUIDE)
    await h.say("/start pulse", user="ana")
    await h.say("yes", user="ana")  # consent; now "What do you do?"
    asked = await h.say("/forget", user="ana")
    assert "Are you sure?" in asked[-1].text
    unclear = await h.say("nope, keep it", user="ana")
    assert "Please choose one of the answers above" in unclear[-1].text
    assert await h.storage.participant(h.pseudonym("ana")) is not None
    person = await h.storage.participant(h.pseudonym("ana"))
    assert person is not None and person.current_run is not None
    assert await h.storage.answers(person.current_run) == []  # not taken as an answer
    kept = await h.say("No.", user="ana")
    assert "Nothing was erased" in kept[-2].text
    assert kept[-1].text == "What do you do?"  # and where they were, asked again

    await h.say("/forget", user="ana")
    await h.say("/mydata", user="ana")  # another command: the confirmation is over
    await h.say("1", user="ana")  # meant for "What do you do?": Retail
    await h.say("yes", user="ana")  # and this for "One hope for next week?": nothing erased
    person = await h.storage.participant(h.pseudonym("ana"))
    assert person is not None and person.current_run is not None
    answers = {a.step: a.value for a in await h.storage.answers(person.current_run)}
    assert answers == {"sector": '"retail"', "hope": '"yes"'}


async def test_a_menu_of_two_guides_is_not_a_yes_or_no_question(make_harness):  # type: ignore[no-untyped-def]
    other = GUIDE.replace("guide: pulse", "guide: second").replace("title: Pulse", "title: Second")
    h: Harness = make_harness(GUIDE, other)
    menu = await h.say("hello", user="ana")
    assert "Pulse" in menu[-1].text or any("Pulse" in b.label for b in menu[-1].buttons)
    refused = await h.say("no", user="ana")
    assert not any("Is that all right" in r.text for r in refused)  # no guide started
    started = await h.say("2", user="ana")
    assert "Is that all right" in started[-1].text


async def test_yes_with_a_mark_answers_the_offer_to_keep_in_touch(make_harness):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    await h.storage.save_cohort("weekly", "WEEKLY1", h.clock())
    await walk(h, "ana", "more rest")
    await h.say("Yes!", user="ana")
    assert await h.storage.cohorts_of(h.pseudonym("ana")) == ["weekly"]


async def test_mydata_names_a_role_in_their_language(make_harness):  # type: ignore[no-untyped-def]
    """A role in their words, not "Tu rol: coordinator" (found by review)."""
    h: Harness = make_harness(GUIDE)
    code = await h.house.roles.invite("coordinator", timedelta(days=1))
    await h.say(f"/redeem {code}", user="lia", language="es")
    readable = (await h.say("/mydata", user="lia", language="es"))[0].text
    assert "Tu rol: coordinador o coordinadora" in readable and "coordinator" not in readable
