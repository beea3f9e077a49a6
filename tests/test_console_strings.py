"""The console speaks English and Spanish: every phrase in both, with the same
placeholders; and what /console says in chat reaches the bot's phrasebook."""

from __future__ import annotations

import string

import pytest

from bot.console.strings import CHAT_KEYS, add_chat_phrases, load_books
from bot.locales import load_phrasebook

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py


def placeholders(text: object) -> set[str]:
    if not isinstance(text, str):
        return set()
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_english_and_spanish_have_every_phrase_with_the_same_placeholders():
    books = load_books()
    assert {"en", "es"} <= set(books)
    for language, book in books.items():
        assert set(book) == set(books["en"]), language
        for key, text in books["en"].items():
            assert placeholders(book[key]) == placeholders(text), (language, key)


def test_the_chat_phrases_join_the_bots_phrasebook_in_each_language():
    phrases = load_phrasebook()
    add_chat_phrases(phrases)
    for key in CHAT_KEYS:
        assert phrases.text("en", key, link="L", minutes=10) != phrases.text(
            "es", key, link="L", minutes=10
        )
    assert "L" in phrases.text("es", "console_link", link="L", minutes=10)
