"""The dispatcher with real storage and a recording channel: what people see and what is kept."""

from __future__ import annotations

import json
import sqlite3

from bot.flows.events import CONSENT_STEP, Tap
from bot.flows.run import RunState
from tests.conftest import load

GUIDE = """
guide: pulse
version: 1
title: Weekly pulse
consent: Your answers are kept without your name.
steps:
  - id: week
    scale: How was your week?
  - id: change
    ask: What changed?
  - id: thanks
    say: Thank you!
"""


async def current_state(h, user: str = "ana") -> RunState:
    person = await h.storage.participant(h.pseudonym(user))
    row = await h.storage.run(person.current_run)
    return RunState.model_validate_json(row.state)


async def test_a_conversation_is_stored_and_delivered(make_harness):
    h = make_harness(GUIDE)
    intro = await h.say("/start pulse")
    assert intro[0].text.startswith("Weekly pulse")
    assert intro[-1].step == CONSENT_STEP
    await h.say("yes")
    await h.say("4")
    done = await h.say("New manager <b>& rules</b>")
    assert [m.text for m in done] == ["Thank you!"]
    state = await current_state(h)
    assert state.status == "finished"
    rows = await h.storage.answers(state.run_id)
    assert {r.step: json.loads(r.value) for r in rows} == {
        "week": 4,
        "change": "New manager <b>& rules</b>",
    }
    assert [c.given for c in await h.storage.consents(h.pseudonym())] == [True]
    # Delivered messages leave the outbox.
    assert await h.storage.claim_due("terminal", h.clock(), 10) == []


async def test_decline_keeps_nothing_but_the_decline(make_harness):
    h = make_harness(GUIDE)
    await h.say("/start pulse")
    replies = await h.say("no")
    assert "Nothing you said has been kept" in replies[-1].text
    assert await h.storage.participant(h.pseudonym()) is None
    assert await h.storage.count_runs(h.pseudonym()) == 0
    assert [c.given for c in await h.storage.consents(h.pseudonym())] == [False]


async def test_an_update_that_arrives_twice_is_processed_once(make_harness):
    h = make_harness(GUIDE)
    await h.say("/start pulse")
    await h.say("yes")
    first = await h.say("3", key="update-7")
    again = await h.say("5", key="update-7")
    assert again == []
    assert [m.text for m in first] == ["What changed?"]
    assert (await current_state(h)).answers == {"week": 3}


async def test_restarting_resumes_the_unfinished_run(make_harness):
    h = make_harness(GUIDE)
    await h.say("/start pulse")
    await h.say("yes")
    await h.say("2")
    back = await h.say("/start pulse")
    assert back[0].text.startswith("Welcome back")
    assert back[1].text == "What changed?"
    assert (await current_state(h)).answers == {"week": 2}


async def test_a_live_guide_edit_does_not_change_runs_in_progress(make_harness):
    h = make_harness(GUIDE)
    await h.say("/start pulse")
    await h.say("yes")
    edited = GUIDE.replace("version: 1", "version: 2").replace("What changed?", "Anything new?")
    h.library.add(load(edited, "edited.yaml"))
    h.dispatcher.library = h.library
    replies = await h.say("3")
    assert [m.text for m in replies] == ["What changed?"]
    # Someone starting now gets the new version.
    newcomer = await h.say("/start pulse", user="ben")
    await h.say("yes", user="ben")
    assert [m.text for m in await h.say("3", user="ben")] == ["Anything new?"]
    assert (await current_state(h, "ben")).guide_version == 2
    assert newcomer


async def test_a_pinned_guide_survives_a_restart_from_storage(
    make_harness, storage, clock, phrases
):
    h = make_harness(GUIDE)
    await h.say("/start pulse")
    await h.say("yes")
    # A new process whose guides folder only has version 2.
    from bot.library import GuideLibrary
    from tests.conftest import Harness

    library = GuideLibrary()
    library.add(load(GUIDE.replace("version: 1", "version: 2").replace("What changed?", "Hmm?")))
    fresh = Harness(storage, library, clock, phrases)
    assert [m.text for m in await fresh.say("3")] == ["What changed?"]


async def test_taps_from_another_run_change_nothing(make_harness):
    h = make_harness(GUIDE)
    await h.say("/start pulse")
    await h.say("yes")
    replies = await h.say(None, tap=Tap("week", "5"), tap_run="some-old-run")
    assert "already answered" in replies[0].text
    assert (await current_state(h)).answers == {}
    ok = await h.say(None, tap=Tap("week", "5"), tap_run="run1")
    assert ok[0].text == "What changed?"


async def test_strangers_get_a_menu_and_nothing_is_kept(make_harness):
    h = make_harness(GUIDE)
    replies = await h.say("hello")  # "hi" or anything: the guides, as buttons
    assert [b.value for b in replies[0].buttons] == ["pulse"]
    menu = await h.say("/start")
    assert [b.value for b in menu[0].buttons] == ["pulse"]
    unknown = await h.say("/start nope")
    assert "couldn't find" in unknown[0].text
    assert await h.storage.participant(h.pseudonym()) is None
    started = await h.say(None, tap=Tap("_guide", "pulse"))
    assert started[-1].step == CONSENT_STEP


async def test_control_characters_are_dropped_from_answers(make_harness):
    h = make_harness(GUIDE)
    await h.say("/start pulse")
    await h.say("yes")
    await h.say("1")
    await h.say("a\x00b\x1b[31mc\u200b")
    state = await current_state(h)
    assert state.answers["change"] == "ab[31mc"  # zero-width space too (issue #16)


BILINGUAL = """
guide: duo
version: 1
title: {en: Work, es: Trabajo}
languages: [en, es]
steps:
  - id: week
    scale: {en: "How was your week?", es: "¿Cómo estuvo tu semana?"}
"""


async def test_a_chosen_language_wins_over_the_apps(make_harness):
    h = make_harness(BILINGUAL)
    await h.say("/start duo", language="en")
    await h.say("/language es", language="en")
    await h.say("3", language="en")
    again = await h.say("/start duo", language="en")
    assert "¿Cómo estuvo tu semana?" in again[-1].text


async def test_an_unknown_guide_is_not_echoed_with_personal_data(make_harness):
    h = make_harness(GUIDE)
    replies = await h.say("/start call me 312-555-0199 ana@example.org")
    assert "312-555-0199" not in replies[0].text
    assert "ana@example.org" not in replies[0].text


def test_a_sealed_address_is_kept_only_while_it_still_is_the_address():
    from bot.privacy import Identity

    ours, theirs = Identity(b"one-secret-for-this-test"), Identity(b"another-secret-for-it")
    sealed = ours.reseal("100", None)
    assert ours.reseal("100", sealed) == sealed  # the same person, the same chat: kept
    moved = ours.reseal("200", sealed)  # their chat changed: sealed anew
    assert moved != sealed and ours.unseal(moved) == "200"
    foreign = theirs.seal("100")  # sealed under another secret: sealed again under ours
    again = ours.reseal("100", foreign)
    assert again != foreign and ours.unseal(again) == "100"


async def test_a_run_on_a_guide_that_later_checks_refuse_still_carries_on(
    make_harness, storage, clock, phrases
):
    """A guide text that passed the checks of its day stays usable for the runs pinned
    to it, even when a newer `guides check` asks more of a guide."""
    h = make_harness(GUIDE)
    await h.say("/start pulse")
    await h.say("yes")
    person = await storage.participant(h.pseudonym())
    run = await storage.run(person.current_run)
    # What today's checks refuse (options in English only, in a guide in two languages)
    # but an older version accepted: as if it had been stored then.
    older = GUIDE.replace("title:", "languages: [en, es]\ntitle:").replace(
        "  - id: change\n",
        "  - id: pick\n    choose: Which?\n    options: [Here, There]\n  - id: change\n",
    )
    assert load_problems(older)
    db = sqlite3.connect(storage.path)
    db.execute("UPDATE guide_sources SET source = ? WHERE hash = ?", (older, run.guide_hash))
    db.commit()
    db.close()
    from bot.library import GuideLibrary
    from tests.conftest import Harness

    fresh = Harness(storage, GuideLibrary(), clock, phrases)  # the file is gone from disk
    replies = await fresh.say("3")
    assert replies[0].text.startswith("Which?")


def load_problems(text: str) -> list[object]:
    from bot.flows.loader import parse_guide

    return list(parse_guide(text, "older.yaml").problems)


async def test_language_outside_a_conversation_is_kept_and_the_menu_follows_in_it(make_harness):
    """/language with nothing under way once only showed the menu, in the old language."""
    h = make_harness(GUIDE)
    chose = await h.say("/language es", user="ana")
    assert chose[0].text == "Muy bien, desde ahora te hablo en español."
    assert chose[1].text.startswith("¡Hola!")
    helped = await h.say("/help", user="ana")  # later turns too
    assert "/skip" in helped[0].text and "pregunta" in helped[0].text
    person = await h.storage.participant(h.pseudonym("ana"))
    assert person is not None and person.language == "es"
    for unclear in ("/language", "/language klingon"):
        listed = await h.say(unclear, user="ben")
        assert len(listed) == 1 and "English (en), Español (es)" in listed[0].text
    assert await h.storage.participant(h.pseudonym("ben")) is None  # nothing kept


async def test_after_a_finished_guide_commands_are_answered_as_with_none_under_way(
    make_harness,
):
    """A finished run stays someone's last: /language and /help after it once got "this
    conversation is finished" instead of doing what they say."""
    h = make_harness(GUIDE)
    for text in ("/start pulse", "yes", "3", "More hours"):
        await h.say(text, user="ana")
    person = await h.storage.participant(h.pseudonym("ana"))
    run = await h.storage.run(person.current_run)
    assert run.status == "finished"
    chose = await h.say("/language es", user="ana")
    assert chose[0].text == "Muy bien, desde ahora te hablo en español."
    helped = await h.say("/help", user="ana")
    assert "/skip" in helped[0].text and "pregunta" in helped[0].text
    assert not any("finished" in m.text or "terminó" in m.text for m in chose + helped)
