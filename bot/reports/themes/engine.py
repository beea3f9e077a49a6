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
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

import numpy as np
from scipy import sparse
from sklearn import config_context
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

from bot.flows.scrub import scrub
from bot.reports import min_group as rule
from bot.reports.quotes import Quote
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
FIT_ON = 20_000  # above this many answers, fit on a sample this size and place the rest
CHUNK = 5000  # answers placed at a time, above `FIT_ON`
WORKING_MB = 8  # scikit-learn's memory for pairwise distances, per piece
CANDIDATES = 50  # a theme's quotable answers nearest its centre kept, above `FIT_ON`


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
    if len(answers) > FIT_ON:
        return _themes_at_scale(answers, language, min_group, codebook)
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
        centre = centre_of(space, group.rows.tolist(), people[group.rows])
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
    labels, _ = _grouping(space, rows, people, min_group)
    return [np.flatnonzero(labels == k) for k in range(labels.max(initial=-1) + 1)
            if (labels == k).any()]  # fmt: skip


@dataclass(frozen=True)
class _Model:
    """How `_grouping` placed answers, to place others the same way: the reduction (None:
    the features as they are) and the k-means centres in the reduced space."""

    svd: TruncatedSVD | None
    centres: np.ndarray

    def assign(self, x: sparse.csr_matrix) -> np.ndarray:
        """Each row's group (its nearest centre, as k-means measures), -1 when far."""
        if self.svd is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                reduced = normalize(self.svd.transform(x))
        else:
            reduced = x.toarray()
        nearest = ((reduced[:, None, :] - self.centres[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
        closeness = np.einsum("ij,ij->i", normalize(reduced), normalize(self.centres)[nearest])
        return np.where(closeness >= NEAR, nearest, -1)


def _grouping(
    space: Space, rows: np.ndarray, people: np.ndarray, min_group: int
) -> tuple[np.ndarray, _Model | None]:
    """Each of `rows`' group (0, 1, ...; -1: far from every centre), and the model."""
    most = min(MOST_THEMES, len(set(people[rows])) // min_group)
    if most < 1 or not space.matrix.shape[1] or not len(rows):
        return np.full(len(rows), -1), None
    every = len(rows) == space.matrix.shape[0]  # rows are sorted: all of them, in order
    x = space.matrix if every else space.matrix[rows]
    # k-means can't find more groups than distinct points; answers of the same words are one.
    distinct = len({" ".join(space.words[r]) for r in rows})
    dims = min(DIMENSIONS, x.shape[1] - 1, len(rows) - 1)
    svd = None
    if dims >= 2:
        svd = TruncatedSVD(dims, algorithm="randomized", random_state=SEED)
        with np.errstate(divide="ignore", invalid="ignore"):  # answers all alike: no variance
            reduced = normalize(svd.fit_transform(x))
    else:  # a handful of answers, or of features: as they are
        reduced = x.toarray()
    if most >= 2 and distinct >= 2:  # two answers said by many are two themes
        labels, centres, raw = _kmeans(reduced, min(most, distinct))
    else:
        labels = np.zeros(len(rows), dtype=int)
        raw = reduced.mean(axis=0, keepdims=True)
        centres = normalize(raw)
    closeness = np.einsum("ij,ij->i", normalize(reduced), centres[labels])
    return np.where(closeness >= NEAR, labels, -1), _Model(svd, raw)


def _kmeans(points: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means with the number of groups (2 to `most`) of the best silhouette, chosen on a
    fixed sample; returns each point's group, the unit-length centres and the centres."""
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
            # A few MB at a time: the 2,000 x 2,000 distances at once were ~100 MB of peak.
            with config_context(working_memory=WORKING_MB):
                score = float(silhouette_score(sample, model.labels_))
            if best is None or score > best[0]:
                best = (score, model)
        if best is None:
            mean = points.mean(axis=0, keepdims=True)
            return np.zeros(len(points), dtype=int), normalize(mean), mean
        model = best[1]
        if sample is not points:
            model = KMeans(model.n_clusters, init=model.cluster_centers_, n_init=1,
                           random_state=SEED).fit(points)  # fmt: skip
    return model.labels_, normalize(model.cluster_centers_), model.cluster_centers_


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
    quoted = counts.multiply(quotable[:, None]).tocsr()
    rest = np.ones(counts.shape[0], dtype=bool)
    per_group = []
    for rows in groups:
        rest[rows] = False
        per_group.append(np.asarray(counts[rows].sum(axis=0)).ravel())
    per_group.append(np.asarray(counts[np.flatnonzero(rest)].sum(axis=0)).ravel())  # "other"
    table = np.vstack(per_group).astype(float)
    mine = []
    for rows in groups:  # people in it x terms, quotable only: how many used each
        mine.append(np.asarray(((owner[:, rows] @ quoted[rows]) > 0).sum(axis=0)).ravel())
    said = [[texts[r] for r in rows[:SURFACE]] for rows in groups]
    return _pick_labels(space.terms, table, used_by, mine, said, min_group)


def _pick_labels(
    terms: np.ndarray,
    table: np.ndarray,
    used_by: np.ndarray,
    mine: Sequence[np.ndarray],
    said: Sequence[Sequence[str]],
    min_group: int,
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Labels from the counts: `table` has a row per group and a last for "other" (uses of
    each term), `used_by` the people who used each term, `mine` per group the people in
    it who used each term in a quotable answer, `said` some of each group's answers."""
    overall = table.sum(axis=0)
    average = table.sum() / len(table)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
        score = share * np.log1p(average / np.maximum(overall, 1))
    shown = used_by >= min_group
    phrase = np.char.find(terms.astype(str), " ") >= 0
    out = []
    for n in range(len(mine)):
        good = (shown | (mine[n] >= 2)) & (table[n] > 0)
        order = np.lexsort((terms, -score[n]))  # best first, then A-Z
        words = [str(terms[t]) for t in order if good[t] and not phrase[t]][:MAX_WORDS]
        phrases = [str(terms[t]) for t in order if good[t] and phrase[t]][:MAX_PHRASES]
        written = surface(said[n], words + phrases)
        out.append((tuple(written[: len(words)]), tuple(written[len(words) :])))
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
    return _first_quotes(answers[quotable[n]] for n in order)


def _first_quotes(nearest_first: Iterable[Answer]) -> tuple[str, ...]:
    """Up to `MAX_QUOTES` of these answers, in order, scrubbed again: one per person, and
    the same words once (six people who wrote "better pay" are one quote, and the theme's
    size says how many)."""
    quotes: list[str] = []
    seen: set[str] = set()
    said: set[str] = set()
    for answer in nearest_first:
        quote = scrub(answer.text)
        if answer.person not in seen and quote.strip() and quote.casefold() not in said:
            seen.add(answer.person)
            said.add(quote.casefold())
            quotes.append(Quote(quote, answer.person))
            if len(quotes) == MAX_QUOTES:
                break
    return tuple(quotes)


def _themes_at_scale(
    answers: list[Answer], language: str, min_group: int, codebook: Codebook | None
) -> tuple[list[Theme], set[str]]:
    """`_themes_in` for more than `FIT_ON` answers: features, reduction and k-means fitted
    on a sample of `FIT_ON` (the answers whose ids hash lowest, CRC-32, ties by id, so
    the same answers give the same sample, in any order), then every answer placed in chunks of `CHUNK`, so
    the whole matrix (~300 MB at 100,000 answers) is never held. Themes count people over
    all answers; labels count the terms of all their answers; a theme's centre is its
    sampled answers' mean, and its quotes are the quotable answers nearest it of all."""
    n = len(answers)
    keys = np.array([zlib.crc32(a.id.encode()) for a in answers], dtype=np.uint32)
    chosen = np.sort(np.argsort(keys, kind="stable")[:FIT_ON])
    del keys
    sample = [answers[i] for i in chosen]
    space = fit([a.text for a in sample], language)
    # People as numbers, in the order they first answered (by id): an array of their
    # pseudonyms to sort was ~40 MB at 100,000 answers.
    code: dict[str, int] = {}
    person = np.array([code.setdefault(a.person, len(code)) for a in answers], dtype=np.int64)
    del code
    in_sample = np.full(n, -1)
    in_sample[chosen] = np.arange(len(chosen))
    # People's answers together (then by id), so a chunk holds all of a person's answers
    # and terms' people are counted exactly chunk by chunk.
    order = np.argsort(person, kind="stable")
    chunks = _chunks(order, person)

    # A coordinator's themes first: each answer to the one it fits best, if near enough;
    # one that too few people fit, over all answers, gives its answers back.
    known = codebook.of(language) if codebook else []
    coded = np.full(n, -1)
    if known and space.matrix.shape[1]:
        centres = np.vstack([space.vector(dict(t.centre)) for t in known])
        for rows in chunks:
            x, _ = space.transform([answers[r].text for r in rows])
            near = np.asarray(x @ centres.T)
            best = near.argmax(axis=1)
            coded[rows] = np.where(near[np.arange(len(rows)), best] >= FIT, best, -1)
        fitted = [t for t in range(len(known))
                  if len(np.unique(person[coded == t])) >= min_group]  # fmt: skip
        coded = np.where(np.isin(coded, fitted), coded, -1)
    else:
        fitted = []
    group_of = np.full(n, -1)  # each answer's group: coded themes first, then new ones
    slot = {t: g for g, t in enumerate(fitted)}
    for t, g in slot.items():
        group_of[coded == t] = g
    rest = np.flatnonzero(coded[chosen] < 0)  # sample rows left to group anew
    sample_people = person[chosen]
    labels, model = _grouping(space, rest, sample_people, min_group)
    group_of[chosen[rest]] = np.where(labels >= 0, labels + len(fitted), -1)
    count = len(fitted) + (labels.max(initial=-1) + 1)

    # Each group's centre, from its sampled answers (a coordinator's theme with fewer than
    # two people there: its stored centre).
    centres_of: list[Centre] = []
    for g in range(count):
        rows = np.flatnonzero(group_of[chosen] == g)
        if len(set(sample_people[rows])) < 2 and g < len(fitted):
            centres_of.append(known[fitted[g]].centre)
        else:
            centres_of.append(centre_of(space, rows.tolist(), sample_people[rows]))
    vectors = [space.vector(dict(c)) for c in centres_of]
    quotable = np.array([a.quotable for a in answers])
    terms = len(space.terms)
    table = np.zeros((count + 1, terms))  # uses of each term per group, and unplaced
    used_by = np.zeros(terms)
    mine = np.zeros((count, terms))
    candidates: list[dict[str, tuple[float, str, int]]] = [{} for _ in range(count)]
    for rows in chunks:
        x, counts = space.transform([answers[r].text for r in rows])
        mapped = group_of[rows]
        fresh = (coded[rows] < 0) & (in_sample[rows] < 0)  # not grouped yet: place them
        if model is not None and fresh.any():
            placed = model.assign(x[np.flatnonzero(fresh)])
            mapped[fresh] = np.where(placed >= 0, placed + len(fitted), -1)
            group_of[rows] = mapped
        local, who = np.unique(person[rows], return_inverse=True)
        owner = sparse.csr_matrix((np.ones(len(rows)), (who, np.arange(len(rows)))),
                                  shape=(len(local), len(rows)))  # fmt: skip
        if terms:
            used_by += np.asarray(((owner @ counts) > 0).sum(axis=0)).ravel()
            into = sparse.csr_matrix((np.ones(len(rows)), (np.where(mapped >= 0, mapped, count),
                                      np.arange(len(rows)))), shape=(count + 1, len(rows)))  # fmt: skip
            table += (into @ counts).toarray()
            quoted = counts.multiply(quotable[rows][:, None]).tocsr()
        for g in np.unique(mapped[mapped >= 0]):
            inside = np.flatnonzero(mapped == g)
            if terms:
                mine[g] += np.asarray(((owner[:, inside] @ quoted[inside]) > 0).sum(axis=0)).ravel()
            said = inside[quotable[rows][inside]]
            if len(said) and x.shape[1]:
                _keep_nearest(candidates[g], answers, rows[said], x[said] @ vectors[g])

    people_in = [np.unique(person[group_of == g]) for g in range(count)]
    kept = [g for g in range(count) if len(people_in[g]) >= min_group]
    placed = np.isin(group_of, kept)
    left = {answers[i].person for i in np.flatnonzero(~placed)}
    # "other" in the labels: the unplaced and every group too small to be shown.
    other = table[count] + sum((table[g] for g in range(count) if g not in kept), np.zeros(terms))
    members = {g: np.flatnonzero(group_of == g) for g in kept}
    texts = [[answers[r].text for r in members[g][:SURFACE]] for g in kept]
    named = _pick_labels(space.terms, np.vstack([*(table[g] for g in kept), other]), used_by,
                         [mine[g] for g in kept], texts, min_group) if terms else [((), ())] * len(kept)  # fmt: skip
    new = sorted((g for g in kept if g >= len(fitted)),
                 key=lambda g: (-len(people_in[g]), answers[members[g][0]].id))  # fmt: skip
    number = {g: k for k, g in enumerate(new, start=1)}
    themes = []
    for g, (words, phrases) in zip(kept, named, strict=True):
        book = known[fitted[g]] if g < len(fitted) else None
        themes.append(Theme(
            id=book.id if book else f"{language}-{number[g]}",
            language=language,
            people=len(people_in[g]),
            words=words,
            phrases=phrases,
            quotes=_chosen_quotes(candidates[g], answers),
            name=book.name if book else None,
            new=book is None and bool(codebook and codebook.themes),
            answers=tuple(answers[r].id for r in members[g]),
            centre=centres_of[g],
        ))  # fmt: skip
    return themes, left


def _chunks(order: np.ndarray, person: np.ndarray) -> list[np.ndarray]:
    """`order` cut into pieces of about `CHUNK`, never between two answers of a person;
    each piece's rows sorted (as the answers are: by id)."""
    out, start = [], 0
    while start < len(order):
        end = min(start + CHUNK, len(order))
        while end < len(order) and person[order[end]] == person[order[end - 1]]:
            end += 1
        out.append(np.sort(order[start:end]))
        start = end
    return out


def _keep_nearest(
    kept: dict[str, tuple[float, str, int]], answers: list[Answer], rows: np.ndarray,
    closeness: np.ndarray,
) -> None:  # fmt: skip
    """Keep, by words said, the `CANDIDATES` answers nearest a centre (the nearest answer
    of each wording), as `_quotes` orders them."""
    closeness = np.round(np.asarray(closeness).ravel(), 6)
    # The nearest few of this chunk only: rows are in id order, so a stable sort keeps ties
    # by id, as `_quotes` does.
    best = np.argsort(-closeness, kind="stable")[: 10 * CANDIDATES]
    for row, near in zip(rows[best].tolist(), closeness[best].tolist(), strict=True):
        answer = answers[row]
        key = answer.text.casefold()
        entry = (-near, answer.id, row)
        if key not in kept or entry < kept[key]:
            kept[key] = entry
    if len(kept) > 4 * CANDIDATES:  # trimmed now and then, not for every answer
        for key, _ in sorted(kept.items(), key=lambda item: item[1])[CANDIDATES:]:
            del kept[key]


def _chosen_quotes(
    kept: dict[str, tuple[float, str, int]], answers: list[Answer]
) -> tuple[str, ...]:
    """Up to `MAX_QUOTES` of the kept candidates, nearest first, one per person, the same
    words once, scrubbed again."""
    return _first_quotes(answers[row] for _, _, row in sorted(kept.values()))
