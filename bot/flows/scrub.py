"""Scrub personal data and invisible characters from free text before it reaches disk.

Emails (also spelled out: "ana at example dot org", "ana arroba example punto com"),
phone numbers (found by `phonenumbers`' matcher), URLs, @handles and long digit runs
are replaced by placeholders such as `[email]` and `[phone]`. Names are not found:
nothing here knows a name from any other word.

Invisible characters go first (`strip_invisible`), so that they can neither hide an
address from the patterns below nor reorder what the bot shows around a participant's
words: bidirectional embeddings, overrides, isolates and marks, zero-width spaces, word
joiners, byte-order marks, tag characters, control characters. Text in any script, and
emoji, are kept as they were typed.
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers

# Local parts may hold almost any printable character (RFC 5322), so match generously.
_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
# A scheme (https://, tg://) or www., any name.name/path (t.me/someone, juan.dev/cv), or
# a bare domain with a common ending.
# Each link starts where a run of word characters, dots, pluses and dashes starts, never
# inside one: starting at every word boundary made "a-a-a-..." cost time quadratic in its
# length (a 4,000-character answer took 0.5 s of the event loop; now 0.5 ms).
_LINK_START = r"(?<![\w.+-])"
# The endings of a bare domain taken for a link: the common ones, the countries the
# partnership works in and near, and those chats turn into links that people use for
# short links or their own pages (bit.ly, a name.xyz: left as typed, Telegram and Slack
# showed them as links in quotes; found by review).
# Not endings that are everyday words (de, ni, pa, ve, live, top...): a full stop typed
# without its space ("Trabajo mucho.De noche") would lose the next word.
BARE_ENDINGS = (
    "com|org|net|io|co|us|mx|es|info|biz|gov|edu|me|dev|app|email|online|site|xyz|ai|tv|"
    "ly|ru|cn|uk|ca|cl|pe|ec|bo|py|br|gt|hn|sv|cr|pr|fr|pt|nl|ch|ie|eu|au|nz|ph"
)
_URL = re.compile(
    _LINK_START + r"[a-z][a-z0-9+.-]*://\S+|" + _LINK_START + r"www\.\S+"
    r"|" + _LINK_START + r"[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}/\S*"
    r"|" + _LINK_START + r"[\w-]+(?:\.[\w-]+)*\.(?:" + BARE_ENDINGS + r")\b",
    re.IGNORECASE,
)
_HANDLE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{2,}")
# Nine or more digits, allowing the spaces, dots, dashes and brackets people type inside
# numbers: this catches phone numbers the matcher finds implausible, such as unassigned codes.
_DIGITS = re.compile(r"\d(?:[\s.\-/()]{0,2}\d){8,}")
# Regions tried when a number is written without a country code; the
# partnership works first in the Americas and Europe.
_REGIONS = ("US", "MX", "GB", "ES")

# Spelled-out addresses: "at", "(at)", "[arroba]" or a spaced "@" between a name and a
# domain whose dots may be "dot", "(dot)", "punto" or ".", ending in a known ending (so
# "I work at home dot" and "look at the data" are left alone). Endings that are English
# words (.in, .it, .at, .me, .us, .do, .be) are left out: "at nine dot in the morning".
_ENDINGS = (
    "com|org|net|edu|gov|info|biz|io|co|dev|app|email|online|uk|ca|mx|es|ar|cl|pe|ve|ec|"
    "bo|py|uy|br|gt|hn|sv|ni|cr|pa|pr|cu|de|fr|pt|nl|ch|ie|eu|au|nz|ph"
)


def _bracketed(words: str) -> str:
    return rf"\s*[(\[{{<]\s*(?:{words})\s*[)\]}}>]\s*"


_AT = rf"(?:{_bracketed('at|arroba')}|\s+(?:at|arroba)\s+|\s*@\s*)"
_SPELLED_DOT = rf"(?:{_bracketed('dot|punto')}|\s+(?:dot|punto)\s+)"
_DOT = rf"(?:{_SPELLED_DOT}|\.)"
_LABEL = r"[^\W_](?:[\w-]*[^\W_])?"
# At most six dots each side: no address has more, and a bound keeps a long "a dot a
# dot ..." from costing time that grows with the square of its length.
_SPELLED_EMAIL = re.compile(
    rf"(?<![\w.+-])(?P<local>[\w+-]+(?:{_DOT}[\w+-]+){{0,6}})(?P<at>{_AT})"
    rf"(?P<domain>{_LABEL}(?:{_DOT}{_LABEL}){{0,5}}{_DOT}(?:{_ENDINGS}))(?![\w-]|\.\w)",
    re.IGNORECASE,
)
_IS_SPELLED_DOT = re.compile(_SPELLED_DOT, re.IGNORECASE)
# "juan at gmail.com" is an address although "I work at acme.com" is a sentence.
_MAILBOXES = frozenset(["gmail", "googlemail", "hotmail", "outlook", "live", "msn", "yahoo",
                        "ymail", "icloud", "aol", "proton", "protonmail", "gmx", "zoho",
                        "yandex", "prodigy"])  # fmt: skip
# "worked at a dot com startup", "at the dot com": words that are never a domain.
_NOT_A_DOMAIN = frozenset(["a", "an", "the", "this", "that", "these", "those", "my", "your",
                           "his", "her", "its", "our", "their", "some", "any", "one", "no",
                           "every", "un", "una", "el", "la", "lo", "los", "las", "mi", "mis",
                           "tu", "tus", "su", "sus", "nuestro", "nuestra", "este", "esta",
                           "ese", "esa"])  # fmt: skip

# Invisible characters that are kept only where they do a visible job.
_JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner
_INVISIBLE_NEIGHBOURS = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})
_BLACK_FLAG = "\U0001f3f4"
# An emoji flag of a region (England, Scotland, Wales): a black flag, tag letters and
# digits, and a cancel tag. Any other tag character only hides text.
_FLAG_TAGS = re.compile(_BLACK_FLAG + "[\U000e0030-\U000e0039\U000e0061-\U000e007a]{2,8}\U000e007f")
_SELECTORS = "\ufe00-\ufe0f\U000e0100-\U000e01ef"
# One variation selector picks how the character before it looks; more only hide data.
_SELECTOR_RUN = re.compile(f"[{_SELECTORS}]{{2,}}|(?:^|\\s)[{_SELECTORS}]")
_IS_SELECTOR = re.compile(f"[{_SELECTORS}]")


def _visible_beyond_ascii(ch: str) -> bool:
    # Unassigned (Cn) counts as visible: emoji newer than Python's Unicode tables are.
    return ord(ch) > 0x7F and unicodedata.category(ch) not in _INVISIBLE_NEIGHBOURS


def strip_invisible(text: str) -> str:
    """`text` without control, bidirectional and other invisible format characters.

    Kept: line breaks and tabs; a zero-width joiner or non-joiner between two visible
    characters beyond ASCII (emoji such as 👩‍💻, Persian می‌خواهم, Hindi); the tags of a
    regional flag; one variation selector after a visible character. Line and paragraph
    separators become line breaks. Everything else of category Cc, Cf or Cs goes.
    """
    if text.isprintable() and not _SELECTOR_RUN.search(text):
        return text  # nearly always, and far quicker than looking at every character
    flags = {i for m in _FLAG_TAGS.finditer(text) for i in range(m.start() + 1, m.end())}
    kept: list[str] = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if ch in "\n\t":
            kept.append(ch)
        elif category in ("Zl", "Zp"):
            kept.append("\n")
        elif ch in _JOINERS:
            between = 0 < i < last
            if (
                between
                and _visible_beyond_ascii(text[i - 1])
                and _visible_beyond_ascii(text[i + 1])
            ):
                kept.append(ch)
        elif category in ("Cc", "Cf", "Cs"):
            if i in flags:
                kept.append(ch)
        elif _IS_SELECTOR.match(ch):
            before = kept[-1] if kept else " "
            if not (before.isspace() or _IS_SELECTOR.match(before) or before in _JOINERS):
                kept.append(ch)
        else:
            kept.append(ch)
    return "".join(kept)


def _spelled_email(match: re.Match[str]) -> str:
    domain = match["domain"]
    labels = re.split(_DOT, domain, flags=re.IGNORECASE)
    local = match["local"]
    # A name with a dot, digit or sign in it ("a0 dot ana", "q.name") is no word of a
    # sentence: what follows its "at" is an address, whatever its words.
    named = bool(re.search(r"[\d._+-]", local) or _IS_SPELLED_DOT.search(local))
    if not named and any(label.casefold() in _NOT_A_DOMAIN for label in labels):
        return match[0]  # "I worked at a dot com startup"
    # "I work at acme.com" is a sentence (its link is scrubbed anyway); "q.name at
    # acme.com" and "juan at gmail.com" are addresses.
    if (
        match["at"].strip().casefold() == "at"
        and not _IS_SPELLED_DOT.search(domain)
        and not (named or labels[0].casefold() in _MAILBOXES)
    ):
        return match[0]
    return "[email]"


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
    """Return `text` with invisible characters removed and personal data replaced by
    placeholders."""
    text = strip_invisible(text)
    text = _EMAIL.sub("[email]", text)
    text = _SPELLED_EMAIL.sub(_spelled_email, text)
    text = _URL.sub("[link]", text)
    text = _HANDLE.sub("[handle]", text)
    if any(ch.isdigit() for ch in text):
        text = _replace_spans(text, _phone_spans(text), "[phone]")
        text = _DIGITS.sub("[number]", text)
    return text
