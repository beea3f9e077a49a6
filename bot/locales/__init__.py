"""The bot's phrasebooks, one YAML file per language, loaded once at start-up."""

from __future__ import annotations

from importlib import resources

import yaml

from bot.flows.phrases import Phrasebook


def load_phrasebook(min_group: int = 5) -> Phrasebook:
    """Read every `<lang>.yaml` shipped in this package. `{min_group}` in a phrase is this
    deployment's minimum group (KT_MIN_GROUP), so /privacy promises what reports do."""
    books = {}
    for entry in resources.files(__package__).iterdir():
        if entry.name.endswith(".yaml"):
            text = entry.read_text("utf-8").replace("{min_group}", str(min_group))
            books[entry.name.removesuffix(".yaml")] = yaml.safe_load(text)
    return Phrasebook(books)
