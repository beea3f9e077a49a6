"""A coordinator's codebook: the themes they kept, renamed, merged or split, for one
guide's question, carried from one week to the next.

A theme is kept as its centre: the weights of its most telling features (words, word
pairs and letter groups, `space.py`) that at least two of its answers share, never the
answers themselves, so the codebook holds no one person's words for `/forget` to find. Pure: the service
(`service.py`) loads and saves it as a record of kind "codebook".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

from bot.flows.scrub import strip_invisible

KIND = "codebook"
VERSION = 1
MAX_NAME = 80  # a theme's name is a short label, not a paragraph
TOP_FEATURES = 300  # a stored centre keeps its largest weights only: enough to place answers


class CodebookError(ValueError):
    """An edit that can't be made. `key` names the message in the phrasebook
    (themes_error_...), `params` fill it in; nothing has been changed."""

    def __init__(self, key: str, **params: str) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


Centre = tuple[tuple[str, float], ...]  # (feature name, weight), largest first


@dataclass(frozen=True)
class CodedTheme:
    id: str
    language: str
    centre: Centre
    name: str | None = None


@dataclass(frozen=True)
class Codebook:
    guide: str
    step: str
    themes: tuple[CodedTheme, ...] = ()
    next_id: int = 1

    def of(self, language: str) -> list[CodedTheme]:
        return [t for t in self.themes if t.language == language]

    def get(self, theme_id: str) -> CodedTheme:
        for theme in self.themes:
            if theme.id == theme_id:
                return theme
        raise CodebookError("themes_error_unknown", theme=theme_id)

    def add(self, language: str, centre: Centre, name: str | None = None) -> tuple[Codebook, str]:
        """The codebook with one more theme, and that theme's id."""
        theme_id = f"t{self.next_id}"
        added = CodedTheme(theme_id, language, centre, name)
        return replace(self, themes=(*self.themes, added), next_id=self.next_id + 1), theme_id

    def rename(self, theme_id: str, name: str) -> Codebook:
        # A name is shown in terminals and chats too: no control characters (an escape
        # sequence could clear an admin's terminal or set its clipboard; found by review).
        clean = " ".join(strip_invisible(name).split())
        if not clean:
            raise CodebookError("themes_error_empty_name")
        if len(clean) > MAX_NAME:
            raise CodebookError("themes_error_long_name", most=str(MAX_NAME))
        self.get(theme_id)
        return self._with(theme_id, lambda t: replace(t, name=clean))

    def merge(self, keep: str, gone: str, sizes: tuple[int, int]) -> Codebook:
        """`gone` joins `keep`, which keeps its id and its name (or takes `gone`'s, if only
        that one was named); their centres are averaged, weighted by how many answers
        each holds now (`sizes`)."""
        if keep == gone:
            raise CodebookError("themes_error_merge_itself", theme=keep)
        first, second = self.get(keep), self.get(gone)
        if first.language != second.language:
            raise CodebookError("themes_error_merge_languages", first=keep, second=gone)
        joined = mix([(first.centre, max(sizes[0], 1)), (second.centre, max(sizes[1], 1))])
        name = first.name or second.name  # a name the coordinator gave is never dropped
        merged = self._with(keep, lambda t: replace(t, centre=joined, name=name))
        return replace(merged, themes=tuple(t for t in merged.themes if t.id != gone))

    def recentre(self, theme_id: str, centre: Centre) -> Codebook:
        self.get(theme_id)
        return self._with(theme_id, lambda t: replace(t, centre=centre))

    def _with(self, theme_id: str, change) -> Codebook:  # type: ignore[no-untyped-def]
        return replace(
            self, themes=tuple(change(t) if t.id == theme_id else t for t in self.themes)
        )

    def to_json(self) -> bytes:
        return json.dumps({
            "version": VERSION, "guide": self.guide, "step": self.step, "next_id": self.next_id,
            "themes": [{"id": t.id, "language": t.language, "name": t.name,
                        "centre": [[f, w] for f, w in t.centre]} for t in self.themes],
        }, ensure_ascii=False, sort_keys=True).encode()  # fmt: skip

    @classmethod
    def from_json(cls, data: bytes) -> Codebook:
        found = json.loads(data)
        themes = tuple(
            CodedTheme(
                t["id"],
                t["language"],
                tuple((str(f), float(w)) for f, w in t["centre"]),
                t.get("name"),
            )
            for t in found["themes"]
        )
        return cls(found["guide"], found["step"], themes, int(found["next_id"]))


def record_key(guide: str, step: str) -> str:
    """The record's key: one codebook per guide and question."""
    return json.dumps([guide, step])


def mix(centres: list[tuple[Centre, int]]) -> Centre:
    """Centres averaged with weights, rescaled to unit length, kept to their top features."""
    total: dict[str, float] = {}
    for centre, weight in centres:
        for name, value in centre:
            total[name] = total.get(name, 0.0) + value * weight
    return top_features(total)


def top_features(weights: dict[str, float]) -> tuple[tuple[str, float], ...]:
    """A centre as stored: its `TOP_FEATURES` largest weights (ties by name), rescaled to
    unit length and rounded, so the same centre always reads the same."""
    kept = sorted(((name, w) for name, w in weights.items() if w > 0), key=lambda p: (-p[1], p[0]))
    kept = kept[:TOP_FEATURES]
    norm = math.sqrt(sum(w * w for _, w in kept))
    return tuple((name, round(w / norm, 5)) for name, w in kept) if norm else ()
