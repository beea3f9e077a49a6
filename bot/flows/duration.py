"""Durations as guide authors write them ('7d', '12h', '1d12h'), and the moments `--since` reads."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_PART = re.compile(r"(\d+)\s*([wdhms])")
_WHOLE = re.compile(r"^\s*(\d+\s*[wdhms]\s*)+$")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_LONGEST = 365 * 86400


def parse_duration(text: str) -> timedelta:
    """Parse '3d' or '1d12h'; raise ValueError with a hint on anything else."""
    if not _WHOLE.match(text):
        raise ValueError(f"'{text}' is not a duration; write it like 7d, 12h or 30m")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    if seconds > _LONGEST:
        raise ValueError("a duration can be at most 365d")
    return timedelta(seconds=seconds)


_SINCE_HINT = "write a date such as 2026-01-31 or a duration such as 7d"


def parse_since(text: str, now: datetime) -> datetime:
    """`--since` and `--until` as people write them: a date (2026-11-01), a date and time,
    or a duration back from `now` (7d). Times without a zone are UTC. ValueError with a
    hint on anything else, in one line."""
    cleaned = text.strip()
    if _WHOLE.match(cleaned):
        return now - parse_duration(cleaned)
    try:
        moment = datetime.fromisoformat(cleaned) if cleaned[:1].isdigit() else None
    except ValueError:
        moment = None
    if moment is None:
        shown = cleaned[:40].replace("\n", " ")
        raise ValueError(f"'{shown}' is not a date or a duration; {_SINCE_HINT}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
