"""The scrubber: invisible characters that hide text or reorder what the bot shows are
dropped from everything typed, text in every script and emoji is kept as typed, and
e-mail addresses spelled out in English or Spanish become [email] while ordinary
sentences with "at" and "dot" stay as they were."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.flows.scrub import scrub, strip_invisible
from tests.conftest import Harness

# Bidirectional embeddings, overrides, isolates and marks; zero-width space; word
# joiner and invisible operators; byte-order mark; Arabic letter mark; soft hyphen.
NEVER_KEPT = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
    "\u200b\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e\r\x00\x1b\x7f\x85"
)
JOINERS = "\u200c\u200d"
TAGS = [chr(c) for c in range(0xE0000, 0xE0080)]
SELECTORS = [chr(c) for c in range(0xFE00, 0xFE10)]

anything = st.text(
    st.one_of(
        st.characters(),
        st.sampled_from(sorted(NEVER_KEPT) + list(JOINERS) + TAGS + SELECTORS + ["\U0001f3f4"]),
    ),
    max_size=80,
)


def visible_beyond_ascii(ch: str) -> bool:
    return ord(ch) > 0x7F and unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zs")


def assert_nothing_hidden(text: str) -> None:
    for i, ch in enumerate(text):
        assert ch not in NEVER_KEPT, (text, i)
        category = unicodedata.category(ch)
        assert category not in ("Cs", "Zl", "Zp")
        assert category != "Cc" or ch in "\n\t"
        if ch in JOINERS:  # only between two visible characters beyond ASCII
            assert 0 < i < len(text) - 1
            assert visible_beyond_ascii(text[i - 1]) and visible_beyond_ascii(text[i + 1])
        elif category == "Cf":  # a tag, only inside a regional flag
            assert ch in TAGS and "\U0001f3f4" in text[: i + 1]
        if ch in SELECTORS and i:
            assert text[i - 1] not in SELECTORS  # one selector a character, no more


@settings(max_examples=500, deadline=None)
@given(anything)
def test_stripped_and_scrubbed_text_hides_nothing(text: str) -> None:
    assert_nothing_hidden(strip_invisible(text))
    assert_nothing_hidden(scrub(text))
    assert strip_invisible(strip_invisible(text)) == strip_invisible(text)


visible = st.characters(
    exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp"),
    exclude_characters="".join(SELECTORS) + "".join(chr(c) for c in range(0xE0100, 0xE01F0)),
)


@settings(max_examples=300, deadline=None)
@given(st.text(visible, max_size=80), st.sampled_from(["", "\n", "\t"]))
def test_visible_text_in_any_language_is_kept_as_typed(text: str, separator: str) -> None:
    typed = separator.join([text, text])
    assert strip_invisible(typed) == typed


# Words in any script, with the spaces and punctuation of ordinary sentences: nothing
# the scrubber looks for (digits, @, dots, slashes) is among them. Variation selectors
# are left out: a stray one (not after a character it varies) is removed on purpose.
_SELECTORS = "".join(map(chr, [*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)]))
words = st.text(
    st.characters(categories=("L", "M", "Zs"), exclude_characters="\u00a0\u1680" + _SELECTORS),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(words, min_size=1, max_size=4), st.sampled_from([", ", "! ", "? ", "; "]))
def test_ordinary_sentences_in_any_language_are_not_scrubbed(parts: list[str], mark: str) -> None:
    sentence = mark.join(parts)
    assert scrub(sentence) == sentence


@pytest.mark.parametrize(
    "typed",
    [
        "مرحبا، أعمل في مصنع منذ عشر سنوات",  # Arabic
        "שלום, אני עובדת במפעל",  # Hebrew
        "من می\u200cخواهم بیشتر کار کنم",  # Persian: the non-joiner is part of the spelling
        "क्\u200dष और नमस्ते",  # Hindi: the joiner picks a half form
        "my team 👩\u200d👩\u200d👧\u200d👦 and 👩🏽\u200d💻 and ❤\ufe0f\u200d🔥",  # emoji sequences
        "proud of 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f Scotland",
        "press 1\ufe0f\u20e3 then #\ufe0f\u20e3",
        "Zwei Wörter: Straße, naïve café, 日本語のテキスト, ελληνικά",
    ],
)
def test_real_text_and_emoji_survive(typed: str) -> None:
    assert strip_invisible(typed) == typed
    assert scrub(typed) == typed


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("my boss\u202e sdrawkcab si siht", "my boss sdrawkcab si siht"),
        ("\u2067evil\u2069 and \u202bmore\u202c", "evil and more"),
        ("zero\u200bwidth\u2060joined\ufeff", "zerowidthjoined"),
        ("hidden\U000e0069\U000e0067\U000e006e\U000e006f\U000e0072\U000e0065 tags", "hidden tags"),
        ("a" + "\ufe00" * 16 + "b", "a\ufe00b"),
        ("x\u200dy and \u200dstart", "xy and start"),
        ("line\u2028two\u2029three\r\n", "line\ntwo\nthree\n"),
    ],
)
def test_invisible_characters_are_dropped(typed: str, kept: str) -> None:
    assert strip_invisible(typed) == kept


def test_invisible_characters_no_longer_hide_an_address() -> None:
    assert scrub("mail ana@exa\u200bmple.org") == "mail [email]"
    assert scrub("call 312\u2060-555-0199") == "call [phone]"
    assert scrub("ana\u200d at gmail\u200b dot com") == "[email]"


@pytest.mark.parametrize(
    "typed",
    [
        "q.name at example dot org",
        "Q.Name AT Example DOT Org",
        "name (at) example (dot) com",
        "name(at)example(dot)com",
        "name [at] example [dot] co [dot] uk",
        "name {at} example {dot} net",
        "name <at> example <dot> org",
        "q dot name at example dot org",
        "juan @ gmail dot com",
        "juan@gmail dot com",
        "juan at gmail.com",
        "juan.perez at acme.com.mx",
        "juan_perez at acme.org",
        "juan(at)acme.com",
        "name arroba example punto com",
        "ana arroba gmail punto com",
        "ana.lopez arroba hotmail.es",
        "ana (arroba) correo (punto) com (punto) mx",
        "ana arroba acme punto gob punto mx",
        "ana-maria+work at my-union dot org",
        "a0 dot a0 at lo dot com",  # found by hypothesis: "lo" is also a Spanish article
        "ana.lopez at la dot org",
    ],
)
def test_spelled_out_addresses_become_email(typed: str) -> None:
    assert scrub(f"Write to {typed}, thanks") == "Write to [email], thanks"
    assert scrub(f"Escríbeme a {typed}.") == "Escríbeme a [email]."


label = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True).filter(
    lambda word: word not in {"a", "an", "the", "my", "la", "el", "mi", "su", "tu", "this"}
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(label, min_size=2, max_size=3),
    st.lists(label, min_size=1, max_size=3),
    st.sampled_from(["com", "org", "net", "mx", "es", "co", "edu", "gob.mx", "co.uk"]),
    st.sampled_from([" at ", " (at) ", "[at]", " AT ", " arroba ", " (arroba) ", " @ "]),
    st.sampled_from([" dot ", " (dot) ", "[dot]", " DOT ", " punto ", " (punto) ", "."]),
    st.sampled_from([("Write to", ", thanks"), ("Mi correo es", "."), ("email:", "")]),
)
def test_any_spelled_out_address_becomes_email(local, domain, ending, at, dot, around):  # type: ignore[no-untyped-def]
    address = dot.join(local) + at + dot.join([*domain, *ending.split(".")])
    before, after = around
    assert scrub(f"{before} {address}{after}") == f"{before} [email]{after}"


@pytest.mark.parametrize(
    "sentence",
    [
        "I work at home dot",
        "look at the data",
        "We met at noon, right on the dot",
        "I worked at a dot com startup",
        "I was laid off at the dot com bust",
        "at nine dot in the morning",
        "arrived at 5 dot 30",
        "I work at acme",
        "She works at the hospital dot, dot, dot",
        "estoy en casa punto com",
        "en este punto, a las cinco",
        "el punto es que trabajo mucho",
        "look at this (dot) pattern",
        "at least we are paid on time",
    ],
)
def test_ordinary_sentences_with_at_and_dot_are_left_alone(sentence: str) -> None:
    assert scrub(sentence) == sentence


def test_a_sentence_naming_a_website_keeps_its_words() -> None:
    # The link is removed, as before; the words before it are not an address.
    assert scrub("I work at acme.com now") == "I work at [link] now"
    # Spelled out with a real ending it reads as an address, and is taken for one.
    assert scrub("I work at home dot com now") == "I [email] now"
    # Endings chats make links of, short links and people's own pages (found by review).
    for bare in ("bit.ly", "juanperez.xyz", "ana.fr", "pedido.ru", "miweb.site"):
        assert scrub(f"mira {bare} ya") == "mira [link] ya", bare
    # ...but not an everyday word after a full stop typed without its space.
    for sentence in ("Trabajo mucho.De noche", "No hay tiempo.Ni para comer", "We got home.Top"):
        assert scrub(sentence) == sentence


SCRUBBED = """
guide: scrubbed
version: 1
title: Scrubbed
steps:
  - id: story
    ask: Tell us one thing.
  - id: raw
    ask: Anything else?
    scrub: false
  - id: echo
    say: "You told us: {{ raw }}. Thank you!"
  - id: last
    ask: And last?
"""


async def test_what_people_type_is_stored_and_shown_without_hidden_characters(make_harness):  # type: ignore[no-untyped-def]
    """A participant spells out an address and hides overrides in an answer (even in a
    question whose answers are not scrubbed): neither is stored, and the bot's message
    that quotes the answer carries no override to turn its own words around."""
    h: Harness = make_harness(SCRUBBED)
    await h.say("/start scrubbed")
    await h.say("reach me at q.name at example dot org \u202e!won")
    shown = await h.say("my boss \u202ethe worst\u202c is kind \u2066ok\u2069 שלום")
    await h.say("done\u200b")
    rows = await h.storage.export_rows("scrubbed", None, None, None, 10, False)
    stored = {row.step: json.loads(row.value) for row in rows}
    assert stored == {
        "story": "reach me at [email] !won",
        "raw": "my boss the worst is kind ok שלום",
        "last": "done",
    }
    assert "You told us: my boss the worst is kind ok שלום. Thank you!" in [m.text for m in shown]
    for message in shown:
        assert_nothing_hidden(message.text)


CHOICE = """
guide: pick
version: 1
title: Pick
steps:
  - id: sector
    choose: What do you do?
    options: [Retail, Health care, Other]
"""


async def test_a_choice_typed_with_hidden_characters_is_understood(make_harness):  # type: ignore[no-untyped-def]
    """Typed choices are stored as the option, never as typed; a zero-width space or a
    mark pasted along with the number no longer makes the bot refuse it."""
    h: Harness = make_harness(CHOICE)
    await h.say("/start pick")
    await h.say("\u200f2\u200b")
    rows = await h.storage.export_rows("pick", None, None, None, 10, False)
    assert [json.loads(row.value) for row in rows] == ["health-care"]


async def test_privacy_says_plainly_that_names_are_not_removed(make_harness):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(SCRUBBED)
    english = (await h.say("/privacy"))[0].text
    assert "Names are not removed" in english
    spanish = (await h.say("/privacy", user="eva", language="es"))[0].text
    assert "Los nombres no se quitan" in spanish
