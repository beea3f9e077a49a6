"""The Telegram channel on python-telegram-bot 22: updates in, Bot API calls out.

Thin by design: it turns an `Update` into an `Inbound` for the dispatcher and an
`Outbound` into `sendMessage` or an edit, and holds no conversation state. It
runs in the bot's own asyncio loop, by long polling or behind the bot's web
server as a webhook.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import io
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import segno
from aiohttp import web
from telegram import Bot, BotCommand, InputFile
from telegram.constants import ChatType, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.channels.http import WEBHOOK_DEADLINE, RequestRefused, read_body, refuse
from bot.channels.telegram.format import (
    MAX_TEXT,
    NOOP,
    answered_keyboard,
    decode_callback,
    keyboard,
    render_pieces,
    split_text,
)
from bot.channels.telegram.request import AiohttpRequest
from bot.delivery import channel as base
from bot.delivery.ratelimit import RateLimits, SendLimits
from bot.flows.events import Tap
from bot.messages import Inbound, NotStored, Outbound

log = logging.getLogger(__name__)

# Opt in now to PTB's coming behaviour (durations as timedelta) instead of a warning on
# every rate limit; `_seconds` reads either form.
os.environ.setdefault("PTB_TIMEDELTA", "1")

CHANNEL = "telegram"
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
DEFAULT_API_URL = "https://api.telegram.org"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
NO_PREVIEW = {"is_disabled": True}  # LinkPreviewOptions: a guide's links stay plain

Handler = Callable[[Inbound], Awaitable[object]]


def telegram_limits(per_second: float = 30, per_chat: float = 1.0) -> RateLimits:
    """Telegram's documented limits: 30 messages/s overall (more with paid broadcasts),
    about 1/s per chat (a short burst is fine), 20/min per group."""
    return RateLimits(
        overall=(per_second, float(per_second)),
        per_chat=(max(3.0, per_chat), per_chat),
        per_group=(20, 20 / 60),
    )


def webhook_secrets(secret: bytes) -> tuple[str, str]:
    """A path component and a secret token, derived from our secret so they survive restarts."""
    digest = hmac.new(secret, b"kitchen-table/telegram-webhook", hashlib.sha256).hexdigest()
    return digest[:24], digest[24:56]


class HeldBack(Exception):
    """Storage failed while handling updates fetched by polling: fetch again from `offset`."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


class TelegramChannel:
    name = CHANNEL
    capabilities = base.Capabilities(edit=True, buttons=True, files=True, groups=True)

    def __init__(
        self,
        bot: Bot,
        handle: Handler,
        *,
        limits: SendLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        poll_timeout: int = 25,
        menu: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        self.bot = bot
        self.handle = handle
        # The commands Telegram shows in its menu, per language ("" for everyone else):
        # the router's declarations, handed over by the composition root.
        self.menu = menu or {}
        self.limits = limits or telegram_limits()
        self.clock = clock
        self.poll_timeout = poll_timeout
        self.username = ""
        self._taps: set[asyncio.Task[None]] = set()  # answers to taps still under way

    async def start(self) -> None:
        await self.bot.initialize()
        self.username = self.bot.username
        await self._set_menu()

    async def _set_menu(self) -> None:
        """Tell Telegram which commands to offer, in each language; a failure only costs
        the menu (the commands work typed), so it is logged and the bot goes on."""
        for language, commands in self.menu.items():
            try:
                await self.bot.set_my_commands(
                    [BotCommand(name, description[:256]) for name, description in commands],
                    language_code=language or None,
                )
            except TelegramError as error:
                log.warning("Telegram did not take the command menu (%s): %s", language, error)

    async def stop(self) -> None:
        await self.settle()
        await self.bot.shutdown()

    async def settle(self) -> None:
        """Wait for the answers to taps still under way (shutdown, tests)."""
        while self._taps:
            await asyncio.gather(*self._taps, return_exceptions=True)

    # Inbound ------------------------------------------------------------------

    def deep_link(self, payload: str = "") -> str:
        return f"https://t.me/{self.username}" + (f"?start={payload}" if payload else "")

    def translate(self, update: dict[str, Any]) -> Inbound | None:
        """An update, as the Bot API's JSON, as an Inbound; None when there is nothing to answer.

        Read straight from the JSON: building PTB's `Update` objects for every answer was
        a tenth of the bot's CPU, and we read six fields of it. Anything malformed or
        missing is treated as nothing to answer.
        """
        key = f"{CHANNEL}:{update.get('update_id')}"
        query = _dict(update.get("callback_query"))
        if query:
            message, sender = _dict(query.get("message")), _dict(query.get("from"))
            chat = _dict(message.get("chat"))
            data = query.get("data")
            callback = decode_callback(data) if isinstance(data, str) else None
            person, place = _id(sender.get("id")), _id(chat.get("id"))
            if callback is None or data == NOOP or person is None or place is None:
                return None
            if chat.get("type") != ChatType.PRIVATE:
                return None
            return Inbound(
                CHANNEL,
                person,
                place,
                tap=Tap(callback.step, callback.value),
                tap_run=callback.run or None,
                key=key,
                language=_text(sender.get("language_code")),
                # The message's number within this chat: it names no one (the chat is
                # the address, sealed), so it is kept in the outbox as it is.
                message_ref=_id(message.get("message_id")),
                ref_in_chat=True,
            )
        edited = "message" not in update
        message = _dict(update.get("message") or update.get("edited_message"))
        user, chat = _dict(message.get("from")), _dict(message.get("chat"))
        person, place = _id(user.get("id")), _id(chat.get("id"))
        if person is None or place is None or user.get("is_bot"):
            return None
        text = _text(message.get("text"))
        common: dict[str, Any] = {
            "key": key,
            "language": _text(user.get("language_code")),
            "link": self.deep_link(),  # for join links and QR codes (/qr)
        }
        if chat.get("type") != ChatType.PRIVATE:
            if edited:
                return None  # an edited /next must not open another question
            text = text or ""
            mention = re.match(r"^/\w+@(\w+)", text)
            if mention and self.username and mention.group(1).lower() != self.username.lower():
                return None  # a command for another bot in the group
            mentioned = bool(self.username) and f"@{self.username}".lower() in text.lower()
            if not (text.startswith("/") or mentioned):
                return None  # ordinary group talk is none of the bot's business
            # A private chat's id is the person's id.
            return Inbound(CHANNEL, person, place, text, group=True, private=person, **common)
        if edited:
            return Inbound(CHANNEL, person, place, kind="edited", **common)
        if text is None:
            return Inbound(CHANNEL, person, place, kind="unsupported", **common)
        return Inbound(CHANNEL, person, place, text, **common)

    async def process(self, update: dict[str, Any]) -> str | None:
        """Handle one update (its turn committed on return); the id of the tap it carried,
        if any, for the caller to answer: nothing reaches Telegram before the commit."""
        inbound = self.translate(update)
        if inbound is not None:
            await self.handle(inbound)
        query = _dict(update.get("callback_query"))
        return str(query["id"]) if "id" in query else None

    async def _answer_tap(self, query_id: str) -> None:
        """Stop a tapped button's spinner (polling: a call of its own, after the commit)."""
        try:
            await self._call("answerCallbackQuery", callback_query_id=query_id)
        except TelegramError as error:
            log.info("could not answer a button tap: %s", error)

    async def poll(self) -> None:
        """Long polling until cancelled."""
        await self.bot.delete_webhook()
        offset: int | None = None
        failures = 0
        while True:
            try:
                offset = await self.poll_once(offset)
                failures = 0
            except (NetworkError, TimedOut) as error:
                failures += 1
                delay = min(2**failures, 60)
                log.warning("polling failed (%s); trying again in %ss", error, delay)
                await asyncio.sleep(delay)
                continue
            except RetryAfter as error:
                await asyncio.sleep(_seconds(error))
            except HeldBack as held:
                offset = held.offset
                failures += 1
                delay = min(2**failures, 60)
                log.warning("storage failed; asking Telegram again in %ss", delay)
                await asyncio.sleep(delay)

    async def poll_once(self, offset: int | None) -> int | None:
        """Fetch and handle one batch of updates; return the next offset.

        Raises HeldBack if storage failed: that update (and those after it) stay with
        Telegram, to be fetched again from the offset it carries.
        """
        updates = await self.bot.get_updates(
            offset=offset, timeout=self.poll_timeout, allowed_updates=ALLOWED_UPDATES
        )
        for update in updates:
            try:
                tapped = await self.process(update.to_dict())
                if tapped is not None:
                    # Off the path of the next update: its loss only costs a spinner.
                    task = asyncio.create_task(self._answer_tap(tapped))
                    self._taps.add(task)
                    task.add_done_callback(self._taps.discard)
            except NotStored as error:
                log.exception("could not store an update; it will be fetched again")
                raise HeldBack(update.update_id) from error
            except Exception:
                # One update that can't be handled must not stop everyone else's.
                log.exception("an update could not be handled")
            offset = update.update_id + 1
        return offset

    # Webhook ------------------------------------------------------------------

    async def set_webhook(self, url: str, secret_token: str) -> None:
        await self.bot.set_webhook(url, secret_token=secret_token, allowed_updates=ALLOWED_UPDATES)

    def webhook_handler(
        self, secret_token: str
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        expected = secret_token.encode()

        async def handler(request: web.Request) -> web.Response:
            given = request.headers.get(SECRET_HEADER, "").encode()
            if not hmac.compare_digest(given, expected):
                return web.Response(status=403)
            try:
                update = parse_update(request.content_type, await read_body(request))
            except RequestRefused as error:
                return refuse(request, error)  # not an update: nothing to retry
            # Handled before answering: if storage fails, Telegram retries the same update,
            # and its update_id makes the retry harmless.
            try:
                async with asyncio.timeout(WEBHOOK_DEADLINE):
                    tapped = await self.process(update)
            except TimeoutError:
                log.error("an update took over %ss; Telegram will send it again", WEBHOOK_DEADLINE)
                return web.Response(status=503)
            except NotStored:
                log.exception("could not store an update; Telegram will send it again")
                return web.Response(status=503)
            except Exception:
                # A bug with this one update: retrying would fail the same way forever.
                log.exception("an update could not be handled")
                return web.Response(status=200)
            if tapped is not None:
                # The tap is answered in the reply to this very call, after the commit:
                # one outbound request fewer per tap. Telegram never says whether it
                # worked, which is fine for a spinner that stops by itself; anything a
                # person must receive goes through the outbox instead.
                return web.json_response(
                    {"method": "answerCallbackQuery", "callback_query_id": tapped}
                )
            return web.Response(status=200)

        return handler

    # Outbound -----------------------------------------------------------------

    async def send(self, address: str, message: Outbound) -> base.SendResult:
        chat_id = int(address)
        wait = await self._reserve(chat_id)
        if wait is not None:
            return wait
        if message.mark is not None and message.sent_pieces == 0:
            # The tapped question's mark first, then the message itself, on one send slot:
            # Telegram's limits count messages sent, and a slot apiece could leave the
            # message waiting behind its own mark again at every retry. Whatever stops the
            # mark (a wait, a failure, a blocked bot) stops the row, which is sent again
            # whole: a mark made twice is "not modified", which counts as sent.
            marked = await self._deliver(chat_id, message.mark)
            if isinstance(marked, base.Dropped):
                log.info("a tapped question could not be marked: %s", marked.reason)
            elif not isinstance(marked, base.Sent):
                return marked
        return await self._deliver(chat_id, message)

    async def _reserve(self, chat_id: int) -> base.RetryAfter | None:
        """A send slot for one message to this chat, under the bot's limits."""
        return await base.reserve(self.limits, str(chat_id), chat_id < 0, self.clock())

    async def _deliver(self, chat_id: int, message: Outbound) -> base.SendResult:
        """The Bot API calls that show one message, and what their answer means."""
        pieces = base.Pieces(message.sent_pieces)  # of a long message, those that went
        try:
            if message.edit is not None and message.markup is not None:
                await self._call(
                    "editMessageText", chat_id=chat_id, message_id=int(message.edit),
                    text=message.markup["html"][:MAX_TEXT], parse_mode=ParseMode.HTML,
                    reply_markup=keyboard(message), link_preview_options=NO_PREVIEW,
                )  # fmt: skip
                return base.Sent()
            if message.document is not None:
                await self.bot.send_document(
                    chat_id, InputFile(message.document.encode(), filename="my-data.json"),
                    caption=html.escape(message.text)[:1024], parse_mode=ParseMode.HTML,
                )  # fmt: skip
                return base.Sent()
            if message.qr is not None:
                await self.bot.send_photo(
                    chat_id, qr_png(message.qr), caption=html.escape(message.text)[:1024],
                    parse_mode=ParseMode.HTML,
                )  # fmt: skip
                return base.Sent()
            if message.edit is not None:
                markup = (
                    answered_keyboard(message.text)
                    if message.input == "answered"
                    else keyboard(message)
                )
                await self._call(
                    "editMessageReplyMarkup", chat_id=chat_id, message_id=int(message.edit),
                    reply_markup=markup,
                )  # fmt: skip
                return base.Sent()
            texts = split_text(message.markup["html"]) if message.markup else render_pieces(message)

            async def piece(index: int) -> object:
                last = index == len(texts) - 1
                return await self._call(
                    "sendMessage", chat_id=chat_id, text=texts[index], parse_mode=ParseMode.HTML,
                    reply_markup=keyboard(message) if last else None,
                    link_preview_options=NO_PREVIEW,
                )  # fmt: skip

            wait = await pieces.send(len(texts), piece, lambda: self._reserve(chat_id))
            if wait is not None:
                return wait
        except RetryAfter as error:
            return base.RetryAfter(_seconds(error), sent_pieces=pieces.sent)
        except Forbidden:
            return base.Unreachable()
        except ChatMigrated:
            # A group that became a supergroup has a new id; this one takes nothing more.
            return base.Unreachable()
        except BadRequest as error:
            if "not modified" in str(error).lower():
                return base.Sent()
            return base.Dropped(str(error))
        except (TimedOut, NetworkError) as error:
            return base.Failed(str(error), sent_pieces=pieces.sent)
        return base.Sent()

    async def _call(self, method: str, **fields: object) -> object:
        """A Bot API call with the fields that are set; see `AiohttpRequest.post_json`."""
        request = self.bot.request
        assert isinstance(request, AiohttpRequest), "make_bot gives the bot an AiohttpRequest"
        given = {name: value for name, value in fields.items() if value is not None}
        return await request.post_json(f"{self.bot.base_url}/{method}", given)


def parse_update(content_type: str, body: bytes) -> dict[str, Any]:
    """A webhook body as an update (a JSON object with an update_id), or RequestRefused."""
    if content_type != "application/json":
        raise RequestRefused(415, "its content type is not JSON")
    try:
        update = json.loads(body)
    except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, or nested too deep
        raise RequestRefused(400, "its body is not JSON") from error
    if not isinstance(update, dict) or _id(update.get("update_id")) is None:
        raise RequestRefused(400, "it is not an update")
    return update


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _id(value: object) -> str | None:
    """A Telegram id (an integer) as text; None for anything else."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _seconds(error: RetryAfter) -> float:
    value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def qr_png(link: str) -> bytes:
    """The link as a QR code a room can scan off a projector or a phone held up."""
    buffer = io.BytesIO()
    segno.make(link, error="m").save(buffer, kind="png", scale=10, border=2)
    return buffer.getvalue()


def make_bot(
    token: str, api_url: str | None, connections: int = 64, read_timeout: float = 5.0
) -> Bot:
    """A Bot for `{api_url}/bot{token}/{method}`, able to send to many chats at once."""
    base_url = (api_url or DEFAULT_API_URL).rstrip("/")
    return Bot(
        token,
        base_url=f"{base_url}/bot",
        base_file_url=f"{base_url}/file/bot",
        request=AiohttpRequest(connections=connections, read_timeout=read_timeout),
        get_updates_request=AiohttpRequest(connections=1, read_timeout=60),
    )
