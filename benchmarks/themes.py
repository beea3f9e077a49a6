"""Themes at scale: time and peak memory to group 10,000 and 100,000 answers to one
question (#22; targets: 100,000 in under 30 s and 400 MB on 2 cores).

Answers are made by resampling the labelled set (tests/data/themes/) and perturbing
each copy (a letter dropped or doubled, a word from another answer of the same theme
added, a filler said as people say it), each from a different person, a tenth of them
in the other language. Each size runs in a fresh process, so its peak resident memory
(`ru_maxrss`) is its own; the process holds the answers, the engine's work and Python
with numpy, scipy and scikit-learn loaded.

    python benchmarks/themes.py [--sizes 10000,100000] [--question changed] [--threads 2]
    python benchmarks/themes.py --sizes 100000 --quality 5000,10000,20000,40000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data" / "themes"
FILLERS = {"en": ["honestly", "I think", "really", "lol", "you know", "this year"],
           "es": ["la verdad", "pues", "creo que", "este año", "o sea", "jaja"]}  # fmt: skip


def answers(question: str, size: int, seed: int = 7) -> list[tuple[str, str, str, str]]:
    """`size` answers (id, person, language, text), nine in ten in English."""
    return [made[:4] for made in labelled(question, size, seed)]


def labelled(question: str, size: int, seed: int = 7) -> list[tuple[str, str, str, str, str]]:
    """`answers` with the theme each copy was made from (language.theme) last."""
    import yaml

    chooser = random.Random(seed)
    pools = {}
    for language in ("en", "es"):
        found = yaml.safe_load((DATA / f"{question}.{language}.yaml").read_text(encoding="utf-8"))
        pools[language] = list(found["themes"].items())
    made = []
    for n in range(size):
        language = "es" if n % 10 == 9 else "en"
        label, theme = chooser.choice(pools[language])
        words = chooser.choice(theme).split()
        if chooser.random() < 0.3:  # a word from another answer of the same theme
            words.insert(
                chooser.randrange(len(words) + 1), chooser.choice(chooser.choice(theme).split())
            )
        if chooser.random() < 0.3:  # a typo: a letter dropped or doubled
            at = chooser.randrange(len(words))
            word = words[at]
            if len(word) > 3:
                cut = chooser.randrange(1, len(word) - 1)
                words[at] = (
                    word[:cut] + word[cut + 1 :]
                    if chooser.random() < 0.5
                    else word[:cut] + word[cut - 1 :]
                )
        if chooser.random() < 0.2:
            words.append(chooser.choice(FILLERS[language]))
        made.append((f"a{n:07d}", f"p{n:07d}", language, " ".join(words), f"{language}.{label}"))
    return made


def measure(question: str, size: int) -> dict[str, float]:
    """In this process: make the answers, group them, and report."""
    sys.path.insert(0, str(HERE.parent))
    from bot.reports.themes.engine import find_themes
    from bot.reports.themes.model import Answer

    rows = [Answer(i, p, lang, text, True) for i, p, lang, text in answers(question, size)]
    started_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu = time.process_time()
    began = time.perf_counter()
    themes = find_themes(rows, min_group=5)
    wall = time.perf_counter() - began
    return {
        "answers": size,
        "seconds": round(wall, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "before_mb": round(started_rss / 1024, 1),
        "themes": len(themes.themes),
        "other": themes.other or 0,
    }


def quality(question: str, size: int, samples: list[int]) -> None:
    """Agreement (NMI, ARI) with the theme each answer was made from, grouping all
    `size` answers at once and fitting on samples of each size, with time and peak
    memory of each (in this process: later peaks include earlier ones)."""
    sys.path.insert(0, str(HERE.parent))
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from bot.reports.themes import engine
    from bot.reports.themes.model import Answer

    made = labelled(question, size)
    rows = [Answer(i, p, lang, text, True) for i, p, lang, text, _ in made]
    truth = {i: label for i, _, _, _, label in made}
    for fit_on in samples:
        engine.FIT_ON = fit_on
        cpu = time.process_time()
        found = engine.find_themes(rows, min_group=5)
        spent = time.process_time() - cpu
        theme = {a: t.id for t in found.themes for a in t.answers}
        ours = [theme.get(i, "other") for i in truth]
        nmi = normalized_mutual_info_score(list(truth.values()), ours)
        ari = adjusted_rand_score(list(truth.values()), ours)
        name = "all at once" if fit_on >= size else f"sample {fit_on:,}"
        print(f"{size:>7} answers, {name:>12}: NMI {nmi:.3f} ARI {ari:.3f}, {spent:5.2f} s CPU, "
              f"{len(found.themes)} themes, other {found.other}", flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--question", default="changed", choices=["changed", "better", "worries"])
    parser.add_argument("--threads", type=int, default=2, help="BLAS and OpenMP threads")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child's own run
    parser.add_argument("--quality", help="fit sample sizes to compare, e.g. 5000,10000,20000")
    args = parser.parse_args()
    if args.quality:
        for size in (int(s) for s in args.sizes.split(",")):
            quality(args.question, size, [*map(int, args.quality.split(",")), size])
        return 0
    if args.one is not None:
        print(json.dumps(measure(args.question, args.one)))
        return 0
    env = {**os.environ, **{name: str(args.threads) for name in
           ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}  # fmt: skip
    for size in (int(s) for s in args.sizes.split(",")):
        done = subprocess.run([sys.executable, __file__, "--question", args.question, "--one",
                               str(size)], env=env, capture_output=True, text=True, check=True)  # fmt: skip
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{size:>7} answers: {result['seconds']:6.2f} s wall, {result['cpu_seconds']:6.2f} s "
              f"CPU, peak {result['peak_mb']:6.1f} MB (answers made: {result['before_mb']} MB), "
              f"{result['themes']} themes, other {result['other']}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
