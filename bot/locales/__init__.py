"""The bot's phrasebooks, one YAML file per language, loaded once at start-up."""

from __future__ import annotations

from importlib import resources

import yaml

from bot.flows.phrases import Phrasebook


def load_phrasebook() -> Phrasebook:
    """Read every `<lang>.yaml` shipped in this package."""
    books = {}
    for entry in resources.files(__package__).iterdir():
        if entry.name.endswith(".yaml"):
            books[entry.name.removesuffix(".yaml")] = yaml.safe_load(entry.read_text("utf-8"))
    return Phrasebook(books)
