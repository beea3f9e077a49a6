"""Durations as guide authors write them: '7d', '12h', '30m', '1d12h'."""

from __future__ import annotations

import re
from datetime import timedelta

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
