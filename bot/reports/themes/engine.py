"""Group free-text answers into themes: pure, deterministic, on this machine alone.

For each language apart (a theme never mixes languages):

1. Answers are placed in one feature space (`space.py`): TF-IDF over words and word
   pairs, and over letter groups.
2. With a codebook, each answer goes to the coordinator's theme whose centre it is
   nearest, if it is near enough (`FIT`); only the rest are grouped anew, and those
   groups are marked new. A coordinator's theme that fewer than `min_group` people fit
   this time can't be shown, so its answers are grouped with the rest (measured: else
   they were lost in "other", and the next week's themes agreed with the labels less,
   NMI 0.27 against 0.39).
3. Grouping: the space is reduced by truncated SVD, and k-means groups the answers for
   each number of themes from 2 up; the number with the best silhouette wins. (Chosen by
   measurement on the labelled set, tests/data/themes/: see benchmarks/RESULTS.md,
   session 9.) Answers far from their group's centre (`NEAR`) are "other", never forced.
4. A group from fewer than `min_group` people is not a theme: its answers are "other".
5. A theme's label is its most telling words and two-word phrases by class-based
   TF-IDF (c-TF-IDF), from words at least `min_group` people used (the digest's rule
   for recurring words) or, from a quotable question, at least two of its people used
   (their words may be quoted whole there anyway). Its quotes are the quotable answers
   nearest its centre, at most one per person.

Same answers in, same themes out, whatever their order: rows are sorted by id and
every random choice has a fixed seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

import numpy as np
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

from bot.flows.scrub import scrub
from bot.reports import min_group as rule
from bot.reports.themes.codebook import Centre, Codebook, CodedTheme
from bot.reports.themes.model import Answer, Theme, Themes
from bot.reports.themes.space import Space, centre_of, fit, surface

SEED = 0
DIMENSIONS = 12  # SVD components: best of 8, 12, 16, 20 and 30 on the labelled set, 5 seeds
MOST_THEMES = 20  # and never more than one per `min_group` people
SAMPLE = 2000  # the number of themes is chosen on a sample this size (silhouette is n²)
TRIES = 3  # k-means starts per number of themes
NEAR = 0.3  # cosine to its group's centre (reduced space) below which an answer is other
FIT = 0.25  # cosine to a coordinator's theme (feature space) from which an answer fits it
MAX_QUOTES = 3
MAX_WORDS = 3
MAX_PHRASES = 2
SURFACE = 500  # a theme's answers read for how its label's words were written


@dataclass(frozen=True)
class _Group:
    """A theme in the making: its answers (row numbers), and who it came from."""

    rows: np.ndarray
    coded: CodedTheme | None = None


def find_themes(
    answers: Iterable[Answer], *, min_group: int, codebook: Codebook | None = None
) -> Themes:
    """The themes of one question's answers (scrubbed, from a step that is not sensitive)."""
    ordered = sorted(answers, key=lambda a: a.id)
    found: list[Theme] = []
    other: set[str] = set()
    # One thread for numpy's and scikit-learn's loops: the same sums in the same order on
    # every machine, and faster here too (k-means on a small sample spent 0.14 s a fit
    # with two busy cores waiting on each other, against milliseconds alone).
    with threadpool_limits(1):
        for language, group in groupby(sorted(ordered, key=lambda a: a.language),
                                       lambda a: a.language):  # fmt: skip
            themes, left = _themes_in(list(group), language, min_group, codebook)
            found += themes
            other |= left
    found.sort(key=lambda t: (-t.people, t.language, t.id))
    coded = codebook is not None and bool(codebook.themes)
    return Themes(found, rule.count(len(other), min_group), min_group, coded)


def _themes_in(
    answers: list[Answer], language: str, min_group: int, codebook: Codebook | None
) -> tuple[list[Theme], set[str]]:
    """One language's themes, and the people with an answer in none."""
    space = fit([a.text for a in answers], language)
    people = np.array([a.person for a in answers])
    groups: list[_Group] = []
    rest = np.arange(len(answers))
    known = codebook.of(language) if codebook else []
    if known and space.matrix.shape[1]:
        centres = np.vstack([space.vector(dict(t.centre)) for t in known])
        near = np.asarray(space.matrix @ centres.T)
        best = near.argmax(axis=1)
        fits = near[np.arange(len(answers)), best] >= FIT
        matched = [_Group(np.flatnonzero(fits & (best == n)), t) for n, t in enumerate(known)]
        # A coordinator's theme too few people fit this time can't be shown: its answers
        # are grouped with the rest rather than lost in "other".
        shown = [g for g in matched if len(set(people[g.rows])) >= min_group]
        groups += shown
        taken = np.zeros(len(answers), dtype=bool)
        for group in shown:
            taken[group.rows] = True
        rest = np.flatnonzero(~taken)
    groups += [_Group(rest[rows]) for rows in _cluster(space, rest, people, min_group)]
    quotable = np.array([a.quotable for a in answers])
    kept = [g for g in groups if len(set(people[g.rows])) >= min_group]
    placed = np.zeros(len(answers), dtype=bool)
    for group in kept:
        placed[group.rows] = True
    left = set(people[~placed])
    texts = [a.text for a in answers]
    labels = _labels(space, texts, [g.rows for g in kept], people, quotable, min_group)
    themes = []
    new = sorted((g for g in kept if g.coded is None), key=lambda g: (-len(set(people[g.rows])),
                                                                     answers[g.rows[0]].id))  # fmt: skip
    number = {id(g): n for n, g in enumerate(new, start=1)}
    for group, (words, phrases) in zip(kept, labels, strict=True):
        centre = centre_of(space, group.rows.tolist())
        coded = group.coded
        themes.append(Theme(
            id=coded.id if coded else f"{language}-{number[id(group)]}",
            language=language,
            people=len(set(people[group.rows])),
            words=words,
            phrases=phrases,
            quotes=_quotes(space, answers, group.rows, centre),
            name=coded.name if coded else None,
            new=coded is None and bool(codebook and codebook.themes),
            answers=tuple(answers[n].id for n in group.rows),
            centre=centre,
        ))  # fmt: skip
    return themes, left


def _cluster(
    space: Space, rows: np.ndarray, people: np.ndarray, min_group: int
) -> list[np.ndarray]:
    """Groups of `rows` (positions within it), answers far from every centre left out."""
    most = min(MOST_THEMES, len(set(people[rows])) // min_group)
    if most < 1 or not space.matrix.shape[1]:
        return []
    every = len(rows) == space.matrix.shape[0]  # rows are sorted: all of them, in order
    x = space.matrix if every else space.matrix[rows]
    # k-means can't find more groups than distinct points; answers of the same words are one.
    distinct = len({" ".join(space.words[r]) for r in rows})
    dims = min(DIMENSIONS, x.shape[1] - 1, len(rows) - 1)
    if dims >= 2:
        svd = TruncatedSVD(dims, algorithm="randomized", random_state=SEED)
        with np.errstate(divide="ignore", invalid="ignore"):  # answers all alike: no variance
            reduced = normalize(svd.fit_transform(x))
    else:  # a handful of answers, or of features: as they are
        reduced = x.toarray()
    if most >= 2 and distinct >= 2:  # two answers said by many are two themes
        labels, centres = _kmeans(reduced, min(most, distinct))
    else:
        labels = np.zeros(len(rows), dtype=int)
        centres = normalize(reduced.mean(axis=0, keepdims=True))
    closeness = np.einsum("ij,ij->i", normalize(reduced), centres[labels])
    labels = np.where(closeness >= NEAR, labels, -1)
    return [np.flatnonzero(labels == k) for k in range(len(centres)) if (labels == k).any()]


def _kmeans(points: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means with the number of groups (2 to `most`) of the best silhouette, chosen on a
    fixed sample; returns each point's group and the unit-length centres."""
    sample = points
    if len(points) > SAMPLE:
        chosen = np.random.default_rng(SEED).choice(len(points), SAMPLE, replace=False)
        sample = points[np.sort(chosen)]
    best: tuple[float, KMeans] | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # repeated answers: fewer groups
        for k in range(2, most + 1):
            model = KMeans(k, n_init=TRIES, random_state=SEED).fit(sample)
            if len(set(model.labels_)) < 2:
                continue
            score = float(silhouette_score(sample, model.labels_))
            if best is None or score > best[0]:
                best = (score, model)
        if best is None:
            return np.zeros(len(points), dtype=int), normalize(points.mean(axis=0, keepdims=True))
        model = best[1]
        if sample is not points:
            model = KMeans(model.n_clusters, init=model.cluster_centers_, n_init=1,
                           random_state=SEED).fit(points)  # fmt: skip
    return model.labels_, normalize(model.cluster_centers_)


def _labels(
    space: Space,
    texts: list[str],
    groups: Sequence[np.ndarray],
    people: np.ndarray,
    quotable: np.ndarray,
    min_group: int,
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Each group's most telling words and phrases by c-TF-IDF: a term's share of the
    group's words, times log(1 + average words per group / the term's uses overall).
    Only terms at least `min_group` people used may label a theme, or, from quotable
    answers, two people in it."""
    counts = space.counts
    if not groups or not counts.shape[1]:
        return [((), ()) for _ in groups]
    who = {person: n for n, person in enumerate(sorted(set(people)))}
    owner = sparse.csr_matrix((np.ones(len(people)), ([who[p] for p in people], np.arange(len(people)))),
                              shape=(len(who), len(people)))  # fmt: skip
    used_by = np.asarray(((owner @ counts) > 0).sum(axis=0)).ravel()
    shown = used_by >= min_group
    quoted = counts.multiply(quotable[:, None]).tocsr()
    rest = np.ones(counts.shape[0], dtype=bool)
    per_group = []
    for rows in groups:
        rest[rows] = False
        per_group.append(np.asarray(counts[rows].sum(axis=0)).ravel())
    per_group.append(np.asarray(counts[np.flatnonzero(rest)].sum(axis=0)).ravel())  # "other"
    table = np.vstack(per_group).astype(float)
    overall = table.sum(axis=0)
    average = table.sum() / len(table)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
        score = share * np.log1p(average / np.maximum(overall, 1))
    phrase = np.char.find(space.terms.astype(str), " ") >= 0
    out = []
    for n in range(len(groups)):
        mine = owner[:, groups[n]] @ quoted[groups[n]]  # people in it x terms, quotable only
        good = (shown | (np.asarray((mine > 0).sum(axis=0)).ravel() >= 2)) & (table[n] > 0)
        order = np.lexsort((space.terms, -score[n]))  # best first, then A-Z
        words = [str(space.terms[t]) for t in order if good[t] and not phrase[t]][:MAX_WORDS]
        phrases = [str(space.terms[t]) for t in order if good[t] and phrase[t]][:MAX_PHRASES]
        said = [texts[r] for r in groups[n][:SURFACE]]
        words = [surface(said, w) for w in words]
        phrases = [surface(said, p) for p in phrases]
        out.append((tuple(words), tuple(phrases)))
    return out


def _quotes(
    space: Space, answers: list[Answer], rows: np.ndarray, centre: Centre
) -> tuple[str, ...]:
    """Up to `MAX_QUOTES` quotable answers nearest the centre, one per person, scrubbed again."""
    quotable = np.array([n for n in rows if answers[n].quotable], dtype=int)
    if not len(quotable) or not centre:
        return ()
    closeness = space.matrix[quotable] @ space.vector(dict(centre))
    order = sorted(range(len(quotable)), key=lambda n: (-round(float(closeness[n]), 6),
                                                        answers[quotable[n]].id))  # fmt: skip
    quotes: list[str] = []
    seen: set[str] = set()
    said: set[str] = set()
    for n in order:
        answer = answers[quotable[n]]
        quote = scrub(answer.text)
        # One per person, and the same words once: six people who wrote "better pay"
        # are one quote, and the theme's size says how many.
        if answer.person not in seen and quote.strip() and quote.casefold() not in said:
            seen.add(answer.person)
            said.add(quote.casefold())
            quotes.append(quote)
        if len(quotes) == MAX_QUOTES:
            break
    return tuple(quotes)
