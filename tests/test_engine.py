"""The flow engine on its own: pure inputs, outcomes a participant would notice."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.flows.engine import Flow
from bot.flows.events import (
    CONSENT_STEP,
    DONE_VALUE,
    AnswerGiven,
    AnswerWithdrawn,
    Command,
    ConsentDecided,
    Open,
    Outcome,
    Picked,
    RunEnded,
    Tap,
    TextInput,
    Timeout,
)
from bot.flows.run import RunStatus
from tests.conftest import START, flow_for

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

GUIDE = """
guide: demo
version: 1
title: Demo
consent: We keep your answers without your name.
steps:
  - id: hello
    say: Hello!
  - id: sector
    choose: What do you do?
    options: [Retail, Health care, Other]
  - id: story
    ask: Tell us a story.
    optional: true
    max_length: 50
  - id: worry
    scale: How worried are you?
    labels: {1: Not at all, 5: Very}
  - id: why
    when: worry >= 4
    ask: What worries you, {{ sector }} worker?
  - id: helps
    choose_many: What would help?
    options: [Training, A union, Better pay]
    max: 2
  - id: hours
    number: Hours last week?
    range: [0, 100]
  - id: bye
    say: "Thanks! You said: {{ story }}"
"""


def start(flow: Flow) -> Outcome:
    return flow.start(run_id="r1", guide_hash="h", language="en", now=START)


def feed(flow: Flow, outcome: Outcome, *inputs: object) -> Outcome:
    for given in inputs:
        text_or_input = TextInput(given) if isinstance(given, str) else given
        outcome = flow.resume(outcome.state, text_or_input, START)  # type: ignore[arg-type]
    return outcome


def answers(outcome: Outcome) -> dict[str, object]:
    return dict(outcome.state.answers)


def test_consent_comes_first_and_nothing_is_asked_before_it(phrases):
    outcome = start(flow_for(GUIDE, phrases))
    assert outcome.state.status is RunStatus.CONSENT
    assert outcome.replies[-1].step == CONSENT_STEP
    assert "We keep your answers" in outcome.replies[-1].text
    assert not [e for e in outcome.events if isinstance(e, AnswerGiven)]


def test_declining_keeps_nothing_and_ends(phrases):
    flow = flow_for(GUIDE, phrases)
    outcome = feed(flow, start(flow), "no thanks")
    assert ConsentDecided(False) in outcome.events
    assert RunEnded(RunStatus.DECLINED) in outcome.events
    assert outcome.state.answers == {}
    assert "Nothing you said has been kept" in outcome.replies[-1].text


@pytest.mark.parametrize(
    ("language", "typed", "agreed"),
    [("es", "¡Sí!", True), ("es", "si?", True), ("es", "¿No?", False), ("en", "Yes!", True),
     ("en", "OK.", True), ("es", "yes", True), ("en", "nope?", None)],
)  # fmt: skip
def test_consent_reads_yes_and_no_as_bot_questions_do(phrases, language, typed, agreed):
    """Punctuation around a yes ("¡Sí!") is still yes, as at the bot's own questions."""
    flow = flow_for(GUIDE, phrases)
    begun = flow.start(run_id="r1", guide_hash="h", language=language, now=START)
    outcome = feed(flow, begun, typed)
    expected = {True: RunStatus.ACTIVE, False: RunStatus.DECLINED, None: RunStatus.CONSENT}
    assert outcome.state.status is expected[agreed]


def test_consent_by_button_and_unclear_consent_asks_again(phrases):
    flow = flow_for(GUIDE, phrases)
    unclear = feed(flow, start(flow), "maybe later?")
    assert unclear.state.status is RunStatus.CONSENT
    assert "yes or no" in unclear.replies[0].text
    agreed = feed(flow, unclear, Tap(CONSENT_STEP, "yes"))
    assert agreed.state.status is RunStatus.ACTIVE
    assert [r.text for r in agreed.replies] == ["Hello!", "What do you do?"]


def test_a_whole_guide_with_every_kind(phrases):
    flow = flow_for(GUIDE, phrases)
    done = feed(
        flow,
        start(flow),
        "yes",
        "2",
        "My shift changed",
        "Very",
        "Robots",
        "1, 3",
        "about 45 hours",
    )
    assert answers(done) == {
        "sector": "health-care",
        "story": "My shift changed",
        "worry": 5,
        "why": "Robots",
        "helps": ["training", "better-pay"],
        "hours": 45,
    }
    assert done.state.status is RunStatus.FINISHED
    assert done.replies[-1].text == "Thanks! You said: My shift changed"


def test_condition_skips_a_step_when_it_does_not_hold(phrases):
    flow = flow_for(GUIDE, phrases)
    outcome = feed(flow, start(flow), "yes", "retail", "/skip", "2")
    assert outcome.state.step == "helps"
    assert "why" not in outcome.state.answers
    assert outcome.state.answers["story"] is None


def test_templates_show_labels_and_participant_text_literally(phrases):
    flow = flow_for(GUIDE, phrases)
    outcome = feed(flow, start(flow), "yes", "2", "{{ 7*7 }} <b>bold</b>", "5")
    assert outcome.replies[-1].text == "What worries you, Health care worker?"
    finished = feed(flow, outcome, "x", "1", "10")
    assert finished.replies[-1].text == "Thanks! You said: {{ 7*7 }} <b>bold</b>"


def test_invalid_answers_re_ask_with_a_helpful_message(phrases):
    flow = flow_for(GUIDE, phrases)
    at_sector = feed(flow, start(flow), "yes")
    wrong = feed(flow, at_sector, "astronaut")
    assert wrong.state.step == "sector"
    assert "pick one of the options" in wrong.replies[0].text
    assert wrong.replies[1].text == "What do you do?"
    at_worry = feed(flow, at_sector, "1", "/skip")
    assert "from 1 to 5" in feed(flow, at_worry, "9").replies[0].text
    assert "from 1 to 5" in feed(flow, at_worry, "2.5").replies[0].text
    at_helps = feed(flow, at_worry, "2")
    assert "between 1 and 2" in feed(flow, at_helps, "1,2,3").replies[0].text
    at_hours = feed(flow, at_helps, "1")
    assert "from 0 to 100" in feed(flow, at_hours, "200").replies[0].text
    assert "from 0 to 100" in feed(flow, at_hours, "lots").replies[0].text
    empty = feed(flow, at_sector, "1", "   ")
    assert "A few words" in empty.replies[0].text
    # Nothing, or far too much, typed where a choice or a number is asked: told what
    # that question takes, not asked for "a few words" or to shorten it.
    assert "pick one of the options" in feed(flow, at_sector, " ").replies[0].text
    assert "from 1 to 5" in feed(flow, at_worry, "").replies[0].text
    assert "from 1 to 5" in feed(flow, at_worry, "3" * 5000).replies[0].text
    assert "from 0 to 100" in feed(flow, at_hours, "\n").replies[0].text


def test_over_long_answers_are_refused_and_nothing_is_kept(phrases):
    flow = flow_for(GUIDE, phrases, max_answer_chars=100)
    at_story = feed(flow, start(flow), "yes", "1")
    step_limit = feed(flow, at_story, "x" * 51)
    assert "up to 50 characters" in step_limit.replies[0].text
    assert "story" not in step_limit.state.answers
    global_limit = feed(flow, at_story, "y" * 101)
    assert "up to 100 characters" in global_limit.replies[0].text
    assert not [e for e in global_limit.events if isinstance(e, AnswerGiven)]


def test_skip_only_optional_steps(phrases):
    flow = flow_for(GUIDE, phrases)
    at_sector = feed(flow, start(flow), "yes")
    refused = feed(flow, at_sector, Command("skip"))
    assert refused.state.step == "sector"
    assert "can't be skipped" in refused.replies[0].text
    skipped = feed(flow, at_sector, "1", Command("skip"))
    assert skipped.state.step == "worry"
    assert AnswerGiven("story", "ask", None, "–") in skipped.events


def test_back_withdraws_the_previous_answer_and_asks_again(phrases):
    flow = flow_for(GUIDE, phrases)
    at_story = feed(flow, start(flow), "yes", "1")
    back = feed(flow, at_story, Command("back"))
    assert AnswerWithdrawn("sector") in back.events
    assert back.state.step == "sector"
    assert "sector" not in back.state.answers
    first = feed(flow, back, Command("back"))
    assert "first question" in first.replies[0].text
    assert feed(flow, back, "3").state.answers["sector"] == "other"


def test_stop_ends_and_keeps_what_was_given(phrases):
    flow = flow_for(GUIDE, phrases)
    at_second = feed(flow, start(flow), "yes", "1")
    stopped = feed(flow, at_second, Command("stop"))
    assert stopped.state.status is RunStatus.STOPPED
    assert stopped.state.step is None and stopped.state.left_at == at_second.state.step
    assert at_second.state.step is not None  # where people stop, for the digest
    assert stopped.state.answers == {"sector": "retail"}
    assert "Send /start" in stopped.replies[-1].text
    after = feed(flow, stopped, "hello?")
    assert "finished" in after.replies[0].text


def test_help_and_privacy_answer_then_repeat_the_question(phrases):
    flow = flow_for(GUIDE, phrases)
    at_sector = feed(flow, start(flow), "yes")
    helped = feed(flow, at_sector, Command("help"))
    assert "/skip" in helped.replies[0].text
    assert helped.replies[1].text == "What do you do?"
    private = feed(flow, at_sector, Command("privacy"))
    assert "never keep your name" in private.replies[0].text


BILINGUAL = """
guide: bilingual
version: 1
title: {en: Work, es: Trabajo}
languages: [en, es]
steps:
  - id: sector
    choose: {en: "What do you do?", es: "¿A qué te dedicas?"}
    options:
      - {id: care, label: {en: Care work, es: Cuidados}}
      - {id: build, label: {en: Building, es: Construcción}}
  - id: bye
    say: {en: Thanks!, es: ¡Gracias!}
"""


def test_language_switch_by_buttons_and_by_name(phrases):
    flow = flow_for(BILINGUAL, phrases)
    outcome = flow.start(run_id="r", guide_hash="h", language="es-MX", now=START)
    assert outcome.state.language == "es"
    assert outcome.replies[-1].text == "¿A qué te dedicas?"
    asked = feed(flow, outcome, Command("language"))
    assert [b.value for b in asked.replies[0].buttons] == ["en", "es"]
    switched = feed(flow, asked, Tap("_language", "en"))
    assert switched.state.language == "en"
    assert switched.replies[-1].text == "What do you do?"
    by_arg = feed(flow, outcome, Command("language", "English"))
    assert by_arg.state.language == "en"
    # A label typed in either language counts as the same option.
    assert feed(flow, switched, "cuidados").state.answers["sector"] == "care"


def test_progress_counts_questions_with_a_total_that_stays_steady(phrases):
    flow = flow_for(GUIDE, phrases)
    at_sector = feed(flow, start(flow), "yes")
    assert at_sector.replies[-1].progress == "1 of 6"
    at_worry = feed(flow, at_sector, "1", "story")
    assert at_worry.replies[-1].progress == "3 of 6"
    worried = feed(flow, at_worry, "5")
    assert worried.replies[-1].progress == "4 of 6"
    # "why" is only for the worried: stepped over, the count jumps, the total stays.
    calm = feed(flow, at_worry, "2")
    assert calm.replies[-1].progress == "5 of 6"


def test_back_shows_the_answer_given_before(phrases):
    flow = flow_for(GUIDE, phrases)
    at_story = feed(flow, start(flow), "yes", "1")
    back = feed(flow, at_story, Command("back"))
    shown = [r.text for r in back.replies]
    assert any("You had answered:" in t for t in shown), shown
    assert back.replies[-1].progress == "1 of 6"


def test_expiry_is_an_input(phrases):
    flow = flow_for(GUIDE, phrases)
    at_sector = feed(flow, start(flow), "yes")
    later = START + timedelta(days=8)
    quiet = flow.resume(at_sector.state, Timeout(), later)
    assert quiet.state.status is RunStatus.EXPIRED and not quiet.replies
    assert quiet.state.left_at == "sector"
    typed = flow.resume(at_sector.state, TextInput("1"), later)
    assert typed.state.status is RunStatus.EXPIRED
    assert "closed" in typed.replies[0].text
    assert "sector" not in typed.state.answers
    fresh = flow.resume(at_sector.state, Timeout(), START + timedelta(days=6))
    assert fresh.state.status is RunStatus.ACTIVE


def test_choose_many_by_toggling_buttons(phrases):
    flow = flow_for(GUIDE, phrases)
    at_helps = feed(flow, start(flow), "yes", "1", "/skip", "1")
    toggled = feed(flow, at_helps, Tap("helps", "training"), Tap("helps", "a-union"))
    assert toggled.replies[-1].update
    assert [b.chosen for b in toggled.replies[-1].buttons][:3] == [True, True, False]
    untoggled = feed(flow, toggled, Tap("helps", "training"))
    done = feed(flow, untoggled, Tap("helps", DONE_VALUE))
    assert done.state.answers["helps"] == ["a-union"]
    none_chosen = feed(flow, at_helps, Tap("helps", DONE_VALUE))
    assert none_chosen.state.step == "helps"


def test_choose_many_by_submitting_a_set_of_checkboxes(phrases):
    flow = flow_for(GUIDE, phrases)
    at_helps = feed(flow, start(flow), "yes", "1", "/skip", "1")
    done = feed(flow, at_helps, Picked("helps", ("better-pay", "training", "training")))
    assert done.state.answers["helps"] == ["training", "better-pay"]  # in the guide's order
    assert done.state.step == "hours"
    too_many = feed(flow, at_helps, Picked("helps", ("training", "a-union", "better-pay")))
    assert too_many.state.step == "helps" and "helps" not in too_many.state.answers
    unknown = feed(flow, at_helps, Picked("helps", ("training", "a-pony")))
    assert unknown.state.step == "helps" and unknown.state.pending == []
    stale = feed(flow, at_helps, Picked("sector", ("training",)))
    assert "already answered" in stale.replies[0].text


def test_questions_offer_skip_only_when_optional_and_back_after_the_first(phrases):
    flow = flow_for(GUIDE, phrases)
    at_sector = feed(flow, start(flow), "yes")
    assert [b.value for b in at_sector.replies[-1].controls] == ["stop"]
    at_story = feed(flow, at_sector, "1")
    assert [b.value for b in at_story.replies[-1].controls] == ["skip", "back", "stop"]
    assert [b.label for b in at_story.replies[-1].controls] == ["Skip", "Back", "Stop"]
    assert flow.question(at_story.state, "story") == "Tell us a story."


def test_paced_runs_wait_for_the_group_at_each_question(phrases):
    flow = flow_for(GUIDE, phrases)
    started = flow.start(run_id="r1", guide_hash="h", language="en", now=START, gate=1)
    at_sector = feed(flow, started, "yes")
    assert at_sector.replies[-1].step == "sector"  # question 1 is open
    waiting = feed(flow, at_sector, "1")
    assert waiting.state.waiting and "wait for the group" in waiting.replies[-1].text
    still = feed(flow, waiting, "a story typed too early")
    assert "story" not in still.state.answers and "waiting" in still.replies[-1].text
    assert "waiting" in feed(flow, waiting, Command("skip")).replies[-1].text
    opened = feed(flow, waiting, Open(2))
    assert not opened.state.waiting and opened.replies[-1].step == "story"
    assert feed(flow, opened, "Long nights").state.answers["story"] == "Long nights"
    back = feed(flow, waiting, Command("back"))
    assert back.state.step == "sector" and not back.state.waiting
    # A run not yet at the gate only learns that more is open.
    assert feed(flow, at_sector, Open(3)).replies == []


def test_a_tap_on_an_old_question_changes_nothing(phrases):
    flow = flow_for(GUIDE, phrases)
    at_story = feed(flow, start(flow), "yes", "1")
    stale = feed(flow, at_story, Tap("sector", "other"))
    assert stale.state.answers["sector"] == "retail"
    assert "already answered" in stale.replies[0].text
    assert stale.state.step == "story"


def test_scrubbing_applies_to_free_text_unless_turned_off(phrases):
    flow = flow_for(GUIDE, phrases)
    at_story = feed(flow, start(flow), "yes", "1")
    scrubbed = feed(flow, at_story, "Mail me at ana@example.org or call 312-555-0199")
    assert scrubbed.state.answers["story"] == "Mail me at [email] or call [phone]"
    links = feed(flow, at_story, "t.me/ana_l and ana.dev/cv")
    assert links.state.answers["story"] == "[link] and [link]"
    raw_guide = GUIDE.replace("    max_length: 50", "    max_length: 50\n    scrub: false")
    raw = flow_for(raw_guide, phrases)
    kept = feed(raw, feed(raw, start(raw), "yes", "1"), "ana@example.org")
    assert kept.state.answers["story"] == "ana@example.org"


def test_resume_never_mutates_its_input(phrases):
    flow = flow_for(GUIDE, phrases)
    walk = ["yes", "1", "a story", "5", Command("back"), "5", "why", Tap("helps", "training"),
            Tap("helps", "a-union"), Tap("helps", "training"), Tap("helps", DONE_VALUE),
            Command("back"), Picked("helps", ("better-pay",)), "40"]  # fmt: skip
    outcome = start(flow)
    for given in walk:
        before = outcome.state.model_dump()
        following = feed(flow, outcome, given)
        assert outcome.state.model_dump() == before, given
        outcome = following
    assert outcome.state.status is RunStatus.FINISHED


def test_stop_or_silence_before_consent_keeps_nothing(phrases):
    flow = flow_for(GUIDE, phrases)
    stopped = feed(flow, start(flow), Command("stop"))
    assert stopped.state.status is RunStatus.DECLINED
    assert "Nothing you said has been kept" in stopped.replies[-1].text
    silent = flow.resume(start(flow).state, Timeout(), START + timedelta(days=8))
    assert silent.state.status is RunStatus.DECLINED
    back = feed(flow, start(flow), Command("back"))
    assert back.state.status is RunStatus.CONSENT
    assert "yes or no" in back.replies[0].text


NUMBERED = """
guide: numbered
version: 1
title: Shifts
steps:
  - id: shifts
    choose: How many shifts?
    options: [3, 4, 5, 1]
  - id: bye
    say: Thanks
"""


def test_options_that_are_numbers_mean_what_they_say(phrases):
    flow = flow_for(NUMBERED, phrases)
    begun = flow.start(run_id="r", guide_hash="h", language="en", now=START)
    assert feed(flow, begun, Tap("shifts", "3")).state.answers == {"shifts": "3"}
    assert feed(flow, begun, Tap("shifts", "1")).state.answers == {"shifts": "1"}
    assert feed(flow, begun, "1").state.answers == {"shifts": "1"}
    # A platform that could not fit an id in a button sends its position instead.
    assert feed(flow, begun, Tap("shifts", "#2")).state.answers == {"shifts": "5"}
    assert feed(flow, begun, Tap("shifts", "#9")).state.step == "shifts"


def test_the_time_a_guide_takes_reads_right_for_one_minute_and_for_several(phrases):
    def intro(minutes: int, language: str) -> str:
        guide = GUIDE.replace("title: Demo", f"title: Demo\nminutes: {minutes}")
        flow = flow_for(guide, phrases)
        outcome = flow.start(run_id="r1", guide_hash="h", language=language, now=START)
        return " ".join(reply.text for reply in outcome.replies)

    assert "It takes about a minute." in intro(1, "en")
    assert "1 minutes" not in intro(1, "en")
    assert "It takes about 5 minutes." in intro(5, "en")
    assert phrases.text("es", "about_a_minute") == "Toma más o menos un minuto."
