"""The console's words, one YAML file per language in `bot/console/locales/`.

Kept apart from the bot's chat phrases (`bot/locales/`), and read through the same
`Phrasebook`, so a page falls back to English for a phrase not yet translated. The few
phrases the bot says in chat about the console (`CHAT_KEYS`) are added to the bot's
own phrasebook at start (`bot/app/build.py`).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from bot.flows.phrases import Phrasebook

# Said in chat (by /console), so the bot's phrasebook must hold them too.
CHAT_KEYS = ("console_link", "console_only_roles", "command_console")


def load_books() -> dict[str, dict[str, Any]]:
    """Every `<lang>.yaml` in `bot/console/locales/`, by language."""
    books = {}
    for entry in resources.files("bot.console.locales").iterdir():
        if entry.name.endswith(".yaml"):
            books[entry.name.removesuffix(".yaml")] = yaml.safe_load(entry.read_text("utf-8"))
    return books


def load_strings() -> Phrasebook:
    return Phrasebook(load_books())


def add_chat_phrases(phrases: Phrasebook) -> None:
    """Teach the bot's phrasebook what /console says, in every language the console has."""
    for language, book in load_books().items():
        for key in CHAT_KEYS:
            phrases.define(language, key, str(book[key]).strip())
