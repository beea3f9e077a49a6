"""Scrub personal data from free text before it reaches disk.

Emails, phone numbers (found by `phonenumbers`' matcher), URLs, @handles and
long digit runs are replaced by placeholders such as `[email]` and `[phone]`.
"""

from __future__ import annotations

import re

import phonenumbers

# Local parts may hold almost any printable character (RFC 5322), so match generously.
_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
# A scheme (https://, tg://) or www., any name.name/path (t.me/someone, juan.dev/cv), or
# a bare domain with a common ending.
_URL = re.compile(
    r"\b[a-z][a-z0-9+.-]*://\S+|\bwww\.\S+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}/\S*"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|co|us|mx|es|info|biz|gov|edu|me|dev|app)\b",
    re.IGNORECASE,
)
_HANDLE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{2,}")
# Nine or more digits, allowing the spaces, dots, dashes and brackets people type inside
# numbers: this catches phone numbers the matcher finds implausible, such as unassigned codes.
_DIGITS = re.compile(r"\d(?:[\s.\-/()]{0,2}\d){8,}")
# Regions tried when a number is written without a country code; the
# partnership works first in the Americas and Europe.
_REGIONS = ("US", "MX", "GB", "ES")


def _phone_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for region in _REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region, phonenumbers.Leniency.VALID):
            spans.append((match.start, match.end))
    return spans


def _replace_spans(text: str, spans: list[tuple[int, int]], placeholder: str) -> str:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    for start, end in reversed(merged):
        text = text[:start] + placeholder + text[end:]
    return text


def scrub(text: str) -> str:
    """Return `text` with personal data replaced by placeholders."""
    text = _EMAIL.sub("[email]", text)
    text = _URL.sub("[link]", text)
    text = _HANDLE.sub("[handle]", text)
    if any(ch.isdigit() for ch in text):
        text = _replace_spans(text, _phone_spans(text), "[phone]")
        text = _DIGITS.sub("[number]", text)
    return text
