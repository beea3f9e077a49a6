"""What themes are made from and what they give: plain data, no numerics."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)  # a digest holds a week's answers: no dict each
class Answer:
    """One free-text answer as themes read it: already scrubbed (as stored), from a step
    that is not `sensitive`. `person` is the pseudonym, so a theme counts people."""

    id: str
    person: str
    language: str
    text: str
    quotable: bool


@dataclass(frozen=True)
class Theme:
    """A group of answers about the same thing.

    `words` and `phrases` are its most telling words and two-word phrases; `name` is the
    coordinator's, when they named it. `new`: a candidate that fits none of the
    coordinator's themes (only said once there is a codebook). `answers` are the ids of
    the answers in it, for a console that splits a theme by example; never shown."""

    id: str
    language: str
    people: int
    words: tuple[str, ...]
    phrases: tuple[str, ...]
    quotes: tuple[str, ...]
    name: str | None = None
    new: bool = False
    answers: tuple[str, ...] = field(default=(), repr=False)
    # Its centre as a codebook stores it (feature, weight): for adopting it, never shown.
    centre: tuple[tuple[str, float], ...] = field(default=(), repr=False, compare=False)

    @property
    def label(self) -> str:
        """The coordinator's name, or its telling words and phrases; "" when none may be
        shown (then templates say "a theme without a name")."""
        if self.name:
            return self.name
        return ", ".join(_unrepeated(self.phrases, self.words))


def _unrepeated(phrases: tuple[str, ...], words: tuple[str, ...]) -> list[str]:
    """Phrases first, then the words no phrase already says."""
    said = {word for phrase in phrases for word in phrase.split()}
    return [*phrases, *(word for word in words if word not in said)]


@dataclass(frozen=True)
class Themes:
    """One question's themes, largest first. `other` counts the people whose answers fit
    no theme, as the minimum-group rule shows it (None: fewer than `min_group`)."""

    themes: list[Theme]
    other: int | None
    min_group: int
    coded: bool = False  # a codebook was applied, so `new` themes are marked
    # That codebook as it was kept (None: none yet): which edits these themes show, so a
    # copy kept a while can be told from what another instance's edit made since.
    codebook: bytes | None = None
    # Who had been forgotten when they were found (`ReportStore.forgotten_so_far`): a
    # copy kept past a later erasure may quote someone whose words are gone.
    forgotten: tuple[int, datetime | None] = (0, None)

    def __bool__(self) -> bool:
        return bool(self.themes)


@dataclass(frozen=True)
class QuestionThemes:
    """A free-text question's themes as a report shows them: its words, and the themes."""

    step: str
    question: str
    found: Themes

    @property
    def languages(self) -> list[str]:
        """The languages its themes are in: reports name a theme's language when more
        than one."""
        return sorted({t.language for t in self.found.themes})


@dataclass(frozen=True)
class Quoted:
    """The quotes shown under some themes, told apart ignoring case: a report's "In their
    own words" leaves them out, rather than show the same words twice."""

    folded: frozenset[str]

    def __contains__(self, quote: object) -> bool:
        return isinstance(quote, str) and quote.casefold() in self.folded


def theme_quotes(themes: Sequence[QuestionThemes]) -> Iterator[str]:
    """Every quote shown under these themes, as each theme shows it."""
    return (q for qt in themes for theme in qt.found.themes for q in theme.quotes)


def quoted(themes: Sequence[QuestionThemes]) -> Quoted:
    """Every quote shown under these themes, told apart ignoring case."""
    return Quoted(frozenset(q.casefold() for q in theme_quotes(themes)))
