"""Property tests for guide files: whatever an author types, `guides check` answers
with a valid guide or with problems that each point at a line, and never crashes."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.flows.expressions import render
from bot.flows.loader import LoadedGuide, parse_guide
from tests.conftest import DATA

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

EXAMPLE = (DATA / "format-example.yaml").read_text("utf-8")
EXAMPLE_LINES = EXAMPLE.splitlines()

# Pieces of what guide authors write, right and wrong: keys, indents, tabs, quotes,
# brackets, YAML's special characters, conditions and templates, safe and not.
PIECES = [
    "guide: g", "version: 1", "title: T", "languages: [en, es]", "steps:", "  - id: a",
    "  - id: b", "    say: Hi", "    ask: Why?", "    choose: Pick", "    options: [A, B]",
    "    scale: How?", "    labels: {1: Low, 5: High}", "    when: a == 'x'", "    when: a.b",
    "keep_in_touch: weekly", "\t", "  ", "    ", "- ", ": ", ":", "#", "'", '"', "[", "]",
    "{", "}", ",", "*a", "&a", "!x", "|", ">", "?", "@", "%", "`", "{{ a }}", "{{ a",
    "{{ ''.__class__ }}", "{{ range(9**9) }}", "{% for x in a %}", "{% endfor %}",
    "{% if a %}", "{% endif %}", "{en: Hi, es: Hola}", "<<: *a", "~", "null", "1e9", "é",
    "\u202e", "\x00",
]  # fmt: skip
yamlish = st.lists(st.sampled_from(PIECES) | st.text(max_size=6), max_size=40).map(
    lambda parts: "".join(p if p.endswith((" ", "\t")) else p + "\n" for p in parts)
)


def assert_read_or_explained(loaded: LoadedGuide, text: str) -> None:
    assert (loaded.guide is None) == bool(loaded.problems)
    # YAML's line breaks, which editors count too (but for the rare \x85, \u2028, \u2029).
    last_line = len(re.split("\r\n|[\r\n\x85\u2028\u2029]", text))
    for problem in loaded.problems:
        assert str(problem).startswith("fuzz.yaml")
        if problem.message.startswith("more problems not shown"):
            continue  # the one summary line past the cap
        assert problem.line is not None, problem
        assert 1 <= problem.line <= last_line, problem
        assert "\n" not in problem.message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example("?\n|\n  - id: a\n")  # a key written over two lines, once shown as it was
@given(yamlish)
@example("{{ range(9**9) }}\n")  # a mapping as a key: once a crash
@example("\x00\nguide: g\n")  # a control character: once blamed on tabs, with no line
@example("steps:\n\t- id: a\n  - id: b\n\t\tsay: x\n")
def test_yaml_ish_text_is_read_or_explained_line_by_line(text: str):
    assert_read_or_explained(parse_guide(text, "fuzz.yaml"), text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(EXAMPLE_LINES)), st.sampled_from(PIECES)),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_a_good_guide_with_a_slip_is_read_or_explained_line_by_line(slips, replace):
    lines = list(EXAMPLE_LINES)
    for at, piece in slips:
        if replace and at < len(lines):
            lines[at] = lines[at][: len(lines[at]) // 2] + piece
        else:
            lines.insert(at, piece)
    text = "\n".join(lines) + "\n"
    loaded = parse_guide(text, "fuzz.yaml")
    assert_read_or_explained(loaded, text)
    if loaded.guide is not None:
        # A guide the check accepts shows no template syntax to anyone.
        for step in loaded.guide.steps:
            for variant in [step.text] if isinstance(step.text, str) else step.text.values():
                shown = render(variant, {"guide": {"title": "T"}})
                assert "{%" not in shown and "{#" not in shown


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_template_renders_without_raw_template_syntax(text: str):
    source = "Hello {{ " + text + " }} and {% if " + text + " %}x{% endif %} bye"
    shown = render(source, {"a": "<b>", "guide": {"title": "T"}})
    assert "{%" not in shown and "%}" not in shown
