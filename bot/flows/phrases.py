"""The bot's own words (not a guide's), in every language that ships.

Phrases live in `bot/locales/<lang>.yaml`; this module only looks them up, so
the engine stays free of I/O and every user-facing string can be translated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.flows.text import fold, fold_answer


class Phrasebook:
    """Phrases by language and key, with `{name}` placeholders; English is the fallback."""

    def __init__(self, books: Mapping[str, Mapping[str, Any]], fallback: str = "en") -> None:
        if fallback not in books:
            raise ValueError(f"the phrasebook has no '{fallback}' phrases to fall back on")
        self._books: dict[str, dict[str, Any]] = {lang: dict(b) for lang, b in books.items()}
        self._fallback = fallback
        self._folded_yes_no: dict[str, tuple[frozenset[str], frozenset[str]]] = {}

    @property
    def languages(self) -> list[str]:
        return list(self._books)

    def _lookup(self, language: str, key: str) -> Any:
        for lang in (language, language.split("-")[0], self._fallback):
            book = self._books.get(lang)
            if book is not None and key in book:
                return book[key]
        raise KeyError(f"no phrase '{key}'")

    def text(self, language: str, key: str, **params: object) -> str:
        """The phrase `key` in `language`, with its placeholders filled in."""
        phrase = self._lookup(language, key)
        return str(phrase).format(**params).strip() if params else str(phrase).strip()

    def yes_or_no(self, language: str, typed: str) -> bool | None:
        """Whether what someone typed means yes (True) or no (False): in their language
        first, then in any the bot speaks (a Spanish speaker may answer "sí" in a guide
        written only in English); None if it means neither. The one reading of yes and
        no: a guide's consent, the bot's own questions and /forget's shortcut share it."""
        key = fold_answer(typed)
        if not key:
            return None
        for lang in dict.fromkeys((language, language.split("-")[0], *self._books)):
            yes, no = self._yes_no_words(lang)
            if key in yes:
                return True
            if key in no:
                return False
        return None

    def _yes_no_words(self, language: str) -> tuple[frozenset[str], frozenset[str]]:
        """One language's own yes-words and no-words, folded (folded once, then kept)."""
        if language not in self._folded_yes_no:
            book = self._books.get(language, {})
            self._folded_yes_no[language] = (
                frozenset(fold(str(w)) for w in book.get("yes_words", [])),
                frozenset(fold(str(w)) for w in book.get("no_words", [])),
            )
        return self._folded_yes_no[language]

    def words(self, language: str, key: str) -> list[str]:
        """A list phrase (such as the words that mean yes), in `language` and the fallback."""
        found: list[str] = []
        for lang in (language, self._fallback):
            value = self._books.get(lang, {}).get(key, [])
            found.extend(str(word) for word in value)
        return found

    def define(self, language: str, key: str, text: str) -> None:
        """Add a phrase made at start-up (the help, listing the commands the router
        declares), so everything that speaks finds it like any other."""
        self._books.setdefault(language, {})[key] = text

    def language_name(self, code: str) -> str:
        names = self._books[self._fallback].get("language_names", {})
        return str(names.get(code, code))
