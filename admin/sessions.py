"""`kitchen-table session|invite|roles`: the facilitator's and coordinator's side, on the
bot's own machine.

Session commands go through the dispatcher exactly as the same command typed in
a chat would, sent by the machine's operator (an admin: whoever can read the data
folder and its secret is one already), and print what the bot answers. So a whole
gathering can be rehearsed in terminals: `session launch` here, `chat --join CODE`
in others, then `session close`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TextIO

import segno

from bot.channels.terminal import CHANNEL as TERMINAL
from bot.channels.terminal import TerminalChannel
from bot.delivery import Deliverer
from bot.dispatcher import Dispatcher
from bot.messages import Inbound
from bot.roles import Roles


async def command(
    dispatcher: Dispatcher, deliverer: Deliverer, operator: str, text: str, out: TextIO
) -> int:
    """Send one command as the operator and print the bot's answers to them."""
    deliverer.channels[TERMINAL] = TerminalChannel(out=out, only=operator)
    await dispatcher.handle(Inbound(TERMINAL, operator, operator, text))
    await dispatcher.settle()  # `session next`: open the question for everyone before exiting
    await deliverer.drain(TERMINAL)
    return 0


def save_qr(link: str, path: Path, out: TextIO) -> int:
    """A QR code of the join link, as PNG or SVG by the file's extension, for a room."""
    if path.suffix.lower() not in (".png", ".svg"):
        out.write(f"{path}: please name a .png or .svg file\n")
        return 2
    segno.make(link, error="m").save(str(path), scale=10, border=2)
    out.write(f"Saved a QR code of {link} to {path}\n")
    return 0


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
    for pseudonym, role in holders:
        out.write(f"{pseudonym[:12]}  {role}\n")
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
