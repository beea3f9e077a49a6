"""How well themes agree with what people meant: the labelled set (tests/data/themes/,
602 answers to three questions, English and Spanish) grouped by the engine, compared
with its labels by normalised mutual information (NMI) and adjusted Rand index (ARI),
per question and language. Each figure must stay within `MARGIN` of what was reached
when the engine was chosen (benchmarks/RESULTS.md, session 9); a change that groups
worse fails here. "other" counts as one more group on both sides.

The codebook's carry-over is measured too: themes found in one half of the answers
(a first week), kept as a codebook, then applied to the other half (the next week)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from bot.reports.themes.codebook import Codebook
from bot.reports.themes.engine import find_themes
from bot.reports.themes.model import Answer, Themes

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

DATA = Path(__file__).parent / "data" / "themes"
MARGIN = 0.05
MIN_GROUP = 5
# What the engine reached (NMI, ARI), per file of the labelled set.
REACHED = {
    "better.en": (0.465, 0.163),
    "better.es": (0.475, 0.146),
    "changed.en": (0.437, 0.115),
    "changed.es": (0.403, 0.084),
    "worries.en": (0.4, 0.086),
    "worries.es": (0.276, 0.055),
}
# The next week's answers grouped with the first week's codebook (NMI, ARI).
# Halves of 45-56 answers are small for 10 themes of 5 people or more: few of the first
# week's themes reach 5 people the next week, and those that don't are grouped afresh,
# so these figures are close to grouping the second half alone (RESULTS.md, session 9).
CARRIED = {
    "better.en": (0.413, 0.078),
    "better.es": (0.361, 0.063),
    "changed.en": (0.432, 0.084),
    "changed.es": (0.433, 0.125),
    "worries.en": (0.373, 0.055),
    "worries.es": (0.384, 0.063),
}


def _load() -> dict[str, tuple[list[Answer], list[str]]]:
    sets = {}
    for path in sorted(DATA.glob("*.yaml")):
        found = yaml.safe_load(path.read_text(encoding="utf-8"))
        rows = [(text, theme) for theme, texts in found["themes"].items() for text in texts]
        answers = [Answer(f"{n:04d}", f"p{n:04d}", found["language"], text, True)
                   for n, (text, _) in enumerate(rows)]  # fmt: skip
        sets[path.stem] = (answers, [theme for _, theme in rows])
    return sets


@pytest.fixture(scope="module")
def labelled() -> dict[str, tuple[list[Answer], list[str]]]:
    return _load()


def _grouped(themes: Themes, answers: list[Answer]) -> list[str]:
    where = {a: t.id for t in themes.themes for a in t.answers}
    return [where.get(a.id, "other") for a in answers]


def scores(answers: list[Answer], labels: list[str], themes: Themes) -> tuple[float, float]:
    found = _grouped(themes, answers)
    return normalized_mutual_info_score(labels, found), adjusted_rand_score(labels, found)


def test_the_labelled_set_is_as_the_issue_asks(labelled) -> None:  # type: ignore[no-untyped-def]
    assert sum(len(a) for a, _ in labelled.values()) >= 600
    assert {name.split(".")[1] for name in labelled} == {"en", "es"}
    for answers, labels in labelled.values():
        themes = set(labels) - {"other"}
        assert 8 <= len(themes) <= 12 and "other" in labels
        assert any(len(a.text.split()) <= 3 for a in answers)


@pytest.mark.parametrize("name", sorted(REACHED))
def test_themes_agree_with_the_labels(labelled, name: str) -> None:  # type: ignore[no-untyped-def]
    answers, labels = labelled[name]
    nmi, ari = scores(answers, labels, find_themes(answers, min_group=MIN_GROUP))
    want_nmi, want_ari = REACHED[name]
    assert nmi >= want_nmi - MARGIN, f"{name}: NMI {nmi:.3f}, reached {want_nmi}"
    assert ari >= want_ari - MARGIN, f"{name}: ARI {ari:.3f}, reached {want_ari}"


def carried_over(answers: list[Answer], labels: list[str]) -> tuple[float, float]:
    """Themes of the even answers kept as a codebook, applied to the odd ones."""
    first = [a for n, a in enumerate(answers) if n % 2 == 0]
    later = [(a, label) for n, (a, label) in enumerate(zip(answers, labels, strict=True)) if n % 2]
    book = Codebook("g", "s")
    for theme in find_themes(first, min_group=MIN_GROUP).themes:
        book, _ = book.add(theme.language, theme.centre)
    next_week = [a for a, _ in later]
    themes = find_themes(next_week, min_group=MIN_GROUP, codebook=book)
    return scores(next_week, [label for _, label in later], themes)


@pytest.mark.parametrize("name", sorted(CARRIED))
def test_a_codebook_carries_themes_to_the_next_week(labelled, name: str) -> None:  # type: ignore[no-untyped-def]
    nmi, ari = carried_over(*labelled[name])
    want_nmi, want_ari = CARRIED[name]
    assert nmi >= want_nmi - MARGIN, f"{name}: NMI {nmi:.3f}, reached {want_nmi}"
    assert ari >= want_ari - MARGIN, f"{name}: ARI {ari:.3f}, reached {want_ari}"


if __name__ == "__main__":  # prints the figures for RESULTS.md
    for name, (answers, labels) in _load().items():
        nmi, ari = scores(answers, labels, find_themes(answers, min_group=MIN_GROUP))
        c_nmi, c_ari = carried_over(answers, labels)
        print(
            f"{name:12} NMI {nmi:.3f} ARI {ari:.3f}  carried over: NMI {c_nmi:.3f} ARI {c_ari:.3f}"
        )
