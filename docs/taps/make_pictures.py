"""Draw docs/taps/*.png: a tap as a phone shows it, two ways (#19).

**today**: the tapped question's keyboard is edited to show what was chosen
(`editMessageReplyMarkup`, "✓ Evening" on a button that does nothing), and the next
question arrives as a new message. **one edit**: a single `editMessageText` of the
tapped message both marks the choice (kept as text) and carries the next question
with its buttons, so the guide grows inside one message.

The texts and buttons are the bot's own: the tap-heavy guide
(benchmarks/guides/tap-heavy.yaml) is walked through the real Telegram channel,
dispatcher and outbox against the fake Bot API of the tests (tests/fake_telegram.py),
and every call the bot makes is replayed onto an imitation of a Telegram chat 360 px
wide. The "one edit" pictures are the same calls with each pair (the answered
keyboard's edit, the next question's sendMessage) folded into the one edit that
variant would send. Headless Chromium (Debian's `chromium`) takes the screenshots.

    .venv/bin/python docs/taps/make_pictures.py          # writes docs/taps/*.png
    .venv/bin/python docs/taps/make_pictures.py --keep   # and keeps the HTML pages
"""

from __future__ import annotations

import argparse
import asyncio
import html
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.library import GuideLibrary  # noqa: E402  (after the path: runs from a checkout)
from tests.conftest import GUIDES, FakeClock  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402
from tests.test_telegram import Phone  # noqa: E402

OUT = Path(__file__).resolve().parent
WIDTH, HEIGHT = 360, 740  # a common Android phone's viewport, in CSS pixels
CHROMIUM = "/usr/bin/chromium"
SHOWN = ("sendMessage", "editMessageReplyMarkup", "editMessageText")


# What happened, in order: what the person did, and each call the bot made ------------


@dataclass
class Event:
    who: str  # "me" (typed), "tap" (a button tapped), "bot" (a Bot API call)
    text: str = ""
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    minute: int = 0  # the clock on the phone, 9:41 + minute


async def walk(steps: list[tuple[str, str, int]]) -> list[Event]:
    """Walk the tap-heavy guide: ("type", text, 0) or ("tap", label, keyboards back)."""
    fake = FakeTelegram()
    await fake.start()
    library = GuideLibrary.from_paths([GUIDES, ROOT / "benchmarks" / "guides"])
    events: list[Event] = []
    with tempfile.TemporaryDirectory() as folder:
        phone = Phone(fake, Path(folder) / "kt.db", library, FakeClock())
        await phone.open()
        try:
            for minute, (kind, text, back) in enumerate(steps):
                seen = len(fake.calls)
                if kind == "type":
                    events.append(Event("me", text, minute=minute))
                    await phone.type(text)
                else:
                    events.append(Event("tap", text, minute=minute))
                    await phone.tap(text, back=back)
                events += [
                    Event("bot", method=c.method, params=c.params, minute=minute)
                    for c in fake.calls[seen:]
                    if c.method in SHOWN and not c.params.get("_failed")
                ]
        finally:
            await phone.close()
            await fake.stop()
    return events


def one_edit(events: list[Event]) -> list[Event]:
    """The same conversation as the one-edit variant would send it: an answered keyboard's
    edit followed, for the same tap, by the next question becomes one editMessageText of
    the tapped message, its text followed by the answer and the next question."""
    texts: dict[int, str] = {}  # message id -> its text as the chat shows it now
    alias: dict[int, int] = {}  # a question folded into an earlier message -> that message
    out: list[Event] = []
    index = 0
    while index < len(events):
        event = events[index]
        following = events[index + 1] if index + 1 < len(events) else None
        params = dict(event.params)
        if "message_id" in params:
            params["message_id"] = alias.get(int(params["message_id"]), params["message_id"])
        if (
            event.method == "editMessageReplyMarkup"
            and following is not None
            and following.method == "sendMessage"
            and following.minute == event.minute
        ):
            target = int(params["message_id"])
            chosen = params["reply_markup"]["inline_keyboard"][0][0]["text"]
            text = f"{texts[target]}\n<b>{html.escape(chosen)}</b>\n\n{following.params['text']}"
            texts[target] = text
            alias[int(following.params["_message_id"])] = target
            edit = {"message_id": target, "text": text}
            if "reply_markup" in following.params:
                edit["reply_markup"] = following.params["reply_markup"]
            out.append(Event("bot", method="editMessageText", params=edit, minute=event.minute))
            index += 2
            continue
        if event.method == "sendMessage":
            texts[int(params["_message_id"])] = params["text"]
        out.append(Event(event.who, event.text, event.method, params, event.minute))
        index += 1
    return out


# The chat, as a phone draws it --------------------------------------------------------


@dataclass
class Bubble:
    mine: bool
    text: str  # Telegram HTML (the bot's) or plain text (the person's)
    minute: int
    keyboard: list[list[dict[str, Any]]] = field(default_factory=list)
    edited: bool = False


def replay(events: list[Event]) -> list[Bubble]:
    bubbles: list[Bubble] = []
    by_id: dict[int, Bubble] = {}
    for event in events:
        if event.who == "me":
            bubbles.append(Bubble(True, html.escape(event.text), event.minute))
        elif event.method == "sendMessage":
            bubble = Bubble(False, event.params["text"], event.minute,
                            event.params.get("reply_markup", {}).get("inline_keyboard", []))  # fmt: skip
            bubbles.append(bubble)
            by_id[int(event.params["_message_id"])] = bubble
        elif event.method in ("editMessageReplyMarkup", "editMessageText"):
            bubble = by_id[int(event.params["message_id"])]
            bubble.keyboard = event.params.get("reply_markup", {}).get("inline_keyboard", [])
            if event.method == "editMessageText":
                # Telegram marks a message whose text changed (not one whose buttons did).
                bubble.text, bubble.edited = event.params["text"], True
    return bubbles


STYLE = """
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.35 Roboto, "Noto Sans", "DejaVu Sans", sans-serif;
       background: #cfdcc0; width: %(width)dpx; }
body.screen { height: 100vh; display: flex; flex-direction: column; overflow: hidden; }
.top { position: sticky; top: 0; z-index: 2; height: 56px; background: #517da2; color: #fff;
       display: flex; align-items: center; padding: 0 12px; gap: 12px; }
.avatar { width: 38px; height: 38px; border-radius: 50%%; background: #e17076;
          display: flex; align-items: center; justify-content: center; font-weight: 600; }
.name { font-weight: 600; font-size: 16px; } .status { font-size: 13px; opacity: .8; }
.chat { display: flex; flex-direction: column; justify-content: flex-end; gap: 6px;
        padding: 8px 8px 10px; }
.screen .chat { flex: 1; min-height: 0; overflow: hidden; }
.msg { max-width: 86%%; align-self: flex-start; }
.msg.mine { align-self: flex-end; }
.bubble { background: #fff; border-radius: 12px 12px 12px 4px; padding: 6px 9px 4px;
          box-shadow: 0 1px 1px rgba(0,0,0,.15); white-space: pre-wrap; word-wrap: break-word; }
.mine .bubble { background: #effdde; border-radius: 12px 12px 4px 12px; }
.time { float: right; font-size: 11px; color: #8a9aa8; margin: 6px 0 -2px 10px; }
.mine .time { color: #5fae57; }
.keyboard { margin-top: 3px; display: flex; flex-direction: column; gap: 3px; }
.row { display: flex; gap: 3px; }
.button { flex: 1; text-align: center; padding: 9px 4px; border-radius: 8px; font-size: 14px;
          font-weight: 500; color: #fff; background: rgba(64, 94, 64, .42); }
.dead { background: rgba(64, 94, 64, .25); }
.caption { background: #fff8c4; color: #333; font-size: 12.5px; padding: 6px 10px;
           border-bottom: 1px solid #e0d890; }
.list { background: #fff; }
.chatrow { display: flex; gap: 12px; padding: 10px 12px; border-bottom: 1px solid #eee;
           align-items: center; }
.chatrow .avatar { width: 50px; height: 50px; color: #fff; flex: none; }
.chatrow .what { flex: 1; min-width: 0; }
.chatrow .line { white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
                 color: #7d8b99; font-size: 14px; }
.when { font-size: 12px; color: #8a9aa8; display: flex; flex-direction: column;
        align-items: flex-end; gap: 6px; }
.badge { background: #4fae4e; color: #fff; border-radius: 11px; min-width: 22px;
         padding: 2px 7px; font-size: 13px; text-align: center; }
.banner { margin: 8px; background: #f3f3f3; border-radius: 14px; padding: 10px 12px;
          box-shadow: 0 2px 6px rgba(0,0,0,.25); font-size: 14px; }
.nothing { margin: 8px; color: #555; font-size: 13px; padding: 10px 12px; }
"""


def clock(minute: int) -> str:
    return f"9:{41 + minute:02d}"


def draw_bubble(bubble: Bubble) -> str:
    stamp = ("edited " if bubble.edited else "") + clock(bubble.minute)
    rows = "".join(
        '<div class="row">'
        + "".join(
            f'<div class="button{" dead" if b.get("callback_data") == "noop" else ""}">'
            f"{html.escape(b['text'])}</div>"
            for b in row
        )
        + "</div>"
        for row in bubble.keyboard
    )
    keyboard = f'<div class="keyboard">{rows}</div>' if rows else ""
    side = " mine" if bubble.mine else ""
    return (
        f'<div class="msg{side}"><div class="bubble">{bubble.text}'
        f'<span class="time">{stamp}</span></div>{keyboard}</div>'
    )


def page(caption: str, body: str, *, screen: bool) -> str:
    style = STYLE % {"width": WIDTH}
    return (
        f"<!doctype html><meta charset=utf-8><style>{style}</style>"
        f'<body class="{"screen" if screen else ""}">'
        f'<div class="caption">{html.escape(caption)}</div>{body}</body>'
    )


def chat_page(caption: str, bubbles: list[Bubble], *, screen: bool) -> str:
    top = (
        '<div class="top"><div class="avatar">KT</div><div><div class="name">'
        'Kitchen Table</div><div class="status">bot</div></div></div>'
    )
    chat = "".join(draw_bubble(b) for b in bubbles)
    return page(caption, f'{top}<div class="chat">{chat}</div>', screen=screen)


def list_page(caption: str, bubbles: list[Bubble], unread: int) -> str:
    """The phone's chat list (and what popped up) after the person left the chat."""
    last = bubbles[-1]
    preview = html.escape(re.sub(r"<[^>]+>", "", last.text).replace("\n", " "))
    badge = f'<div class="badge">{unread}</div>' if unread else ""
    banner = (
        f'<div class="banner"><b>Kitchen Table</b><br>{preview}</div>'
        if unread
        else '<div class="nothing">(no notification)</div>'
    )
    rows = (
        f'<div class="chatrow"><div class="avatar">KT</div><div class="what">'
        f"<b>Kitchen Table</b><div class=line>{preview}</div></div>"
        f'<div class="when">{clock(last.minute)}{badge}</div></div>'
        '<div class="chatrow"><div class="avatar" style="background:#65aadd">M</div>'
        '<div class="what"><b>Maria (shift lead)</b><div class=line>see you tomorrow</div>'
        "</div></div>"
    )
    return page(caption, f'{banner}<div class="list">{rows}</div>', screen=True)


def screenshot(source: Path, target: Path, height: int) -> None:
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--force-device-scale-factor=1", f"--window-size={WIDTH},{height}",
         f"--screenshot={target}", source.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def full_height(source: Path) -> int:
    """The page's own height, read back from Chromium, for a picture of all of it."""
    probe = source.with_suffix(".probe.html")
    probe.write_text(
        source.read_text()
        + "<script>document.title='H'+document.documentElement.scrollHeight</script>"
    )
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         f"--window-size={WIDTH},{HEIGHT}", "--dump-dom", probe.as_uri()],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    probe.unlink()
    found = re.search(r"<title>H(\d+)</title>", dom)
    return int(found.group(1)) if found else HEIGHT


GUIDE = [("type", "/start tap-heavy", 0), ("tap", "I agree", 0), ("tap", "Evening", 0),
         ("tap", "4", 0), ("tap", "No", 0), ("type", "Fewer split shifts", 0)]  # fmt: skip
# /help in the middle re-asks the question below its answer; then the person scrolls
# up and taps the first copy of the question, the one above the help.
OLD_TAP = [("type", "/start tap-heavy", 0), ("tap", "I agree", 0), ("type", "/help", 0),
           ("tap", "Evening", 1)]  # fmt: skip

PICTURES = [
    # name, steps walked, how much of them, caption, kind
    ("screen", GUIDE, 4, "Just tapped “4”: the bottom of the screen", "screen"),
    ("scrollback", GUIDE, 6, "Finished, then scrolled back to the start", "full"),
    ("old-tap", OLD_TAP, 4, "After /help, tapped “Evening” on the question above it", "screen"),
    ("away", GUIDE, 2, "Tapped “I agree”, then left the chat at once", "list"),
]
VARIANTS = [("today", "Today: edit marks the tap, next question is new"),
            ("one-edit", "One edit marks the tap and carries the next question")]  # fmt: skip


async def walk_both() -> dict[int, list[Event]]:
    return {id(steps): await walk(steps) for steps in (GUIDE, OLD_TAP)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the HTML pages beside")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        sys.exit("needs Debian's chromium: apt-get install -y chromium")
    walked = asyncio.run(walk_both())
    for name, steps, upto, caption, kind in PICTURES:
        events = [e for e in walked[id(steps)] if e.minute < upto]
        for variant, title in VARIANTS:
            shown = replay(events if variant == "today" else one_edit(events))
            label = f"{title}. {caption}."
            if kind == "list":
                # A new message is an unread message and a notification; an edit is neither.
                unread = 1 if variant == "today" else 0
                text = list_page(label, shown, unread)
            else:
                text = chat_page(label, shown, screen=kind == "screen")
            source = OUT / f"{variant}-{name}.html"
            source.write_text(text, encoding="utf-8")
            height = HEIGHT if kind != "full" else max(HEIGHT, full_height(source))
            if kind == "list":
                height = 330
            screenshot(source, OUT / f"{variant}-{name}.png", height)
            if not args.keep:
                source.unlink()
            print(OUT / f"{variant}-{name}.png")


if __name__ == "__main__":
    main()
