"""Localised texts: a guide text is a plain string or a mapping from language to string."""

from __future__ import annotations

import re
import unicodedata

Text = str | dict[str, str]


def localize(text: Text | None, language: str, default_language: str) -> str:
    """Return the text in `language`, falling back to the guide's default, then to any."""
    if text is None:
        return ""
    if isinstance(text, str):
        return text
    for lang in (language, default_language):
        if lang in text:
            return text[lang]
    return next(iter(text.values()), "")


def languages_of(text: Text) -> set[str] | None:
    """The languages a text is written in; None for a plain string (it serves all)."""
    if isinstance(text, str):
        return None
    return set(text)


def all_variants(text: Text) -> list[str]:
    """Every language variant of a text, used to recognise typed labels in any language."""
    return [text] if isinstance(text, str) else list(text.values())


def slugify(label: str) -> str:
    """Derive an option id from its label: 'Health care' -> 'health-care'."""
    normalized = unicodedata.normalize("NFKD", label)
    ascii_only = normalized.encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_only).strip("-")
    return slug or "option"


def fold(text: str) -> str:
    """Fold typed text for forgiving comparison: case, accents and spacing ignored."""
    normalized = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in normalized if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def fold_answer(text: str) -> str:
    """`fold`, and the punctuation around a short answer dropped: "¡Sí!" is sí."""
    return fold(text).strip(" .!¡?¿")
