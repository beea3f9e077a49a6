"""Guide texts and conditions may show and compare answers, nothing more.

`guides check` refuses what reaches into Python (attributes such as `__class__`,
calls, `*` and `**`, loops), naming the line; and a text that fails at run time
all the same is shown without its template parts, never with raw braces.
"""

from __future__ import annotations

import tracemalloc

import pytest

from bot.flows.engine import Flow
from bot.flows.events import TextInput
from bot.flows.expressions import render
from bot.flows.guide import Guide
from bot.flows.loader import parse_guide
from bot.locales import load_phrasebook
from tests.conftest import START

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

GUIDE = """\
guide: t
version: 1
title: Work
steps:
  - id: sector
    choose: What do you do?
    options: [Retail, Health care]
  - id: worry
    scale: How worried are you?
  - id: helps
    choose_many: What would help?
    options: [Training, A union]
  - id: thanks
    when: worry >= 1
    say: "Thanks"
"""


def problems(say: str = "Thanks", when: str = "worry >= 1") -> list[str]:
    text = GUIDE.replace('say: "Thanks"', f"say: {say!r}").replace("worry >= 1", when)
    return [str(p) for p in parse_guide(text, "g.yaml").problems]


@pytest.mark.parametrize(
    ("say", "reason"),
    [
        ("{{ ''.__class__ }}", "'__class__' is not allowed"),
        ("{{ sector.__class__.__mro__ }}", "'__mro__' is not allowed"),
        ("{{ guide.__globals__ }}", "'__globals__' is not allowed"),
        ("{{ guide['__class__'] }}", "'__class__' is not allowed"),
        ("{{ range(999999999) | list }}", "'range(...)' calls something"),
        ("{{ sector.upper() }}", "'...(...)' calls something"),
        ("{{ 'x' * 999999999 }}", "'*' and '**' are not allowed"),
        ("{{ 9 ** 9 ** 9 }}", "'*' and '**' are not allowed"),
        ("{% for i in range(10) %}x{% endfor %}", "'for' is not allowed here; only {% if %} is"),
        ("{{ sector | attr('__class__') }}", "the filter '|attr' is not allowed"),
        ("{{ sector.lower }}", "'sector.lower' can't be shown"),
    ],
)
def test_a_text_that_reaches_into_python_is_refused_naming_its_line(say: str, reason: str):
    found = problems(say=say)
    assert any(
        line.startswith("g.yaml:15: step 'thanks': a text can only show earlier answers")
        and reason in line
        for line in found
    ), found


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        ("sector.__class__ == 'x'", "'__class__' is not allowed"),
        ("sector.upper() == 'RETAIL'", "calls something"),
        ("worry ** 99 > 1", "'*' and '**' are not allowed"),
        ("sector.lower == 'x'", "'sector.lower' can't be used"),
    ],
)
def test_a_condition_that_reads_attributes_is_refused_naming_its_line(when: str, reason: str):
    found = problems(when=when)
    assert any(
        line.startswith("g.yaml:14: step 'thanks': 'when' can only compare earlier answers")
        and reason in line
        for line in found
    ), found


@pytest.mark.parametrize(
    ("say", "when"),
    [
        ("{{ 'x' * 99999999 }}", "worry >= 1"),
        ("Thanks", "\"'x' * 99999999 == sector\""),
    ],
)
def test_what_a_refused_text_would_build_is_never_built_to_check_it(say: str, when: str):
    # Jinja's compiler works out constant parts ahead of time: a check that compiled
    # these held a 100 MB string (ten times that took ten seconds to refuse).
    tracemalloc.start()
    try:
        found = problems(say=say, when=when)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert any("'*' and '**' are not allowed" in line for line in found), found
    assert peak < 20_000_000, f"checking the guide took {peak:,} bytes"


@pytest.mark.parametrize(
    ("say", "when"),
    [
        ("Thanks from {{ guide.title }}, {{ sector }} worker", "worry >= 4"),
        ("{% if worry >= 4 %}Take care.{% endif %} {{ helps | default('') }}", "worry is none"),
        ("{{ sector if sector else 'friend' }}", "\"'training' in helps and sector != 'retail'\""),
        ("{{ guide.minutes }} minutes", "sector in ['retail', 'health-care'] or not helps"),
    ],
)
def test_showing_and_comparing_answers_is_still_allowed(say: str, when: str):
    assert problems(say=say, when=when) == []


def test_a_text_that_fails_at_run_time_never_shows_raw_braces():
    # A guide that never went through the checks (built directly), so its
    # template fails when rendered: the participant sees the words around it.
    data = {
        "guide": "raw",
        "version": 1,
        "title": "Raw",
        "steps": [
            {"id": "story", "ask": "What happened?"},
            {"id": "thanks", "say": "Thank you {{ story.missing.deeper }} for sharing."},
            {"id": "again", "ask": "Anything else {{ story"},
        ],
    }
    flow = Flow(Guide.model_validate(data), load_phrasebook())
    outcome = flow.start(run_id="r", guide_hash="h", language="en", now=START)
    outcome = flow.resume(outcome.state, TextInput("We moved"), START)
    texts = [reply.text for reply in outcome.replies]
    assert "Thank you for sharing." in texts
    assert all("{{" not in text and "}}" not in text and "{%" not in text for text in texts)


@pytest.mark.parametrize(
    "source",
    [
        "Hi {{ x.y.z }} there.",
        "Hi {{ x there",
        "Hi {% for %} there {# note #}",
        "Hi {{ ''.__class__.__mro__[1].__subclasses__() }} there",
    ],
)
def test_render_never_returns_template_syntax(source: str):
    shown = render(source, {})
    assert shown.startswith("Hi")
    assert not any(mark in shown for mark in ("{{", "}}", "{%", "%}", "{#", "#}"))
