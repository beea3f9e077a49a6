"""Guide authors' side: every documented feature is accepted; every mistake is explained
with its file, line, step and what to change."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from admin.guides import check, schema_text
from bot.flows.loader import parse_guide
from tests.conftest import DATA, GUIDES, ROOT

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

EXAMPLE = (DATA / "format-example.yaml").read_text("utf-8")
SECTOR_OPTIONS = next(line + "\n" for line in EXAMPLE.splitlines() if "Manufacturing" in line)


def problems(text: str) -> list[str]:
    return [str(p) for p in parse_guide(text, "g.yaml").problems]


def test_the_format_documents_example_is_accepted():
    loaded = parse_guide(EXAMPLE, "example.yaml")
    assert loaded.problems == []
    assert loaded.guide is not None
    assert [s.kind.value for s in loaded.guide.steps] == [
        "say", "choose", "ask", "scale", "ask", "choose_many", "number", "say",
    ]  # fmt: skip
    assert [o.id for o in loaded.guide.steps[1].option_list()] == [
        "manufacturing", "health-care", "retail", "other",
    ]  # fmt: skip


def test_the_shipped_guides_are_valid():
    out = io.StringIO()
    assert check([GUIDES], out) == 0, out.getvalue()
    assert {p.stem for p in GUIDES.glob("*.yaml")} >= {
        "changing-work",
        "weekly-checkin",
        "gathering-report",
    }


def test_the_committed_schema_is_the_generated_one():
    committed = (GUIDES / "guide.schema.json").read_text("utf-8")
    assert committed == schema_text(), "run: kitchen-table guides schema > guides/guide.schema.json"


def test_the_schema_accepts_the_example_and_rejects_unknown_keys():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json.loads(schema_text())
    jsonschema.validate(yaml.safe_load(EXAMPLE), schema)
    bad = yaml.safe_load(EXAMPLE)
    bad["steps"][0]["sya"] = "typo"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("title: How is", "title: [How is"),
            "g.yaml:3: a list opened with [ here is not closed with ]",
        ),
        (
            ("    range: [1, 5]", "    rnage: [1, 5]"),
            "g.yaml:22: step 'worry': 'rnage' is not a known key; did you mean 'range'?",
        ),
        (
            ("minutes: 10", "minuts: 10"),
            "g.yaml:6: 'minuts' is not a known key; did you mean 'minutes'?",
        ),
        (
            ("  - id: story", "  - id: sector"),
            "g.yaml:16: step 'sector': the id 'sector' is already used by step 2",
        ),
        (
            ("when: worry >= 4", "when: worry >="),
            "g.yaml:25: step 'why': 'worry >=' does not parse",
        ),
        (
            ("when: worry >= 4", "when: hours >= 4"),
            "g.yaml:25: step 'why': 'when' uses 'hours', which comes later",
        ),
        (
            ("when: worry >= 4", "when: wory >= 4"),
            "g.yaml:25: step 'why': 'when' uses 'wory', which is not a step id; did you mean 'worry'?",
        ),
        (
            (SECTOR_OPTIONS, ""),
            "g.yaml:13: step 'sector': a choose step needs options",
        ),
        (
            (
                SECTOR_OPTIONS,
                "    options: [{id: retail, label: {en: Retail, es: Comercio}}, {id: retail, label: {en: Shops, es: Tiendas}}]\n",
            ),
            "g.yaml:15: step 'sector': two options have the id 'retail'",
        ),
        (
            ("range: [0, 100]", "range: [100, 0]"),
            "g.yaml:33: step 'hours': the range [100, 0] is reversed; write [0, 100]",
        ),
        (
            ("    say: Welcome! There are no wrong answers.", "    say: {en: Welcome!}"),
            "g.yaml:12: step 'welcome': this text has no 'es' version; add es: ...",
        ),
        (
            ("{{ guide.title }}", "{{ guide.title"),
            "g.yaml:35: step 'thanks': the text 'Thank you! Your answers join others from {{ guide.",
        ),
        (
            ("{{ guide.title }}", "{{ hourz }}"),
            "g.yaml:35: step 'thanks': the text shows '{{ hourz }}', but 'hourz' is not an earlier step; did you mean 'hours'?",
        ),
        (
            ("    max: 2", "    max: 7"),
            "g.yaml:30: step 'helps': 'max' is 7 but there are only 4 options",
        ),
        (
            ("version: 1 ", "version: one"),
            "g.yaml:2: 'version': Input should be a valid integer",
        ),
        (
            ("guide: changing-work", "guide: Changing Work"),
            "g.yaml:1: the guide id must be lowercase letters, digits and dashes",
        ),
        (
            ("    say: Welcome! There are no wrong answers.", "    ask: Hi\n    say: Welcome!"),
            "g.yaml:11: step 'welcome': a step needs exactly one of say, ask, choose",
        ),
        (
            ("5: {en: Very, es: Mucho}}", "9: {en: Very, es: Mucho}}"),
            "g.yaml:23: step 'worry': the label for 9 is outside the range 1 to 5",
        ),
        (
            ("  - id: story", "  - id: self"),
            "g.yaml:16: step 'self': 'self' is a word conditions use themselves",
        ),
        (
            ("expires_after: 3d", "expires_after: 999999w"),
            "g.yaml:7: 'expires_after': a duration can be at most 365d",
        ),
        (
            ("minutes: 10", "minutes: 10\nextra: &a [1]\nmore: *a"),
            "g.yaml:8: a *name (a YAML alias) repeats another part of the file; aliases are not allowed",
        ),
        (
            ("expires_after: 3d", "expires_after: three days"),
            "g.yaml:7: 'expires_after': 'three days' is not a duration; write it like 7d, 12h or 30m",
        ),
    ],
)
def test_each_mistake_is_explained(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in EXAMPLE
    found = problems(EXAMPLE.replace(old, new, 1))
    assert any(line.startswith(expected) for line in found), found


def test_several_problems_are_all_reported():
    text = EXAMPLE.replace("when: worry >= 4", "when: later >= 4").replace(
        "range: [0, 100]", "range: [100, 0]"
    )
    assert len(problems(text)) == 2


def test_an_option_in_several_languages_without_an_id_is_explained():
    text = EXAMPLE.replace(
        SECTOR_OPTIONS,
        "    options: [{en: Manufacturing, es: Manufactura}, {id: other, label: {en: Other, es: Otro}}]\n",
    )
    assert problems(text) == [
        "g.yaml:15: step 'sector': an option in several languages needs an id, "
        "like {id: some-id, label: {en: ..., es: ...}}"
    ]


def test_not_a_guide_at_all():
    assert problems("just some words") == [
        "g.yaml:1: a guide starts with 'guide: <id>' and lists its 'steps'"
    ]
    assert problems("") == ["g.yaml:1: a guide starts with 'guide: <id>' and lists its 'steps'"]


def test_check_command_output_and_exit_code(tmp_path: Path):
    good = tmp_path / "good.yaml"
    good.write_text(EXAMPLE, "utf-8")
    out = io.StringIO()
    assert check([good], out) == 0
    assert "ready" in out.getvalue()
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.replace("range: [0, 100]", "range: [100, 0]"), "utf-8")
    (tmp_path / "twin.yaml").write_text(EXAMPLE, "utf-8")
    out = io.StringIO()
    assert check([tmp_path], out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{bad}:33: step 'hours': the range")
    assert any("the guide id 'changing-work' is also used by" in line for line in lines)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    out = io.StringIO()
    assert check([binary], out) == 1
    assert "not UTF-8" in out.getvalue()


def test_readme_for_authors_exists():
    text = (ROOT / "guides" / "README.md").read_text("utf-8")
    assert "kitchen-table guides check" in text


def test_tabs_are_explained_in_an_authors_words_on_every_line():
    text = EXAMPLE.replace("    ask: Tell us", "\task: Tell us").replace(
        "    ask: What worries", "\t  ask: What worries"
    )
    assert problems(text) == [
        "g.yaml:17: tabs can't be used for indenting; use spaces",
        "g.yaml:26: tabs can't be used for indenting; use spaces",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("    ask: Tell us", "   ask: Tell us"),
            "g.yaml:17: this line is not lined up with the lines above it: check how many "
            "spaces it starts with (a new step starts with '  - id:', its keys line up under 'id')",
        ),
        (
            ("    ask: Tell us", "      ask: Tell us"),
            "g.yaml:17: this line starts further right than the line above it; "
            "line it up with the other keys of its step",
        ),
        (
            ("ask: What worries you most?", "ask: Note: what worries you?"),
            "g.yaml:26: this text has ': ' in it; put the whole text in \"double quotes\"",
        ),
        (
            ("ask: What worries you most?", 'ask: "What worries you most?'),
            "g.yaml:26: a quote opened on this line is never closed; end the text with the same quote",
        ),
        (
            ("ask: What worries you most?", "ask: @work, what worries you?"),
            'g.yaml:26: a text can\'t start with @; put the whole text in "double quotes"',
        ),
        (
            ("ask: What worries you most?", "ask: What worries you most?\n    ask: Again?"),
            "g.yaml:27: 'ask' is written twice here (also on line 26); keep one",
        ),
    ],
)
def test_yaml_mistakes_are_explained_without_jargon(change: tuple[str, str], expected: str):
    old, new = change
    assert old in EXAMPLE
    assert problems(EXAMPLE.replace(old, new, 1)) == [expected]


def test_every_problem_is_reported_not_only_the_first_structural_one():
    text = (
        EXAMPLE.replace("    range: [1, 5]", "    rnage: [1, 5]")
        .replace("when: worry >= 4", "when: wory >= 4")
        .replace("minutes: 10", "minuts: 10")
        .replace("{{ guide.title }}", "{{ guide.tilte }}")
    )
    assert problems(text) == [
        "g.yaml:22: step 'worry': 'rnage' is not a known key; did you mean 'range'?",
        "g.yaml:6: 'minuts' is not a known key; did you mean 'minutes'?",
        "g.yaml:25: step 'why': 'when' uses 'wory', which is not a step id; did you mean 'worry'?",
        "g.yaml:35: step 'thanks': a text can only show earlier answers, like {{ sector }}, "
        "and {{ guide.title }}: 'guide.tilte' can't be shown; use a step id, or "
        "guide.id/minutes/summary/title",
    ]


def test_options_and_scale_labels_missing_a_language_are_flagged():
    text = EXAMPLE.replace(SECTOR_OPTIONS, "    options: [Retail, Health care]\n").replace(
        "labels: {1: {en: Not at all, es: Nada}, 5: {en: Very, es: Mucho}}",
        "labels: {1: Not at all, 5: {en: Very}}",
    )
    assert problems(text) == [
        "g.yaml:15: step 'sector': the options 'Retail', 'Health care' are in one language "
        "only, but the guide is in en, es; write each like {id: some-id, label: {en: ..., es: ...}}",
        "g.yaml:23: step 'worry': this text has no 'es' version; add es: ...",
        "g.yaml:23: step 'worry': the label 'Not at all' is in one language only, but the guide "
        "is in en, es; write each like 1: {en: ..., es: ...}",
    ]


def test_a_condition_on_an_option_that_does_not_exist_suggests_the_close_one():
    text = EXAMPLE.replace("when: worry >= 4", "when: sector == 'retial'")
    assert problems(text) == [
        "g.yaml:25: step 'why': 'when' compares 'sector' with 'retial', which is not one of "
        "its option ids (manufacturing, health-care, retail, other); did you mean 'retail'?"
    ]
    text = EXAMPLE.replace("  - id: hours\n", "  - id: hours\n    when: \"'unions' in helps\"\n")
    assert problems(text) == [
        "g.yaml:32: step 'hours': 'when' compares 'helps' with 'unions', which is not one of "
        "its option ids (training, a-union, better-pay, other); did you mean 'a-union'?"
    ]


def test_keep_in_touch_is_a_note_that_the_cohort_must_exist(tmp_path: Path):
    guide = tmp_path / "g.yaml"
    guide.write_text(EXAMPLE.replace("minutes: 10", "minutes: 10\nkeep_in_touch: weekly"), "utf-8")
    out = io.StringIO()
    assert check([guide], out) == 0
    assert out.getvalue().splitlines() == [
        f"{guide}:7: note: at the end this guide offers to keep in touch through the cohort "
        "'weekly', which must exist on the bot (kitchen-table cohort add weekly); "
        "until it does, nobody is offered it",
        "All 1 guide(s) are ready.",
    ]


def test_questions_are_not_quotable_unless_marked_and_the_readme_says_why():
    loaded = parse_guide(EXAMPLE, "g.yaml")
    assert loaded.guide is not None
    assert [s.id for s in loaded.guide.steps if s.quotable] == ["story"]
    readme = " ".join((ROOT / "guides" / "README.md").read_text("utf-8").split())
    assert "Quotes come only from questions marked `quotable: true`" in readme
    assert "names people type are not removed" in readme
