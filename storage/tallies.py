"""Choice counts as every backend returns them, from the rows its GROUP BY gives.

A choose_many answer is stored as one JSON list; its options are counted one by one
here, the same way whichever database grouped the rows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from storage.rows import Tally


def tallies_of(rows: Iterable[tuple[str, str, int, int] | Any]) -> list[Tally]:
    """Tallies from (step, value, answers, of which choose_many lists) rows."""
    tallies: list[Tally] = []
    options: Counter[tuple[str, str]] = Counter()
    for step, value, count, lists in rows:
        if count > lists:
            tallies.append(Tally(step, value, count - lists))
        if lists:
            chosen = json.loads(value)
            for option in chosen if isinstance(chosen, list) else [chosen]:
                options[step, json.dumps(option, ensure_ascii=False)] += lists
    return tallies + [Tally(step, value, count) for (step, value), count in options.items()]
