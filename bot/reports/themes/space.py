"""The feature space answers are compared in: TF-IDF over words and two-word phrases,
beside TF-IDF over the letter groups inside words.

Answers are short (often three words), with typos and word forms ("despidos",
"despidieron"): letter groups let "schedule" meet "schedules" and "salaro" meet
"salario" where whole words never would; words and word pairs keep what a phrase means.
Both are fitted on one language's answers, with that language's stop words, and with
accents folded (people type "mas" for "más"). Each feature has a name ("w:pay",
"c:pay") so a coordinator's theme can be carried from one week's space to the next.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from bot.reports.stopwords import ENGLISH, SPANISH
from bot.reports.themes.codebook import TOP_FEATURES, top_features

STOP_WORDS = {"en": ENGLISH, "es": SPANISH}
WORD_SHARE = 0.5  # words against letter groups, measured on the labelled set
LETTERS = 4  # letter groups of four, within words: measured against 3 to 5
_WORD = re.compile(r"[^\W\d_]{2,}")  # two letters or more: "AI" and "IA" are words here
MANY = 2000  # from this many answers on, a feature must appear in two of them


def fold(text: str) -> str:
    """Lower case, accents taken off: how answers and stop words are compared."""
    if text.isascii():  # most answers: nothing to take off
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@cache
def stop_words(language: str) -> frozenset[str]:
    """A language's stop words, folded; none for a language without a list."""
    # As the tokenizer splits them ("don't" -> "don"), so no stop word goes unmatched, and
    # as people type them on phones, without the apostrophe ("dont").
    words = STOP_WORDS.get(language, set())
    typed = {word.replace("'", "") for word in words}
    return frozenset(w for word in words | typed for w in _WORD.findall(fold(word)))


@dataclass(frozen=True)
class Space:
    """One language's fitted features: `matrix` has a row per answer (unit length),
    `names` a name per column, `counts` which answers use each of `terms` (words and
    pairs, for labels)."""

    matrix: sparse.csr_matrix
    names: np.ndarray
    counts: sparse.csr_matrix
    terms: np.ndarray
    words: list[list[str]]  # each answer's words, folded, stop words out
    language: str = ""
    # The fitted vectorizers with their prefix and weight, to place more answers in this
    # space (`transform`): a question too big to fit on whole is fitted on a sample.
    fitted: tuple[tuple[TfidfVectorizer, str, float], ...] = ()

    def transform(self, texts: Sequence[str]) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        """Other answers placed in this space: their rows (unit length, as `matrix`) and
        which of `terms` each uses (as `counts`)."""
        said = split(texts, self.language)
        parts = []
        counts = sparse.csr_matrix((len(texts), len(self.terms)), dtype=np.int32)
        for vectorizer, prefix, share in self.fitted:
            found = _tfidf(vectorizer, _counted(said, vectorizer.vocabulary_, prefix))
            if prefix == "w:":
                counts = (found > 0).astype(np.int32).tocsr()
            found.data *= share
            parts.append(found)
        if not parts:
            return sparse.csr_matrix((len(texts), 0), dtype=np.float32), counts
        return normalize(sparse.hstack(parts, format="csr"), copy=False), counts

    def vector(self, weights: dict[str, float]) -> np.ndarray:
        """A stored centre (feature name -> weight) in this space, unit length over
        all of its weights, so features this week lacks still count against it."""
        index = {name: n for n, name in enumerate(self.names)}
        out = np.zeros(len(self.names))
        for name, weight in weights.items():
            if name in index:
                out[index[name]] = weight
        norm = float(np.sqrt(sum(w * w for w in weights.values())))
        return out / norm if norm else out


def fit(texts: Sequence[str], language: str) -> Space:
    """Fit the features on one language's answers.

    Each answer is folded and split into words once (stop words out), and both
    vectorizers read those words: tokenizing in Python was most of the time at 100,000
    answers, three times over before (two vectorizers and a counter for labels)."""
    said = split(texts, language)
    least = 2 if len(texts) >= MANY else 1
    words = TfidfVectorizer(analyzer=_words_and_pairs, sublinear_tf=True, min_df=least,
                            dtype=np.float32)  # fmt: skip
    letters = TfidfVectorizer(analyzer=_letter_groups, sublinear_tf=True, min_df=2,
                              dtype=np.float32)  # fmt: skip
    parts, names, fitted = [], [], []
    counts = sparse.csr_matrix((len(texts), 0), dtype=np.int32)
    terms = np.array([], dtype=str)
    for vectorizer, prefix, share in ((words, "w:", WORD_SHARE), (letters, "c:", 1 - WORD_SHARE)):
        try:
            found = vectorizer.fit_transform(said)
        except ValueError:  # nothing left of any answer (only stop words, or too few)
            continue
        if prefix == "w:":  # which answers use each word or pair: for labels
            counts = (found > 0).astype(np.int32).tocsr()
            terms = vectorizer.get_feature_names_out()
        vectorizer.stop_words_ = None  # the features left out: not needed to transform
        fitted.append((vectorizer, prefix, share))
        found.data *= share  # in place: at 100,000 answers each copy is tens of MB
        parts.append(found)
        names.append(np.array([prefix + n for n in vectorizer.get_feature_names_out()]))
    if not parts:
        empty = sparse.csr_matrix((len(texts), 0), dtype=np.float32)
        return Space(empty, np.array([], dtype=str), empty, np.array([], dtype=str), said)
    matrix = sparse.hstack(parts, format="csr")
    del parts
    matrix = normalize(matrix, copy=False)
    return Space(matrix, np.concatenate(names), counts, terms, said, language, tuple(fitted))


def _counted(said: list[list[str]], vocabulary: dict[str, int], prefix: str) -> sparse.csr_matrix:
    """Each answer's uses of the fitted features, as the vectorizer counts them, but with
    each distinct word's letter groups looked up once (scikit-learn's own `transform`
    made them again for every answer: over half of placing 100,000 answers)."""
    indices: list[int] = []
    indptr = [0]
    if prefix == "w:":
        for words in said:
            indices += [vocabulary[w] for w in _words_and_pairs(words) if w in vocabulary]
            indptr.append(len(indices))
    else:
        known: dict[str, list[int]] = {}
        for words in said:
            for word in words:
                found = known.get(word)
                if found is None:
                    found = known[word] = [vocabulary[g] for g in _letter_groups([word])
                                           if g in vocabulary]  # fmt: skip
                indices += found
            indptr.append(len(indices))
    matrix = sparse.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                               shape=(len(said), len(vocabulary)))  # fmt: skip
    matrix.sum_duplicates()
    return matrix


def _tfidf(vectorizer: TfidfVectorizer, counts: sparse.csr_matrix) -> sparse.csr_matrix:
    """Counts weighted as the fitted vectorizer weighs them: 1 + log(count) (sublinear),
    times each feature's idf, rows of unit length."""
    np.log(counts.data, counts.data)
    counts.data += 1.0
    counts.data *= vectorizer.idf_[counts.indices].astype(np.float32)
    return normalize(counts, copy=False)


def split(texts: Sequence[str], language: str) -> list[list[str]]:
    """Each answer's words, folded, its language's stop words out."""
    stops = stop_words(language)
    return [[w for w in _WORD.findall(fold(text)) if w not in stops] for text in texts]


def _words_and_pairs(words: list[str]) -> list[str]:
    """An answer's words and the pairs of neighbours among them (stop words already out,
    so "cut my hours" gives "cut hours", as scikit-learn's own word pairs do)."""
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def _letter_groups(words: list[str]) -> list[str]:
    """Groups of `LETTERS` letters inside each word, with a space at either end (as
    scikit-learn's "char_wb"); a shorter word is one group."""
    size = LETTERS
    out = []
    for word in words:
        padded = f" {word} "
        out += [padded[n : n + size] for n in range(max(1, len(padded) - size + 1))]
    return out


def surface(texts: Sequence[str], terms: Sequence[str]) -> list[str]:
    """A label's words as people wrote them ("año", not the folded "ano"): each word of
    each term in its most used form among these answers (read once for all the terms)."""
    forms: dict[str, Counter[str]] = {}
    for text in texts:
        for word in _WORD.findall(text.lower()):
            forms.setdefault(fold(word), Counter())[word] += 1
    return [" ".join(forms[w].most_common(1)[0][0] if w in forms else w for w in term.split())
            for term in terms]  # fmt: skip


def centre_of(
    space: Space, rows: Sequence[int], people: Sequence[object]
) -> tuple[tuple[str, float], ...]:
    """The stored form of the mean of these answers' rows (written by `people`, one per
    row), from the features at least two people have, so a codebook keeps what people
    share, not what one person wrote."""
    if not len(rows) or not space.matrix.shape[1]:
        return ()
    picked = space.matrix[list(rows)]
    mean = np.asarray(picked.mean(axis=0)).ravel()
    # Only what two people share: no one person's own words, even from one answer (a
    # centre of one answer kept them; found by review) or from several of theirs (a name
    # written in two weeks' check-ins was kept; found by review).
    owners = np.unique(np.asarray(people), return_inverse=True)[1]
    owner = sparse.csr_matrix((np.ones(len(rows)), (owners, np.arange(len(rows)))))
    mean[np.asarray(((owner @ (picked > 0)) > 0).sum(axis=0)).ravel() < 2] = 0
    nonzero = np.flatnonzero(mean)
    # Twice what is kept, so ties at the edge are settled by name in `top_features`.
    best = nonzero[np.argsort(-mean[nonzero], kind="stable")[: 2 * TOP_FEATURES]]
    return top_features({str(space.names[n]): float(mean[n]) for n in best})
