"""An `Outbound` as Slack Block Kit, and Slack's message markup back to plain text.

Everything shown goes through `escape`, so no answer or guide text can mention
@channel, @here or a person, or make a link: Slack reads `<...>` as markup and
`&`, `<`, `>` are the only characters it asks us to escape.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bot.markup import slack_escape
from bot.messages import Outbound, OutButton

SECTION_LIMIT = 3000  # characters in one section block's text
LABEL_LIMIT = 75  # characters in a button's or a checkbox's label
CHECKBOXES_LIMIT = 10  # options in one checkboxes element
ACTIONS_LIMIT = 25  # elements in one actions block
# One message takes at most 50 blocks, and about 12,000 characters of text in them all
# (undocumented: Slack answers `msg_blocks_too_long`; seen refused from 11,341): a longer
# message is posted in several (`posts`).
BLOCKS_LIMIT = 50
POST_TEXT_LIMIT = 10_000

ACTION_PREFIX = "kt:"
BUTTON = "kt:b:"  # a choice, a scale point or a guide in the menu
CONTROL = "kt:c:"  # skip, back or stop
CHECKBOX = "kt:x:"  # a tick in a choose-many question: nothing happens until Submit
SUBMIT = "kt:submit"

# Any `/command` the bot mentions (its command names come from the router, and are all
# lower-case words); not a path or a fraction, which follow a letter, digit or slash.
_COMMANDS = re.compile(r"(?<![\w/])/([a-z][a-z_]*)\b")


escape = slack_escape  # text shown literally in Slack mrkdwn or plain_text


_MARKUP = re.compile(r"<([^<>]*)>")


def plain_text(text: str) -> str:
    """What someone typed in Slack, as they saw it: Slack's `<...>` markup undone.

    A mention `<@U123>` becomes `@U123` (which the engine's scrubbing removes from
    free-text answers), a link `<https://x|label>` its address, `<!here>` `@here`;
    then `&lt;` and friends become the characters the person typed.
    """

    def one(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith(("@", "#")):
            return target[0] + (label or target[1:])
        if target.startswith("!"):
            name = target[1:].split("^")[0]
            return "@" + (label or name)
        return target

    text = _MARKUP.sub(one, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def with_command(text: str, command: str) -> str:
    """`/skip` in a phrase becomes `/kitchen-table skip`: Slack has one command per app."""
    return _COMMANDS.sub(lambda m: f"{command} {m.group(1)}", text)


@dataclass(frozen=True)
class Action:
    """A decoded button or checkbox value."""

    run: str
    step: str
    value: str


def encode(run: str | None, step: str, value: str) -> str:
    return json.dumps({"r": (run or "")[:8], "s": step, "v": value}, separators=(",", ":"))


def decode(raw: str) -> Action | None:
    try:
        data = json.loads(raw)
        return Action(str(data["r"]), str(data["s"]), str(data["v"]))
    except (ValueError, KeyError, TypeError):
        return None


def _plain(text: str) -> dict[str, Any]:
    # plain_text is never read as markup; it only needs to fit.
    return {"type": "plain_text", "text": text[:LABEL_LIMIT] or " ", "emoji": True}


def _sections(text: str, fence: str = "") -> list[dict[str, Any]]:
    """Text in section blocks, escaped; with `fence` ("```"), each a code block of its
    own, since Slack draws each section apart."""
    pieces = _cut(escape(text), SECTION_LIMIT - 2 * len(fence))
    return [_section(f"{fence}{p}{fence}") for p in pieces if p]


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def _cut(escaped: str, limit: int) -> list[str]:
    """Escaped text in pieces of at most `limit` characters, never through an entity
    (`&amp;`, `&lt;`, `&gt;`: cut there, Slack would show its halves)."""
    pieces: list[str] = []
    start = 0
    while start < len(escaped):
        end = min(start + limit, len(escaped))
        amp = escaped.rfind("&", max(start, end - 4), end)
        if end < len(escaped) and amp > start and ";" not in escaped[amp:end]:
            end = amp
        pieces.append(escaped[start:end])
        start = end
    return pieces


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(text)[:3000]}]}


def _actions(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": "actions", "elements": elements[i : i + ACTIONS_LIMIT]}
        for i in range(0, len(elements), ACTIONS_LIMIT)
    ]


def _button(prefix: str, index: int, label: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": f"{prefix}{index}",
        "text": _plain(label),
        "value": value,
    }


def _choice_buttons(message: Outbound, buttons: list[OutButton]) -> list[dict[str, Any]]:
    return [
        _button(BUTTON, i, b.label, encode(message.run, b.step, b.value))
        for i, b in enumerate(buttons)
    ]


def _checkboxes(message: Outbound, options: list[OutButton]) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = []
    for start in range(0, len(options), CHECKBOXES_LIMIT):
        chunk = options[start : start + CHECKBOXES_LIMIT]
        rendered = [
            {"text": _plain(o.label), "value": encode(message.run, o.step, o.value)} for o in chunk
        ]
        element: dict[str, Any] = {
            "type": "checkboxes",
            "action_id": f"{CHECKBOX}{start}",
            "options": rendered,
        }
        chosen = [r for r, o in zip(rendered, chunk, strict=True) if o.chosen]
        if chosen:
            element["initial_options"] = chosen
        elements.append(element)
    return elements


def blocks(message: Outbound, command: str) -> tuple[str, list[dict[str, Any]]]:
    """The fallback text (for notifications) and the blocks of one message: more than
    `BLOCKS_LIMIT` for a long one, which is posted in several."""
    text = with_command(message.text, command)
    out: list[dict[str, Any]] = []
    if message.markup is not None:
        # A report, rendered and escaped for mrkdwn already.
        # Not `with_command`: a report quotes people, whose words stay as they wrote them.
        out += [_section(piece) for piece in _cut(message.markup["mrkdwn"], SECTION_LIMIT)]
        if message.buttons:
            out += _actions(_choice_buttons(message, message.buttons))
        return escape(text)[:3000], out
    if message.qr is not None:
        text = f"{text}\n{message.qr}"
    if message.progress:
        out.append(_context(message.progress))
    out += _sections(text)
    if message.document is not None:
        # Files need another scope; a code block is readable and copies cleanly.
        out += _sections(message.document, fence="```")
    if message.hint:
        out.append(_context(with_command(message.hint, command)))
    if message.input == "choices":
        done = [b for b in message.buttons if b.value.startswith("_")]
        options = [b for b in message.buttons if not b.value.startswith("_")]
        elements = _checkboxes(message, options)
        for button in done:
            submit = _button(
                SUBMIT, 0, button.label, encode(message.run, button.step, button.value)
            )
            submit["action_id"] = SUBMIT
            submit["style"] = "primary"
            elements.append(submit)
        out += _actions(elements)
    elif message.buttons and any(b.url for b in message.buttons):
        pass  # link buttons point into Telegram; Slack needs none
    elif message.buttons:
        out += _actions(_choice_buttons(message, message.buttons))
    if message.controls:
        controls = [
            _button(CONTROL, i, b.label, encode(message.run, b.step, b.value))
            for i, b in enumerate(message.controls)
        ]
        out += _actions(controls)
    return escape(text)[:3000], out


def posts(rendered: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """A message's blocks as the posts Slack takes (at least one, maybe empty), in order."""
    out: list[list[dict[str, Any]]] = [[]]
    size = 0
    for block in rendered:
        length = _text_length(block)
        if out[-1] and (len(out[-1]) == BLOCKS_LIMIT or size + length > POST_TEXT_LIMIT):
            out.append([])
            size = 0
        out[-1].append(block)
        size += length
    return out


def _text_length(value: object) -> int:
    """The characters of text in a block, whatever holds them."""
    if isinstance(value, dict):
        return sum(
            len(v) if k == "text" and isinstance(v, str) else _text_length(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return sum(map(_text_length, value))
    return 0


def answered_blocks(message: Outbound, command: str) -> tuple[str, list[dict[str, Any]]]:
    """An answered question: what was asked and what was chosen, with nothing left to click."""
    out = _sections(with_command(message.asked or "", command))
    out.append(_context(f"✓ {message.text}"))
    return escape(f"✓ {message.text}")[:3000], out[:50]


def menu_blocks(sections: list[Outbound]) -> list[dict[str, Any]]:
    """The App Home: a few sections, each with its buttons."""
    out: list[dict[str, Any]] = []
    for section in sections:
        out += _sections(section.text)
        if section.buttons:
            out += _actions(_choice_buttons(section, section.buttons))
    return out[:100]
