"""Every phrase the bot says exists in every language it ships, with the same placeholders."""

from __future__ import annotations

import string
from importlib import resources

import pytest
import yaml

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

BOOKS = {
    entry.name.removesuffix(".yaml"): yaml.safe_load(entry.read_text("utf-8"))
    for entry in resources.files("bot.locales").iterdir()
    if entry.name.endswith(".yaml")
}


def placeholders(text: object) -> set[str]:
    if not isinstance(text, str):
        return set()
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_english_and_spanish_ship():
    assert {"en", "es"} <= set(BOOKS)


def test_every_language_has_every_phrase_with_the_same_placeholders():
    english = BOOKS["en"]
    for language, book in BOOKS.items():
        assert set(book) == set(english), language
        for key, text in english.items():
            assert placeholders(book[key]) == placeholders(text), (language, key)


def test_privacy_promises_the_minimum_group_this_bot_keeps():
    """/privacy said "five" whatever KT_MIN_GROUP was (found by review)."""
    from bot.locales import load_phrasebook

    for language, words in (("en", "smaller than 3 people"), ("es", "menos de 3 personas")):
        said = load_phrasebook(min_group=3).text(language, "privacy")
        assert words in said and "{" not in said, language
    assert "smaller than 5 people" in load_phrasebook().text("en", "privacy")


def test_parar_is_a_no_in_spanish_as_stop_is_in_english():
    from bot.locales import load_phrasebook

    phrases = load_phrasebook()
    assert phrases.yes_or_no("en", "stop") is False
    assert phrases.yes_or_no("es", "parar") is False
