"""Recognise a participant command (`/skip`, `/language es`) in what they typed."""

from __future__ import annotations

import re

_COMMAND = re.compile(r"^/([A-Za-z][A-Za-z0-9_]{0,31})(?:@[A-Za-z0-9_]+)?(?:\s+(.*))?$", re.DOTALL)


def parse_command(text: str) -> tuple[str, str] | None:
    """`/start changing-work` -> ('start', 'changing-work'); `/skip@KitchenBot` -> ('skip', '')."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    return match.group(1).lower(), (match.group(2) or "").strip()
