"""The Slack channel on slack-bolt's `AsyncApp`: events, commands and clicks in, Web API out.

Thin like the Telegram channel: it turns Slack payloads into `Inbound`s for the
dispatcher and `Outbound`s into `chat.postMessage` / `chat.update`, and keeps no
conversation state. Participants talk to the bot in their direct messages with
the app; a slash command works from anywhere and answers there.

People are told apart per workspace: the platform id is `TEAM:USER`, so the same
person in two workspaces has two unrelated pseudonyms.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.channels.http import WEBHOOK_DEADLINE, RequestRefused, read_body, refuse
from bot.channels.slack.format import (
    ACTION_PREFIX,
    BUTTON,
    CHECKBOX,
    CONTROL,
    SUBMIT,
    answered_blocks,
    blocks,
    decode,
    menu_blocks,
    plain_text,
    posts,
)
from bot.delivery import channel as base
from bot.delivery.ratelimit import RateLimits, SendLimits
from bot.flows.events import DONE_VALUE, Tap
from bot.messages import Inbound, NotStored, Outbound

log = logging.getLogger(__name__)

CHANNEL = "slack"
DEFAULT_API_URL = "https://slack.com/api/"
DEFAULT_COMMAND = "/kitchen-table"
# Errors that mean this person can't be written to, now or later.
UNREACHABLE = {"channel_not_found", "user_not_found", "is_archived", "account_inactive",
               "user_disabled", "cannot_dm_bot", "not_in_channel"}  # fmt: skip

# Errors that mean Slack refused the bot's own token (rotated, revoked, mistyped): the
# deployment's to put right, not anyone's to be written off for. Each message waits and
# is tried again, so what is owed goes once it is fixed; taken as "unreachable", one bad
# token dropped everyone's check-ins and what was queued for them (found by review).
TOKEN_REFUSED = {"invalid_auth", "not_authed", "token_revoked", "token_expired"}

Handler = Callable[[Inbound], Awaitable[object]]
HomeBuilder = Callable[[Inbound], Awaitable[list[Outbound]]]
TokenFinder = Callable[[str], Awaitable[str | None]]


def slack_limits() -> RateLimits:
    """Slack allows about one message a second per conversation (a short burst is fine)
    and, for chat.postMessage, several hundred a minute per workspace."""
    return RateLimits(overall=(10.0, 10.0), per_chat=(3.0, 1.0), per_group=(3.0, 1.0))


def subcommand(text: str, known: Collection[str]) -> str:
    """`/kitchen-table start weekly-checkin` -> `/start weekly-checkin`; empty -> `/guides`;
    a word the bot does not know -> `/help`. `known`: the router's command names."""
    words = text.strip().split(maxsplit=1)
    if not words:
        return "/guides"
    name = words[0].lower().lstrip("/")
    rest = words[1] if len(words) > 1 else ""
    if name not in known:
        return "/help"
    return f"/{name} {rest}".strip()


class SlackChannel:
    name = CHANNEL
    capabilities = base.Capabilities(edit=True, buttons=True, files=True, groups=True)

    def __init__(
        self,
        app: AsyncApp,
        client: AsyncWebClient,
        handle: Handler,
        home: HomeBuilder,
        token_for: TokenFinder,
        *,
        apology: Callable[[str | None], str] = lambda language: "",
        command: str = DEFAULT_COMMAND,
        commands: Collection[str] = (),
        room_commands: Collection[str] = (),
        limits: SendLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        signing_secret: str | None = None,
    ) -> None:
        self.app = app
        # Requests to /slack/events are checked against it before Bolt sees them.
        self.verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self.client = client
        self.handle = handle
        self.home = home
        self.token_for = token_for
        self.apology = apology
        self.command = command
        # What `/kitchen-table WORD` may be, and which are answered in a channel to the
        # room: both from the router's declarations, handed over by the composition root.
        self.commands = frozenset(commands)
        self.room_commands = frozenset(room_commands)
        self.limits = limits or slack_limits()
        self.clock = clock
        self.deadline = WEBHOOK_DEADLINE  # seconds a request may take before a 503
        app.command(command)(self._on_command)
        app.event("message")(self._on_message)
        app.event("app_home_opened")(self._on_home)
        app.action(re.compile("^" + re.escape(ACTION_PREFIX)))(self._on_action)

    # Serving ------------------------------------------------------------------

    def add_routes(self, web_app: web.Application, oauth: bool) -> None:
        web_app.router.add_post("/slack/events", self._http)
        if oauth:
            web_app.router.add_get("/slack/install", self._install)
            web_app.router.add_get("/slack/oauth_redirect", self._oauth_redirect)

    async def _http(self, request: web.Request) -> web.Response:
        # The signature and the 5-minute timestamp window are checked (401 otherwise)
        # before the body is even parsed; Bolt checks them again before any listener.
        try:
            bolt_request = await self._checked(request)
        except RequestRefused as error:
            return refuse(request, error)
        try:
            async with asyncio.timeout(self.deadline):
                response = await self.app.async_dispatch(bolt_request)
        except TimeoutError:
            # Slack itself gives up after 3 s and sends an event again (its event_id makes
            # that harmless); what matters is that the stuck turn is cancelled, and with
            # it the hold on the person's later messages.
            log.error("a Slack request took over %ss; Slack will send it again", self.deadline)
            return web.Response(status=503)
        return await to_aiohttp_response(response)

    async def _checked(self, request: web.Request) -> AsyncBoltRequest:
        """The request for Bolt, or RequestRefused: Bolt parses the body before it checks the
        signature, and answers 500 to whatever it can't parse (a timestamp that is not
        a number, a body that is not JSON or nested too deep, a list for a payload)."""
        body = await read_body(request)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RequestRefused(400, "its body is not UTF-8") from error
        if self.verifier is not None:
            timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
            signature = request.headers.get("X-Slack-Signature", "")
            if not re.fullmatch(r"[0-9]{1,15}", timestamp):
                raise RequestRefused(401, "its timestamp is missing or not a number")
            if not self.verifier.is_valid(text, timestamp, signature):
                raise RequestRefused(401, "its signature is wrong or too old")
        return slack_request(request.content_type, text, request.query_string, request.headers)

    async def _install(self, request: web.Request) -> web.Response:
        assert self.app.oauth_flow is not None
        response = await self.app.oauth_flow.handle_installation(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    async def _oauth_redirect(self, request: web.Request) -> web.Response:
        assert self.app.oauth_flow is not None
        response = await self.app.oauth_flow.handle_callback(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    # Inbound ------------------------------------------------------------------

    async def _on_command(self, ack: Any, command: dict[str, Any]) -> None:
        team, user = command.get("team_id", ""), command.get("user_id", "")
        channel = str(command.get("channel_id") or "")
        text = subcommand(plain_text(command.get("text", "")), self.commands)
        # A facilitator's command in a channel speaks to the room; everything else is
        # answered in the person's direct messages with the app, wherever it was typed.
        in_room = (
            bool(channel)
            and not channel.startswith("D")
            and text.split()[0][1:] in self.room_commands
        )
        inbound = Inbound(
            CHANNEL,
            f"{team}:{user}",
            f"{team}:{channel}" if in_room else f"{team}:{user}",
            text,
            key=f"{CHANNEL}:cmd:{command['trigger_id']}" if command.get("trigger_id") else None,
            group=in_room,
            private=f"{team}:{user}" if in_room else None,
        )
        try:
            await self.handle(inbound)
        except NotStored:
            # Nothing was kept (a commit is all or nothing): say so, only to them.
            log.exception("could not store a Slack command")
            await ack(text=self.apology(None))
            return
        await ack()

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("channel_type") != "im" or event.get("bot_id"):
            return
        subtype = event.get("subtype")
        if subtype == "message_changed":
            changed = event.get("message", {})
            if not changed.get("edited"):
                return  # Slack adding a link preview, not the person editing
            event = {**changed, "channel": event.get("channel")}
            kind = "edited"
        elif subtype in ("file_share",):
            kind = "unsupported"
        elif subtype is None:
            kind = "text"
        else:
            return  # joins, deletions, bot messages: nothing to answer
        user = event.get("user")
        if not user or event.get("bot_id"):
            return
        team = body.get("team_id") or event.get("team", "")
        text = plain_text(event.get("text") or "") if kind == "text" else None
        await self.handle(
            Inbound(
                CHANNEL,
                f"{team}:{user}",
                f"{team}:{user}",
                text,
                key=f"{CHANNEL}:{body.get('event_id') or event.get('ts')}",
                kind=kind,
            )
        )

    async def _on_action(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        # Acknowledged once the click's turn is committed (or found to be nothing), like
        # a command: Slack hears nothing from the bot before the commit.
        try:
            await self._act(body, action)
        finally:
            await ack()

    async def _act(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        action_id = str(action.get("action_id", ""))
        if action_id.startswith(CHECKBOX):
            return  # ticks are read from the message's state when Submit is clicked
        user = body.get("user", {})
        team = (body.get("team") or {}).get("id") or user.get("team_id", "")
        who = f"{team}:{user.get('id', '')}"
        container = body.get("container", {})
        ref = None
        if container.get("type") == "message":
            # chat.update needs the DM's channel id, not the user id we send to: this
            # reference names a conversation, so it is not `ref_in_chat` and stays sealed.
            ref = f"{container.get('channel_id')} {container.get('message_ts')}"
        key = f"{CHANNEL}:act:{who}:{action.get('action_ts', '')}"
        decoded = decode(str(action.get("value", "")))
        if decoded is None:
            return
        if action_id.startswith(CONTROL):
            control = Inbound(CHANNEL, who, who, f"/{decoded.value}", key=key,
                              tap_run=decoded.run or None, control_step=decoded.step)  # fmt: skip
            await self.handle(control)
            return
        picked: tuple[str, ...] | None = None
        if action_id == SUBMIT:
            picked = tuple(_ticked(body))
            decoded_value = DONE_VALUE
        elif action_id.startswith(BUTTON):
            decoded_value = decoded.value
        else:
            return
        await self.handle(
            Inbound(
                CHANNEL,
                who,
                who,
                tap=Tap(decoded.step, decoded_value),
                tap_run=decoded.run or None,
                key=key,
                message_ref=ref,
                picked=picked,
            )
        )

    async def _on_home(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        team = body.get("team_id", "")
        user = event.get("user", "")
        token = await self.token_for(team)
        if token is None:
            return
        sections = await self.home(Inbound(CHANNEL, f"{team}:{user}", f"{team}:{user}"))
        view = {"type": "home", "blocks": menu_blocks(sections)}
        try:
            await self.client.views_publish(token=token, user_id=user, view=view)
        except SlackApiError as error:
            log.info("could not publish the App Home: %s", error.response.get("error"))

    # Outbound -----------------------------------------------------------------

    async def send(self, address: str, message: Outbound) -> base.SendResult:
        team, _, user = address.partition(":")

        async def reserve() -> base.RetryAfter | None:
            return await base.reserve(self.limits, address, False, self.clock())

        wait = await reserve()
        if wait is not None:
            return wait
        token = await self.token_for(team)
        if token is None:
            return base.Unreachable()  # the workspace uninstalled the app
        pieces = base.Pieces(message.sent_pieces)  # of a long message, those that went
        try:
            if message.edit is not None:
                channel, _, ts = message.edit.partition(" ")
                render = answered_blocks if message.input == "answered" else blocks
                text, rendered = render(message, self.command)
                # A message changed in place is one post (a question, a status): its first.
                await self.client.chat_update(
                    token=token, channel=channel, ts=ts, text=text, blocks=posts(rendered)[0]
                )
                return base.Sent()
            text, rendered = blocks(message, self.command)
            # A long report (or /mydata, inlined) is posted as several messages; the
            # notification's text goes with the first.
            parts = posts(rendered)

            async def piece(index: int) -> object:
                # Posting to a user id writes in the app's direct messages with them.
                return await self.client.chat_postMessage(
                    token=token, channel=user, text=text if index == 0 else _first_text(parts[index]),
                    blocks=parts[index], unfurl_links=False,
                )  # fmt: skip

            wait = await pieces.send(len(parts), piece, reserve)
            if wait is not None:
                return wait
        except SlackApiError as error:
            return _result(error, pieces.sent)
        except Exception as error:  # a network failure: try again later
            return base.Failed(f"{type(error).__name__}: {error}", pieces.sent)
        return base.Sent()


def slack_request(
    content_type: str, body: str, query: str, headers: Mapping[str, str]
) -> AsyncBoltRequest:
    """A signed request's body as Bolt reads it, or RequestRefused if Slack could not have
    sent it: Slack sends JSON (events) or a form (commands, clicks in `payload`)."""
    if content_type not in ("application/json", "application/x-www-form-urlencoded"):
        raise RequestRefused(415, "its content type is neither JSON nor a form")
    try:
        payload = parse_body(body, content_type)
        if not isinstance(payload, dict):
            raise RequestRefused(400, "its payload is not an object")
        # Bolt reads the team, user and channel out of the payload as it builds this.
        return AsyncBoltRequest(body=body, query=query, headers=dict(headers))
    except (ValueError, RecursionError, TypeError, AttributeError) as error:
        raise RequestRefused(400, "its body is not what Slack sends") from error


def _ticked(body: dict[str, Any]) -> list[str]:
    """The values of every ticked checkbox in the clicked message, in order."""
    values: list[str] = []
    for block in (body.get("state") or {}).get("values", {}).values():
        for action_id, element in block.items():
            if not str(action_id).startswith(CHECKBOX):
                continue
            for option in element.get("selected_options") or []:
                decoded = decode(str(option.get("value", "")))
                if decoded is not None:
                    values.append(decoded.value)
    return values


def _first_text(part: list[dict[str, Any]]) -> str:
    """A later post's notification text: the start of its first section."""
    for block in part:
        text = block.get("text")
        if isinstance(text, dict) and isinstance(text.get("text"), str):
            return str(text["text"])[:150]
    return " "


def _result(error: SlackApiError, sent_pieces: int = 0) -> base.SendResult:
    """What Slack's refusal means for the message (`sent_pieces`: of a message in
    several, how many went before it)."""
    response = error.response
    code = str(response.get("error", "")) if response is not None else ""
    status = response.status_code if response is not None else 0
    if status == 429 or code == "ratelimited":
        retry_after = response.headers.get("Retry-After", "1") if response is not None else "1"
        try:
            return base.RetryAfter(max(1.0, float(retry_after)), sent_pieces=sent_pieces)
        except ValueError:
            return base.RetryAfter(1.0, sent_pieces=sent_pieces)
    if code in UNREACHABLE:
        return base.Unreachable()
    if code in TOKEN_REFUSED:
        log.error(
            "Slack refused the bot's token (%s): check SLACK_BOT_TOKEN, or install the app"
            " in the workspace again; messages wait and are tried again",
            code,
        )
        return base.Failed(code, sent_pieces)
    if status >= 500 or code in ("internal_error", "fatal_error", "service_unavailable"):
        return base.Failed(code or str(status), sent_pieces)
    return base.Dropped(code or str(status))
