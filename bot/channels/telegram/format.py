"""How Kitchen Table's messages look in Telegram: HTML, inline keyboards, callback data.

Everything from a guide or a participant is escaped here, at render time, so
`<b>`, `&` or a fake link in an answer is shown literally.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from bot.messages import Outbound

MAX_TEXT = 4096
MAX_CALLBACK = 64
NOOP = "noop"


@dataclass(frozen=True)
class Callback:
    run: str
    step: str
    value: str


def encode_callback(run: str | None, step: str, value: str, index: int) -> str:
    """`run:step:value`, or the button's index in place of a value too long for Telegram."""
    data = f"{(run or '')[:8]}:{step}:{value}"
    if len(data.encode("utf-8")) <= MAX_CALLBACK:
        return data
    return f"{(run or '')[:8]}:{step}:#{index}"[:MAX_CALLBACK]


def decode_callback(data: str) -> Callback | None:
    parts = data.split(":", 2)
    if len(parts) != 3 or not parts[1]:
        return None
    return Callback(*parts)


def render_pieces(message: Outbound) -> list[str]:
    """The message as Telegram HTML, in as many pieces as its length needs.

    Only the escaped body is split, so no piece ever breaks a tag or an entity.
    """
    head = f"<i>{html.escape(message.progress)}</i>\n" if message.progress else ""
    tail = f"\n<i>{html.escape(message.hint)}</i>" if message.hint else ""
    pieces = split_text(html.escape(message.text), MAX_TEXT - len(head) - len(tail))
    pieces[0] = head + pieces[0]
    pieces[-1] = pieces[-1] + tail
    return pieces


def keyboard(message: Outbound) -> dict[str, Any] | None:
    """The message's buttons as a Bot API `InlineKeyboardMarkup`.

    Plain dicts rather than PTB's objects: this runs for every question sent.
    """
    if not message.buttons:
        return None
    buttons: list[dict[str, Any]] = []
    for index, button in enumerate(message.buttons):
        label = ("✓ " if button.chosen and message.input == "choices" else "") + button.label
        if button.url:
            buttons.append({"text": label, "url": button.url})
        else:
            data = encode_callback(message.run, button.step, button.value, index)
            buttons.append({"text": label, "callback_data": data})
    if message.input == "scale":
        # Numbers sit side by side, at most six to a row so they stay tappable.
        rows = [buttons[i : i + 6] for i in range(0, len(buttons), 6)]
    elif all(len(b.label) <= 14 for b in message.buttons) and len(buttons) <= 3:
        rows = [buttons]
    else:
        rows = [[button] for button in buttons]
    return _markup(rows)


def answered_keyboard(display: str) -> dict[str, Any]:
    """The keyboard an answered question keeps: what was chosen, and nothing to tap."""
    return _markup([[{"text": f"✓ {display}"[:60], "callback_data": NOOP}]])


def _markup(rows: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return {"inline_keyboard": rows}


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split rendered text into pieces under Telegram's limit, at paragraph breaks if possible."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = -1
        for separator in ("\n\n", "\n", " "):
            cut = rest.rfind(separator, 0, limit)
            if cut > 0:
                break
        if cut <= 0:
            cut = limit
            # Never cut an escaped entity such as &amp; in half.
            amp = rest.rfind("&", cut - 8, cut)
            if amp != -1 and ";" not in rest[amp:cut]:
                cut = amp
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    if rest:
        pieces.append(rest)
    return pieces
