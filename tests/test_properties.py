"""Property tests for everything that reads what people wrote: chat input and guide files."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.flows.commands import parse_command
from bot.flows.engine import Flow
from bot.flows.events import (
    CONSENT_STEP,
    DONE_VALUE,
    LANGUAGE_STEP,
    Command,
    Open,
    Picked,
    Tap,
    TextInput,
    Timeout,
)
from bot.flows.guide import StepKind
from bot.flows.loader import parse_guide
from bot.flows.run import RunState, RunStatus
from bot.flows.scrub import scrub
from bot.locales import load_phrasebook
from tests.conftest import DATA, START

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

EXAMPLE = (DATA / "format-example.yaml").read_text("utf-8")
LIMIT = 300
FLOW = Flow(parse_guide(EXAMPLE, "example.yaml").guide, load_phrasebook(), max_answer_chars=LIMIT)  # type: ignore[arg-type]
GUIDE = FLOW.guide
STEP_IDS = [s.id for s in GUIDE.steps] + [CONSENT_STEP, LANGUAGE_STEP, "_nope"]
VALUES = ["yes", "no", "1", "5", "99", "en", "es", DONE_VALUE, "retail", "training", "a-union", ""]

any_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.text(
    max_size=LIMIT + 50
)
typed = st.one_of(
    any_text,
    st.sampled_from(
        ["yes", "no", "1", "2", "3", "1, 2", "4", "5", "45", "Retail", "/skip", "/back"]
    ),
    st.just("x" * (LIMIT + 1)),
    st.just(""),
    st.sampled_from(
        [
            "y" * 1_000_000,  # a 1 MB message
            "9" * 400,  # a number too big for any range, or for a float
            "-1e309",
            "مرحبا، العمل تغير كثيرا",  # right-to-left text
            "\u202eevil\u202c 5",  # a right-to-left override
            "👍🏽🎉👷‍♀️",  # emoji only
            "\x00\x1b[2J\r\n",  # control characters
        ]
    ),
)
inputs = st.one_of(
    typed.map(TextInput),
    st.builds(Tap, st.sampled_from(STEP_IDS), st.sampled_from(VALUES)),
    st.builds(
        Command,
        st.sampled_from(["skip", "back", "stop", "help", "language", "privacy", "start", "zzz"]),
        st.sampled_from(["", "es", "en", "klingon"]),
    ),
    st.just(Timeout()),
    st.builds(Open, st.integers(0, 20)),
    st.builds(Picked, st.sampled_from(STEP_IDS), st.lists(st.sampled_from(VALUES)).map(tuple)),
)


def assert_valid(state: RunState) -> None:
    questions = {s.id: s for s in GUIDE.questions}
    assert state.language in GUIDE.languages
    if state.status is RunStatus.ACTIVE:
        assert state.step in questions
    else:
        assert state.step is None
    if state.status is RunStatus.CONSENT or state.status is RunStatus.DECLINED:
        assert state.answers == {}
    assert set(state.answers) <= set(questions)
    assert list(dict.fromkeys(state.asked)) == state.asked
    assert set(state.asked) == set(state.answers)
    if state.waiting:  # a paced run waits only at a question not yet open
        assert state.gate is not None and state.status is RunStatus.ACTIVE
    for step_id, value in state.answers.items():
        step = questions[step_id]
        if value is None:
            assert step.optional
            continue
        options = {o.id for o in step.option_list()}
        match step.kind:
            case StepKind.CHOOSE:
                assert value in options
            case StepKind.CHOOSE_MANY:
                assert isinstance(value, list) and set(value) <= options
                low, high = step.choice_bounds()
                assert low <= len(value) <= high
            case StepKind.SCALE:
                low, high = step.scale_range()
                assert isinstance(value, int) and low <= value <= high
            case StepKind.NUMBER:
                assert step.range is not None
                assert isinstance(value, int | float) and step.range[0] <= value <= step.range[1]
            case _:
                assert isinstance(value, str) and 0 < len(value) <= LIMIT + 20


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(inputs, max_size=25), st.sampled_from(["en", "es", "fr", ""]))
# An optional free-text answer of only an escape character was kept as "" (found here).
@example([TextInput("1"), TextInput("1"), TextInput("\x1b")], "en")
@example([TextInput("1"), TextInput("1"), TextInput("\u200b \u200b")], "en")
def test_no_input_ever_crashes_the_engine_or_breaks_a_run(given_inputs, language):
    gate = 1 if language == "fr" else None  # some runs paced, from the first question
    outcome = FLOW.start(run_id="r", guide_hash="h", language=language, now=START, gate=gate)
    assert_valid(outcome.state)
    now = START
    for item in given_inputs:
        now += timedelta(minutes=1)
        outcome = FLOW.resume(outcome.state, item, now)
        assert_valid(outcome.state)
        # The state always survives a round trip through storage.
        assert RunState.model_validate_json(outcome.state.model_dump_json()) == outcome.state
        for reply in outcome.replies:
            assert reply.text.strip()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_as_a_guide_is_read_or_explained(text):
    loaded = parse_guide(text, "fuzz.yaml")
    assert (loaded.guide is None) == bool(loaded.problems)
    for problem in loaded.problems:
        assert str(problem).startswith("fuzz.yaml")


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 200) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "say",
                    "ask",
                    "choose",
                    "options",
                    "when",
                    "range",
                    "labels",
                    "en",
                    "es",
                    "max",
                    "min",
                    "label",
                    "optional",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(yaml_values, min_size=1, max_size=5), st.sampled_from([["en"], ["en", "es"]]))
def test_odd_guide_structures_are_explained_never_raised(steps, languages):
    document = {"guide": "fuzz", "version": 1, "title": "T", "languages": languages, "steps": steps}
    loaded = parse_guide(yaml.safe_dump(document, allow_unicode=True), "fuzz.yaml")
    assert (loaded.guide is None) == bool(loaded.problems)
    if loaded.guide is not None:
        flow = Flow(loaded.guide, FLOW.phrases)
        outcome = flow.start(run_id="r", guide_hash="h", language="en", now=START)
        for answer in ["1", "yes", "x", "/skip", "2"]:
            outcome = flow.resume(outcome.state, TextInput(answer), START)


@given(st.text(max_size=200))
def test_command_parsing_never_fails(text):
    parsed = parse_command(text)
    if parsed is not None:
        name, arg = parsed
        assert name.isascii() and name == name.lower() and arg == arg.strip()


@given(
    st.from_regex(r"[a-z]{1,10}", fullmatch=True),
    st.from_regex(r"[a-z0-9 -]{0,20}", fullmatch=True),
)
def test_commands_round_trip(name, arg):
    assert parse_command(f"/{name} {arg}") == (name, arg.strip())
    assert parse_command(f"/{name}@KitchenTableBot") == (name, "")


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=100),
    st.emails(),
    st.from_regex(r"\(?[2-9][0-9]{2}\)? ?[2-9][0-9]{2}-[0-9]{4}", fullmatch=True),
)
def test_scrubbing_removes_emails_and_phone_numbers(before, email, phone):
    scrubbed = scrub(f"{before} {email} and {phone}")
    assert email not in scrubbed
    assert phone.split()[-1] not in scrubbed
