"""`kitchen-table session|invite|roles`: the facilitator's and coordinator's side, on the
bot's own machine.

Session commands go through the dispatcher exactly as the same command typed in
a chat would, sent by the machine's operator (an admin: whoever can read the data
folder and its secret is one already), and print what the bot answers. So a whole
gathering can be rehearsed in terminals: `session launch` here, `chat --join CODE`
in others, then `session close`.
"""

from __future__ import annotations

import io
import math
import re
from datetime import timedelta
from pathlib import Path
from typing import TextIO
from xml.sax.saxutils import escape

import segno

from bot.channels.terminal.channel import CHANNEL as TERMINAL
from bot.channels.terminal.channel import TerminalChannel
from bot.conversation.dispatcher import Dispatcher
from bot.delivery.deliverer import Deliverer
from bot.features.roles import Roles
from bot.messages import Inbound
from storage.rows import GatheringRow

# The operator reads the bot's replies in a terminal, where `/status` means nothing:
# each chat command the replies mention becomes the command to run here.
CLI = "kitchen-table session"
_SEND = re.compile(r"\b([Ss])end (/(?:launch|status|close|next|summary)\b)")
_COMMAND = re.compile(r"(?<![\w`])/(launch|status|close|next|summary)\b")
# The bot's replies (phrase keys) that mean the command did nothing: exit 1 says so too.
REFUSALS = ("no_gathering", "only_facilitators", "not_your_gathering", "not_paced",
            "launch_usage", "unknown_guide", "summary_refused")  # fmt: skip
# A printed QR code: at least this many pixels across in a PNG (about 8.5 cm at 300 dpi),
# and this wide in an SVG, which prints sharp at any size.
PNG_PIXELS = 1000
SVG_WIDTH_MM = 120


async def command(
    dispatcher: Dispatcher, deliverer: Deliverer, operator: str, text: str, out: TextIO
) -> int:
    """Send one command as the operator and print the bot's answers to them, with each
    chat command turned into the command to run; 1 when the bot refused or found nothing."""
    replies = io.StringIO()
    deliverer.channels[TERMINAL] = TerminalChannel(out=replies, only=operator)
    await dispatcher.handle(Inbound(TERMINAL, operator, operator, text))
    await dispatcher.settle()  # `session next`: open the question for everyone before exiting
    await deliverer.drain(TERMINAL)
    said = replies.getvalue()
    out.write(for_the_operator(said))
    return 1 if any(_opening(dispatcher, key) in said for key in REFUSALS) else 0


def _opening(dispatcher: Dispatcher, key: str) -> str:
    """A phrase's words before its first placeholder: enough to recognise it."""
    return dispatcher.phrases.text("en", key).split("{", 1)[0].strip()  # unformatted


def for_the_operator(text: str) -> str:
    """The bot's reply with `/status` and the like as the commands to run in a terminal."""
    text = _SEND.sub(lambda m: ("R" if m.group(1) == "S" else "r") + "un " + m.group(2), text)
    return _COMMAND.sub(lambda m: f"`{CLI} {m.group(1)}`", text)


def save_qr(link: str, path: Path, gathering: GatheringRow, out: TextIO) -> int:
    """A QR code of the join link for a room, big enough to print: an SVG with the
    gathering's name and code under it, or a PNG of the code alone (captions need
    fonts, which an SVG leaves to whatever shows it)."""
    if path.suffix.lower() not in (".png", ".svg"):
        out.write(f"{path}: please name a .png or .svg file\n")
        return 2
    qr = segno.make(link, error="m")
    try:
        if path.suffix.lower() == ".svg":
            path.write_text(captioned_svg(qr, gathering.title, gathering.code), "utf-8")
        else:
            width = qr.symbol_size(border=4)[0]
            qr.save(str(path), kind="png", scale=math.ceil(PNG_PIXELS / width), border=4)
    except OSError as error:
        out.write(f"Could not write {path}: {error.strerror or error}\n")
        return 1
    out.write(f"Saved a QR code of {link} to {path}\n")
    if path.suffix.lower() == ".png":
        out.write(
            "(A PNG holds the code alone; save an .svg to print the name and code under it.)\n"
        )
    return 0


def captioned_svg(qr: segno.QRCode, title: str, code: str) -> str:
    """The QR code with the gathering's name and join code under it, `SVG_WIDTH_MM` wide."""
    modules, _ = qr.symbol_size(scale=1, border=4)
    inner = io.BytesIO()
    qr.save(inner, kind="svg", scale=1, border=4, xmldecl=False, svgns=True, omitsize=True)
    symbol = inner.getvalue().decode("utf-8")
    caption = modules * 0.28  # room for two lines of text under the code
    height = modules + caption
    size = modules / 14  # the title's font size, in modules
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH_MM}mm" '
        f'height="{SVG_WIDTH_MM * height / modules:.1f}mm" viewBox="0 0 {modules} {height:g}">'
        f'<rect width="100%" height="100%" fill="#fff"/>'
        f'<svg x="0" y="0" width="{modules}" height="{modules}">{symbol}</svg>'
        f'<text x="{modules / 2:g}" y="{modules + size:g}" font-family="sans-serif" '
        f'font-size="{size:g}" text-anchor="middle">{escape(title[:60])}</text>'
        f'<text x="{modules / 2:g}" y="{modules + size * 2.6:g}" font-family="sans-serif" '
        f'font-size="{size * 1.3:g}" font-weight="bold" text-anchor="middle" '
        f'letter-spacing="{size * 0.2:g}">{escape(code)}</text></svg>\n'
    )


async def invite(
    roles: Roles, role: str, lasts: timedelta, bot_link: str | None, out: TextIO
) -> int:
    code = await roles.invite(role, lasts)
    days = lasts.total_seconds() / 86400
    out.write(
        f"A one-time code for a {role}, good for {days:g} days:\n\n    {code}\n\n"
        f"They send /redeem {code} to the bot (in Slack: /kitchen-table redeem {code}).\n"
    )
    if bot_link:
        out.write(f"Or they open {bot_link}?start=redeem-{code}\n")
    out.write("It works once. Only a hash of it is stored.\n")
    return 0


async def list_roles(roles: Roles, out: TextIO) -> int:
    holders = await roles.holders()
    out.write(f"{len(roles.admins)} admin(s) from KT_ADMINS and this machine's operator.\n")
    if not holders:
        out.write("No facilitators or coordinators yet: invite one with `kitchen-table invite`.\n")
    for holder in holders:
        out.write(f"{holder.pseudonym[:12]}  {holder.role}\n")
    return 0


async def revoke(roles: Roles, prefix: str, out: TextIO) -> int:
    if len(prefix) < 6:
        out.write("Give at least the first 6 characters shown by `kitchen-table roles list`.\n")
        return 2
    revoked = await roles.revoke(prefix)
    if not revoked:
        out.write(f"No one with a role starts with {prefix}.\n")
        return 1
    for pseudonym in revoked:
        out.write(f"Revoked the role of {pseudonym[:12]}.\n")
    return 0
