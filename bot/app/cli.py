"""The composition root: the only module that builds every part and wires them together.

`kitchen-table` is its command line: run the bot, chat in the terminal, and
check, list or describe guides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import gc
import getpass
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from admin import backup, digests, schedules, sessions
from admin import guides as guide_admin
from bot import operator_log
from bot.app import database, themes_cli, workers
from bot.app.build import House, build_house, command_menu
from bot.app.chat import chat
from bot.app.usage import UsageError
from bot.channels.terminal.channel import CHANNEL as TERMINAL
from bot.channels.terminal.channel import TerminalChannel
from bot.config import ConfigError, Settings, load_settings
from bot.conversation.dispatcher import Dispatcher
from bot.delivery.deliverer import Deliverer
from bot.delivery.ratelimit import RateLimits
from bot.features.digests import remove_kept_pages
from bot.features.roles import Roles, admin_pseudonyms, normal_code
from bot.flows.duration import parse_duration, parse_since
from bot.library import GuideLibrary, read_guide_file
from bot.locales import load_phrasebook
from bot.privacy import Identity, load_or_create_secret
from bot.reports import exports
from bot.reports.render import Reports
from bot.scheduling.scheduler import Scheduler, run_every
from storage.protocol import STORAGE_FAILURES, Storage
from storage.schema import NotOurs, SchemaBehind

# Starting a platform while the network is down: try again after 1 s, then 2, 4 ... 60.
RETRY_FIRST = 1.0
RETRY_LONGEST = 60.0
# What Slack answers when the app-level token itself is wrong: no retry will help.
SLACK_REFUSALS = {"invalid_auth", "not_authed", "not_allowed_token_type", "account_inactive",
                  "token_revoked", "token_expired"}  # fmt: skip
# What the app may do in a workspace; slack-manifest.yaml asks for the same.
SLACK_SCOPES = ["chat:write", "chat:write.public", "commands", "im:history", "im:read", "im:write"]
# Who runs `kitchen-table session ...` on this machine: an admin, like anyone who can
# read the data folder and its secret.
OPERATOR = "operator"

# The platforms' libraries (Telegram, Slack, the web server) are imported by the
# commands that serve them, not here: every other command (`chat`, `guides check`,
# `export`...) starts in a third of the time without them.
if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    from bot.channels.slack.channel import SlackChannel
    from bot.channels.telegram.channel import TelegramChannel

log = logging.getLogger("kitchen_table")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Bot:
    settings: Settings
    secret: bytes
    identity: Identity
    storage: Storage
    library: GuideLibrary
    dispatcher: Dispatcher
    deliverer: Deliverer
    house: House
    clock: Callable[[], datetime] = utc_now
    shared: database.Shared | None = None  # on PostgreSQL: what instances decide together


async def _warn_of_missing_cohorts(storage: Storage, library: GuideLibrary) -> None:
    """A guide that offers to keep in touch through a cohort that doesn't exist offers
    nothing: say so at start, with the command that fixes it."""
    for loaded in library.all():
        guide = loaded.guide
        if guide is None or guide.keep_in_touch is None:
            continue
        if await storage.cohort(guide.keep_in_touch) is None:
            log.warning(
                "the guide '%s' offers to keep in touch through the cohort '%s', which "
                "does not exist: nobody is offered it until you run "
                ".venv/bin/kitchen-table cohort add %s",
                guide.id, guide.keep_in_touch, guide.keep_in_touch,
            )  # fmt: skip


class DataFolderError(Exception):
    """The data folder can't be written (read-only, full, or not a folder): nothing can be kept."""

    def __init__(self, folder: Path, error: Exception) -> None:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        super().__init__(
            f"it can't write to its data folder {folder} ({reason}). Give it a folder it can "
            "write to with KT_DATA_DIR (or free some space), then start it again."
        )


def _unwritable(error: Exception) -> bool:
    """Whether an error opening storage means the folder can't be written to (only then
    is "give it a folder it can write to" the right advice)."""
    if isinstance(error, OSError):
        return error.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC,
                               errno.ENOTDIR, errno.EDQUOT)  # fmt: skip
    text = str(error).lower()
    return any(words in text for words in ("readonly", "unable to open", "disk is full"))


@contextlib.asynccontextmanager
async def build(settings: Settings, clock: Callable[[], datetime] = utc_now) -> AsyncIterator[Bot]:
    """Open storage and wire the dispatcher and delivery; channels are added by the caller."""
    if not settings.guides_dir.is_dir():  # before anything is created in the data folder
        raise ConfigError(missing_guides(settings.guides_dir))
    secret_value = settings.secret_key.get_secret_value() if settings.secret_key else None
    storage = database.make_storage(settings)
    try:
        secret = load_or_create_secret(secret_value, settings.data_dir)
        await storage.open()
    except (SchemaBehind, NotOurs) as error:
        raise ConfigError(f"{database.where(settings)}: {error}") from None
    except STORAGE_FAILURES as error:
        if settings.postgres_url is not None or not _unwritable(error):
            raise  # another problem (a locked or damaged database): shown as it is
        raise DataFolderError(settings.data_dir, error) from error
    identity = Identity(secret)
    shared = None
    try:
        await database.check_secret(storage, secret, clock())
        shared = await database.share(storage, settings, secret)
        library = GuideLibrary.from_paths([settings.guides_dir])
        for problem in library.problems:
            log.warning("skipped a guide with problems: %s", problem)
        deliverer = Deliverer(storage, identity, {}, clock)
        admins = admin_pseudonyms(identity, settings.admins)
        admins.add(identity.pseudonym(TERMINAL, OPERATOR))
        phrases = load_phrasebook(settings.min_group)
        house = build_house(
            storage=storage,
            library=library,
            identity=identity,
            phrases=phrases,
            clock=clock,
            max_answer_chars=settings.max_answer_chars,
            on_commit=deliverer.wake,
            roles=Roles(storage, admins, clock),
            reports=Reports(phrases, settings.templates_dir),
            min_group=settings.min_group,
            default_tz=settings.timezone,
            locks=shared.locks if shared else None,
            console_url=settings.console_url if settings.console_enabled else None,
        )
        yield Bot(settings, secret, identity, storage, library, house.dispatcher, deliverer,
                  house, clock, shared)  # fmt: skip
    finally:
        if shared is not None:
            await shared.close()
        await storage.close()


def missing_guides(folder: Path) -> str:
    return (
        f"KT_GUIDES_DIR: there is no folder {folder} (run from the folder that holds guides/, "
        "or set KT_GUIDES_DIR to where your guides are)"
    )


async def _chat(
    settings: Settings,
    guide: str,
    name: str,
    language: str | None,
    join: str | None = None,
    setting: str | None = None,
    intro: str | None = None,
) -> int:
    """Walk `name` through a guide in the terminal. `setting` names where the guide's id
    came from (KT_DEFAULT_GUIDE), so an unknown one is a configuration error; `intro` is
    printed once the guide is known to exist."""
    async with build(settings) as bot:
        await _warn_of_missing_cohorts(bot.storage, bot.library)
        bot.deliverer.channels[TERMINAL] = TerminalChannel(
            only=name, phrases=bot.dispatcher.phrases
        )
        guide_id = guide
        if join is not None:
            await bot.deliverer.drain(TERMINAL)
            return await chat(bot.dispatcher, bot.deliverer, f"/join {join}", name, language)
        if guide.endswith((".yaml", ".yml")) or "/" in guide:
            loaded = read_guide_file(Path(guide))
            if loaded.guide is None:
                for problem in loaded.problems:
                    print(problem, file=sys.stderr)
                return 1
            bot.library.add(loaded)
            guide_id = loaded.guide.id
        elif bot.library.get(guide) is None:
            known = ", ".join(g.guide.id for g in bot.library.all() if g.guide) or "none"
            there = f"There is no guide '{guide}' in {settings.guides_dir} (found: {known})"
            if setting:
                raise ConfigError(f"{setting}: {there}")
            print(f"{there}.", file=sys.stderr)
            return 1
        found = bot.library.get(guide_id)
        if language and found is not None and found.guide is not None:
            offered = found.guide.languages
            if language not in offered and language.split("-")[0] not in offered:
                raise UsageError(
                    f"--lang {language}: the guide {guide_id} is written in "
                    f"{', '.join(offered)}; choose one of those"
                )
        if intro:
            print(intro, file=sys.stderr)
        # Anything owed from an earlier session is delivered first.
        await bot.deliverer.drain(TERMINAL)
        return await chat(bot.dispatcher, bot.deliverer, f"/start {guide_id}", name, language)


async def _serve(settings: Settings) -> int:
    """Run every configured platform channel until interrupted."""
    from bot.app.web import console_app, make_web_app, start_web
    from bot.channels.telegram.channel import (
        TelegramChannel,
        make_bot,
        telegram_limits,
        webhook_secrets,
    )

    async with build(settings) as bot:
        console = console_app(settings, bot.storage, bot.library, bot.house, bot.clock)
        web_app = make_web_app(functools.partial(database.reachable, bot.storage), console)
        kept = settings.data_dir / "digests"
        if removed := await asyncio.to_thread(remove_kept_pages, kept):
            # Earlier versions kept each digest sent as a page, quotes and all, on one
            # instance's disk; the console now makes them again from what is stored.
            log.info("Removed %d kept digest pages from %s", removed, kept)
        if console is not None:
            log.info("Console: %s (sign in: /console to the bot, or "
                     "`kitchen-table console link`)", settings.console_url)  # fmt: skip
        tasks: list[asyncio.Task[None]] = []
        stoppers = []
        webhooks: list[Callable[[], Awaitable[None]]] = []
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, stop.set)
        if settings.telegram_bot_token is not None:
            telegram = TelegramChannel(
                make_bot(settings.telegram_bot_token.get_secret_value(), settings.telegram_api_url),
                bot.dispatcher.handle,
                **send_limits(bot, "telegram", telegram_limits(
                    settings.telegram_max_per_second, settings.telegram_max_per_chat
                )),
                menu=command_menu(bot.house.router, bot.dispatcher.phrases),
            )  # fmt: skip
            if not await start_telegram(telegram, settings.telegram_api_url, stop):
                return 0  # stopped while Telegram could not be reached
            stoppers.append(telegram.stop)
            bot.deliverer.channels[telegram.name] = telegram
            if settings.public_url:
                path, token = webhook_secrets(bot.secret)
                web_app.router.add_post(f"/telegram/{path}", telegram.webhook_handler(token))
                url = f"{settings.public_url}/telegram/{path}"
                webhooks.append(functools.partial(telegram.set_webhook, url, token))
                log.info("Telegram: webhook at %s/telegram/…", settings.public_url)
            else:
                if bot.shared is not None:
                    lease = await bot.shared.leases.try_hold("telegram-polling")
                    if lease is None:
                        await telegram.stop()
                        raise ConfigError(ANOTHER_POLLS)
                    stoppers.append(lease.release)
                    tasks.append(asyncio.create_task(_stop_when_lost(lease.lost, stop)))
                tasks.append(asyncio.create_task(telegram.poll()))
                log.info("Telegram: long polling as @%s", telegram.username)
        if settings.slack_enabled:
            slack = make_slack(settings, bot)
            bot.deliverer.channels[slack.name] = slack
            if settings.slack_app_token is not None:
                from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

                socket = AsyncSocketModeHandler(
                    slack.app, settings.slack_app_token.get_secret_value()
                )
                stoppers.append(socket.close_async)
                if not await connect_socket_mode(socket, stop):
                    return 0
            else:
                slack.add_routes(web_app, oauth=settings.slack_oauth)
                log.info("Slack: events, commands and clicks at /slack/events")
        runner = await start_web(web_app, settings.host, settings.port, shared=workers.is_worker())
        # Only ask platforms to call us once we are listening.
        for register in webhooks:
            await register()
        tasks.append(asyncio.create_task(bot.deliverer.run()))
        tasks.append(asyncio.create_task(database.keep_clearing(bot.storage)))
        await _warn_of_missing_cohorts(bot.storage, bot.library)  # once serving, not before
        # Scheduled prompts and reminders: APScheduler ticks, our tables say what is due.
        scheduler = Scheduler(
            bot.storage, bot.dispatcher, bot.library, bot.clock,
            digest_cron=settings.digest_cron, timezone=settings.timezone,
            retention_days=settings.retention_days,
            digests=bot.house.digests, chores=[bot.house.gatherings.open_left_over],
        )  # fmt: skip
        ticker = run_every(scheduler)
        stoppers.append(functools.partial(_shutdown, ticker))
        settle_garbage_collector()
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for stopper in stoppers:
                await stopper()
            await runner.cleanup()
        return 0


ANOTHER_POLLS = (
    "TELEGRAM_BOT_TOKEN: another instance on this database already fetches Telegram's "
    "updates by long polling, and only one may. To run several, set KT_PUBLIC_URL so "
    "Telegram calls every instance's webhook (README: Running at scale)"
)


def send_limits(bot: Bot, channel: str, alone: RateLimits) -> dict[str, object]:
    """A channel's limits and the clock they are counted by: this process's own, or, on
    PostgreSQL, the database's for every instance together (counted in wall-clock time,
    which means the same on every machine)."""
    if bot.shared is None:
        return {"limits": alone}
    return {"limits": bot.shared.limits(channel, alone), "clock": time.time}


async def _stop_when_lost(lost: asyncio.Event, stop: asyncio.Event) -> None:
    """The polling lease went with its connection: another instance may poll now, so this
    one stops (its supervisor starts it again, as one that does not poll)."""
    await lost.wait()
    log.warning("lost the database's polling lease; stopping so only one instance polls")
    stop.set()


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` before trying again; True if the bot was told to stop meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def _reason(error: BaseException) -> str:
    """What went wrong, in a few words, never a URL (a Bot API URL holds the token)."""
    cause = error.__cause__ or error.__context__ or error
    text = str(cause) or type(cause).__name__
    text = text.split(" [", 1)[0]  # aiohttp repeats the socket error in brackets
    return text.removeprefix("aiohttp.").split("://", 1)[0][:120]


async def start_telegram(
    telegram: TelegramChannel, api_url: str | None, stop: asyncio.Event
) -> bool:
    """Ask Telegram who the bot is. A refused token stops the bot (ConfigError); a network
    that is down is tried again with backoff, one line each time, until it answers (True)
    or the bot is stopped (False)."""
    from telegram.error import InvalidToken, NetworkError, TimedOut

    where = api_url or "https://api.telegram.org"
    delay = RETRY_FIRST
    while True:
        try:
            await telegram.start()
            return True
        except InvalidToken:
            await telegram.stop()
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN: Telegram refused this token; copy it again from "
                "@BotFather (/mybots, then API Token)"
            ) from None
        except (NetworkError, TimedOut) as error:
            await telegram.stop()
            log.warning(
                "Telegram could not be reached at %s (%s); trying again in %s s",
                where, _reason(error), f"{delay:g}",
            )  # fmt: skip
        if await _wait_or_stop(stop, delay):
            return False
        delay = min(delay * 2, RETRY_LONGEST)


async def connect_socket_mode(socket: AsyncSocketModeHandler, stop: asyncio.Event) -> bool:
    """Open Slack's Socket Mode. A refused app token stops the bot; a network that is down
    is tried again with backoff, one line each time. Once connected, slack_sdk reconnects
    by itself (its traceback per attempt is cut to one line by bot.operator_log)."""
    import aiohttp
    from slack_sdk.errors import SlackApiError

    delay = RETRY_FIRST
    while True:
        try:
            socket.client.wss_uri = await socket.client.issue_new_wss_url()
            await socket.connect_async()
            log.info("Slack: Socket Mode")
            return True
        except SlackApiError as error:
            code = str(error.response.get("error", ""))
            if code in SLACK_REFUSALS:
                raise ConfigError(
                    f"SLACK_APP_TOKEN: Slack refused it ({code}); make an app-level token "
                    "with the connections:write scope on the app's Basic Information page"
                ) from None
            reason = code or "an error"
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            reason = _reason(error)
        log.warning("Slack could not be reached (%s); trying again in %s s", reason, f"{delay:g}")
        if await _wait_or_stop(stop, delay):
            return False
        delay = min(delay * 2, RETRY_LONGEST)


def settle_garbage_collector() -> None:
    """Tune CPython's garbage collector for a long-running server, once it has started.

    What startup built (modules, guides, templates) is never garbage, yet by default
    every full collection walks all of it again (about 100,000 objects), and a young
    collection runs every 700 new objects. Measured on the inbound benchmark: 1.1 s of
    collections per 6,000 answers, pauses up to 85 ms. Frozen, and with a young
    collection every 20,000 new objects: 0.1 s, longest pause 26 ms. Garbage in
    cycles then waits a little longer to be freed: a few megabytes at most.
    """
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(20_000, middle, oldest)


async def _shutdown(ticker: object) -> None:
    ticker.shutdown(wait=False)  # type: ignore[attr-defined]


def make_slack(settings: Settings, bot: Bot) -> SlackChannel:
    """The Slack app: one workspace with SLACK_BOT_TOKEN, or many installed by OAuth."""
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.channels.slack.channel import DEFAULT_API_URL as SLACK_API_URL
    from bot.channels.slack.channel import SlackChannel, slack_limits
    from bot.channels.slack.install import StoredInstallations, StoredStates

    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    signing = settings.slack_signing_secret
    if settings.slack_oauth and settings.slack_app_token is not None:
        raise ConfigError(
            "SLACK_APP_TOKEN: Socket Mode serves one workspace; for installs into several "
            "(SLACK_CLIENT_ID), use HTTP mode with KT_PUBLIC_URL"
        )
    if signing is None and settings.slack_app_token is None:
        raise ConfigError(
            "SLACK_SIGNING_SECRET: needed to check that requests come from Slack "
            "(or set SLACK_APP_TOKEN for Socket Mode)"
        )
    # No retries inside the client: the outbox retries, and honours Retry-After.
    client = AsyncWebClient(
        token=None if settings.slack_oauth else token,
        base_url=(settings.slack_api_url or SLACK_API_URL).rstrip("/") + "/",
        retry_handlers=[],
    )
    installations = StoredInstallations(bot.storage, bot.identity, bot.clock)
    options: dict[str, object] = {}
    if settings.slack_oauth:
        assert settings.slack_client_secret is not None
        options["oauth_settings"] = AsyncOAuthSettings(
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret.get_secret_value(),
            scopes=SLACK_SCOPES,
            installation_store=installations,
            installation_store_bot_only=True,
            state_store=StoredStates(bot.storage, bot.clock),
            redirect_uri=f"{settings.public_url}/slack/oauth_redirect"
            if settings.public_url
            else None,
        )

        async def token_for(team: str) -> str | None:
            return await installations.bot_token(team)
    else:

        async def token_for(team: str) -> str | None:
            return token

    app = AsyncApp(
        client=client,
        signing_secret=signing.get_secret_value() if signing else "",
        # Listeners finish (the answer stored) before Slack gets its 200.
        process_before_response=True,
        request_verification_enabled=signing is not None,
        **options,  # type: ignore[arg-type]
    )
    return SlackChannel(
        app, client, bot.dispatcher.handle, bot.dispatcher.home, token_for,
        command=settings.slack_command,
        commands=bot.house.router.names(), room_commands=bot.house.router.room_commands(),
        apology=lambda language: bot.dispatcher.phrases.text(language or "en", "storage_error"),
        **send_limits(bot, "slack", slack_limits()),  # type: ignore[arg-type]
        signing_secret=signing.get_secret_value() if signing else None,
    )  # fmt: skip


async def _run(settings: Settings) -> int:
    if settings.telegram_bot_token is not None or settings.slack_enabled:
        return await _serve(settings)
    if settings.console_enabled:  # the console (and /healthz) until stopped; `chat` for a guide
        log.info("No chat platform is set up: serving the console until stopped")
        return await _serve(settings)
    intro = (
        "No chat platform is set up, so here is the terminal. To add Telegram, set\n"
        "TELEGRAM_BOT_TOKEN (from @BotFather); for Slack, SLACK_BOT_TOKEN (see the README)."
    )
    from bot.app.web import make_web_app, start_web

    runner = None
    with contextlib.suppress(OSError):
        runner = await start_web(make_web_app(), settings.host, settings.port)
    try:
        return await _chat(
            settings, settings.default_guide, getpass.getuser(), None,
            setting="KT_DEFAULT_GUIDE", intro=intro,
        )  # fmt: skip
    finally:
        if runner is not None:
            await runner.cleanup()


async def _telegram_link(settings: Settings) -> str | None:
    """https://t.me/<the bot>: from TELEGRAM_BOT_USERNAME, or by asking Telegram when a
    token is set; None when neither works (the code alone still does)."""
    if settings.telegram_bot_username:
        return f"https://t.me/{settings.telegram_bot_username}"
    if settings.telegram_bot_token is None:
        return None
    from telegram.error import InvalidToken

    from bot.channels.telegram.channel import make_bot

    bot = make_bot(settings.telegram_bot_token.get_secret_value(), settings.telegram_api_url)
    try:
        async with bot:
            return f"https://t.me/{bot.username}"
    except InvalidToken:
        log.warning("Telegram refused TELEGRAM_BOT_TOKEN, so there is no link, only the code")
    except Exception as error:  # offline: the code alone still works
        log.warning("could not ask Telegram for the bot's name (%s); set "
                    "TELEGRAM_BOT_USERNAME to make links offline", _reason(error))  # fmt: skip
    return None


async def _export(bot: Bot, args: argparse.Namespace, out: TextIO) -> int:
    loaded = bot.library.get(args.guide)
    if loaded is None or loaded.guide is None:
        out.write(f"There is no guide {args.guide}. See `kitchen-table guides list`.\n")
        return 2
    guide = loaded.guide
    since = _moment("--since", args.since, bot.clock())
    until = _moment("--until", args.until, bot.clock())
    tty = sys.stderr.isatty()

    def progress(count: int) -> None:
        if tty:
            sys.stderr.write(f"\rExported {count:,} answers")
            sys.stderr.flush()

    rows = exports.answers(
        bot.storage, guide, since=since, until=until, include_sensitive=args.include_sensitive,
        min_group=args.min_group, by_run=args.wide, progress=progress,
    )  # fmt: skip
    if args.format == "floip" and args.out is None:
        # A package is a folder of files: made where the operator says, never by surprise.
        raise UsageError(
            f"--format floip writes a folder: name it with --out, e.g. --out {guide.id}-floip"
        )
    if args.format == "floip":
        folder = args.out
        count = await exports.write_floip(
            rows, guide, folder, bot.clock(), include_sensitive=args.include_sensitive,
            public=args.min_group is not None,
        )  # fmt: skip
        target = str(folder)
    else:
        handle = args.out.open("w", newline="", encoding="utf-8") if args.out else sys.stdout
        try:
            if args.format == "jsonl":
                count = await exports.write_jsonl(rows, handle)
            elif args.wide:
                count = await exports.write_wide_csv(
                    rows, guide, handle, args.include_sensitive, args.min_group is not None
                )
            else:
                count = await exports.write_csv(rows, handle)
        finally:
            if args.out:
                handle.close()
        target = str(args.out) if args.out else "standard output"
    if tty:
        sys.stderr.write("\n")
    print(f"Exported {count:,} {'runs' if args.wide else 'answers'} to {target}.", file=sys.stderr)
    return 0


def _moment(option: str, text: str | None, now: datetime) -> datetime | None:
    """A --since or --until value: a date, or a duration back from now (7d)."""
    if text is None:
        return None
    try:
        return parse_since(text, now)
    except ValueError as error:
        raise UsageError(f"{option}: {error}") from None


async def _forget(bot: Bot, pseudonym: str, out: TextIO) -> int:
    """An admin acting on an erasure request received some other way."""
    if len(pseudonym) != 32 or await bot.storage.participant(pseudonym) is None:
        if await bot.storage.tombstone(pseudonym) is not None:
            out.write("That participant was already forgotten.\n")
            return 0
        out.write("No participant has that pseudonym (32 characters, as in exports).\n")
        return 1
    await bot.storage.forget(pseudonym, bot.clock())
    out.write(f"Erased everything kept about {pseudonym}; only a tombstone remains.\n")
    return 0


async def _console_link(bot: Bot, language: str, out: TextIO) -> int:
    """A one-time sign-in link to the console for whoever runs this: an admin."""
    if bot.house.console is None:
        raise ConfigError("the console is off: set KT_CONSOLE=1 (or KT_PUBLIC_URL) to turn it on")
    link = await bot.house.console.issue(bot.identity.pseudonym(TERMINAL, OPERATOR), language)
    out.write(f"{link}\nIt signs you in once, as an admin, within 10 minutes.\n")
    return 0


async def _admin(settings: Settings, args: argparse.Namespace) -> int:
    """`session`, `invite` and `roles`: the facilitator's and coordinator's side."""
    async with build(settings) as bot:
        out = sys.stdout
        if args.command == "invite":
            try:
                lasts = parse_duration(args.expires)
            except ValueError as error:
                raise UsageError(f"--expires: {error}") from None
            link = await _telegram_link(settings)
            return await sessions.invite(bot.house.roles, args.role, lasts, link, out)
        if args.command == "export":
            return await _export(bot, args, out)
        if args.command == "forget":
            return await _forget(bot, args.participant, out)
        if args.command == "themes":
            return await themes_cli.run(bot.storage, bot.library, bot.house.reports, args,
                                        now=bot.clock(), min_group=settings.min_group, out=out)  # fmt: skip
        if args.command == "digest":
            return await digests.digest(
                bot.storage, bot.library, bot.house.reports,
                since=bot.clock() - (_moment("--since", args.since, bot.clock()) or bot.clock()),
                now=bot.clock(), guide=args.guide, fmt=args.format, min_group=settings.min_group,
                out_path=args.out, out=out,
            )  # fmt: skip
        if args.command == "cohort":
            if args.cohort_command == "add":
                return await schedules.add_cohort(bot.storage, args.name, bot.clock(), out)
            return await schedules.list_cohorts(bot.storage, out)
        if args.command == "schedule":
            action = args.schedule_command
            if action == "add":
                return await schedules.add_schedule(
                    bot.storage, bot.library, guide=args.guide, cohort=args.cohort,
                    cron=args.cron, tz=args.tz or settings.timezone, now=bot.clock(), out=out,
                )  # fmt: skip
            if action == "list":
                return await schedules.list_schedules(bot.storage, out, bot.clock())
            return await schedules.change_schedule(bot.storage, args.id, action, bot.clock(), out)
        if args.command == "console":
            return await _console_link(bot, args.lang, out)
        if args.command == "roles":
            if args.roles_command == "list":
                return await sessions.list_roles(bot.house.roles, out)
            return await sessions.revoke(bot.house.roles, args.pseudonym, out)
        action = args.session_command
        if action == "qr":
            gathering = await bot.storage.gathering_by_code(normal_code(args.code))
            if gathering is None:
                out.write(f"There is no gathering with the code {args.code}. "
                          f"See `{sessions.CLI} status`.\n")  # fmt: skip
                return 1
            link = args.link
            if link is None:
                bot_link = await _telegram_link(settings)
                link = f"{bot_link}?start=join-{gathering.code}" if bot_link else None
            if link is None:
                link = f"/join {gathering.code}"
                log.warning("no link for the QR code, only '%s': set TELEGRAM_BOT_USERNAME (or "
                            "TELEGRAM_BOT_TOKEN), or give --link", link)  # fmt: skip
            return sessions.save_qr(link, args.out, gathering, out)
        words = [args.code] if getattr(args, "code", None) else []
        if action == "launch":
            words = [args.guide, *args.title, *(["--paced"] if args.paced else [])]
        elif action == "close" and args.share:
            words.append("--share")
        text = f"/{action} " + " ".join(shlex.quote(w) for w in words)
        return await sessions.command(bot.dispatcher, bot.deliverer, OPERATOR, text.strip(), out)


EPILOG = (
    "Settings come from the environment or a .env file: see `kitchen-table run --help`. "
    "Everything else is in README.md."
)


def _settings_help() -> str:
    """Every setting, from the Settings model itself, for `run --help`."""
    lines = ["settings (environment variables, or lines of a .env file):"]
    for name, field in Settings.model_fields.items():
        env = field.validation_alias if isinstance(field.validation_alias, str) else None
        env = env or f"KT_{name.upper()}"
        default = "" if field.default in (None, "") else f" (default {field.default})"
        lines.append(f"  {env:<28} {field.description or ''}{default}")
    lines.append("")
    lines.append("Invalid values stop the bot at start with a line naming the setting. "
                 "Everything else is in README.md.")  # fmt: skip
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kitchen-table",
        description="Conversation guides about work, answered without names.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, about: str, **options: object) -> argparse.ArgumentParser:
        options.setdefault("epilog", EPILOG)
        return commands.add_parser(name, help=about, description=about,
                                   **options)  # type: ignore[arg-type]  # fmt: skip

    run = command("run", "start every configured channel (the terminal if none)",
                  epilog=_settings_help(),
                  formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="run N processes sharing the port, for a machine with more cores "
                     "(PostgreSQL and webhooks only)")  # fmt: skip
    chat_cmd = command("chat", "walk through a guide in the terminal")
    chat_cmd.add_argument("guide", nargs="?", help="a guide id, or the path to a YAML file")
    chat_cmd.add_argument("--join", metavar="CODE", help="join a gathering by its code instead")
    chat_cmd.add_argument("--as", dest="name", metavar="NAME",
                          help="who is answering (default: your user name)")  # fmt: skip
    chat_cmd.add_argument("--lang", metavar="CODE",
                          help="language to start in, one the guide has, e.g. es")  # fmt: skip
    session = command("session", "run a facilitated gathering from here")
    session_commands = session.add_subparsers(dest="session_command", required=True,
                                              metavar="ACTION")  # fmt: skip
    launch = session_commands.add_parser("launch", help="open a gathering; prints its join code")
    launch.add_argument("guide", help="the guide's id, from `kitchen-table guides list`")
    launch.add_argument("title", nargs="*", help="what to call it (default: the guide's title)")
    launch.add_argument("--paced", action="store_true", help="open one question at a time")
    for name, about in (("status", "who joined, answered, finished"),
                        ("next", "paced: open the next question for everyone"),
                        ("close", "stop new answers and print the summary"),
                        ("summary", "print a gathering's summary")):  # fmt: skip
        sub = session_commands.add_parser(name, help=about, description=about)
        sub.add_argument("code", nargs="?", help="its join code (default: your latest)")
        if name == "close":
            sub.add_argument("--share", action="store_true", help="also post it to the room")
    qr = session_commands.add_parser(
        "qr", help="save a printable QR code of a gathering's join link",
        description="Save a QR code that opens the gathering in Telegram (when the bot's "
        "username is known: TELEGRAM_BOT_USERNAME, or asked of Telegram with the token). "
        "An .svg has the gathering's name and code under it.",
    )  # fmt: skip
    qr.add_argument("code", help="the gathering's join code")
    qr.add_argument("--out", type=Path, required=True, metavar="FILE",
                    help="where to save it: a .svg (with a caption) or a .png")  # fmt: skip
    qr.add_argument(
        "--link", help="the link to encode instead, e.g. https://t.me/YourBot?start=join-CODE"
    )
    cohort = command("cohort", "groups that opt in to scheduled check-ins")
    cohort_commands = cohort.add_subparsers(dest="cohort_command", required=True, metavar="ACTION")
    cohort_add = cohort_commands.add_parser("add", help="create a cohort; prints its join code")
    cohort_add.add_argument("name", help="lowercase letters, digits and dashes, e.g. riverside")
    cohort_commands.add_parser("list", help="every cohort and its join code")
    schedule = command("schedule", "send a guide to a cohort on a schedule")
    schedule_commands = schedule.add_subparsers(dest="schedule_command", required=True,
                                                metavar="ACTION")  # fmt: skip
    schedule_add = schedule_commands.add_parser("add", help="add a schedule")
    schedule_add.add_argument("--guide", required=True, help="the guide's id")
    schedule_add.add_argument("--cohort", required=True, help="who gets it (`cohort list`)")
    schedule_add.add_argument("--cron", required=True, help='five fields: "0 9 * * MON"')
    schedule_add.add_argument("--tz", help="IANA time zone (default KT_TIMEZONE)")
    schedule_commands.add_parser("list", help="every schedule, and when each sends next")
    for name in ("pause", "resume", "remove"):
        action_cmd = schedule_commands.add_parser(name, help=f"{name} a schedule")
        action_cmd.add_argument("id", help="its id, from `schedule list`")
    export = command("export", "a guide's answers as open data")
    export.add_argument("--guide", required=True, help="the guide's id")
    export.add_argument("--format", choices=["csv", "jsonl", "floip"], default="csv",
                        help="csv (default), jsonl, or a floip Flow Results package")  # fmt: skip
    export.add_argument("--since", help="from this date (2026-01-31) or this long ago (7d)")
    export.add_argument("--until", help="up to (not including) this date, or this long ago")
    export.add_argument("--out", type=Path, metavar="FILE",
                        help="a file (a folder for floip); default: standard output")  # fmt: skip
    export.add_argument("--wide", action="store_true", help="csv: one row per run")
    export.add_argument("--include-sensitive", action="store_true",
                        help="include steps marked sensitive (not for public release)")  # fmt: skip
    export.add_argument("--min-group", type=int, default=None, metavar="N",
                        help="drop choices fewer than N people made")  # fmt: skip
    backup.add_commands(command)
    database.add_commands(command)
    forget = command("forget", "erase everything kept about a participant")
    forget.add_argument("--participant", required=True, help="the pseudonym (from an export)")
    themes_cli.add_parser(command("themes", themes_cli.ABOUT))
    digest = command("digest", "what people said lately, per guide")
    digest.add_argument("--since", default="7d",
                        help="this long ago (7d, the default) or from this date (2026-01-31)")  # fmt: skip
    digest.add_argument("--guide", help="only this guide")
    digest.add_argument("--format", choices=["text", "md", "html"], default="text",
                        help="text (default), Markdown or an HTML page")  # fmt: skip
    digest.add_argument("--out", type=Path, metavar="FILE",
                        help="write it to this file (default: standard output)")  # fmt: skip
    invite = command("invite", "a one-time code that grants a role")
    invite.add_argument("role", choices=["facilitator", "coordinator"], help="the role it grants")
    invite.add_argument("--expires", default="7d", metavar="DURATION",
                        help="how long it works, up to 365d (default 7d)")  # fmt: skip
    console = command("console", "the coordinators' web console")
    console_commands = console.add_subparsers(dest="console_command", required=True,
                                              metavar="ACTION")  # fmt: skip
    console_link = console_commands.add_parser(
        "link", help="print a one-time sign-in link for an admin (10 minutes)"
    )
    console_link.add_argument("--lang", default="en", choices=["en", "es"],
                              help="the console's language (default en)")  # fmt: skip
    roles = command("roles", "list or revoke facilitators and coordinators")
    roles_commands = roles.add_subparsers(dest="roles_command", required=True, metavar="ACTION")
    roles_commands.add_parser("list", help="who holds a role (by pseudonym)")
    revoke = roles_commands.add_parser("revoke", help="take a role back")
    revoke.add_argument("pseudonym", help="the start of a pseudonym from `roles list`")
    guides = command("guides", "check or list guides, or print their schema")
    guide_commands = guides.add_subparsers(dest="guides_command", required=True, metavar="ACTION")
    check_cmd = guide_commands.add_parser("check", help="check guides and explain any problem")
    check_cmd.add_argument("paths", nargs="*", type=Path,
                           help="files or folders (default: KT_GUIDES_DIR)")  # fmt: skip
    list_cmd = guide_commands.add_parser("list", help="list the guides")
    list_cmd.add_argument("paths", nargs="*", type=Path,
                          help="files or folders (default: KT_GUIDES_DIR)")  # fmt: skip
    guide_commands.add_parser("schema", help="print the guides' JSON Schema")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kitchen-table")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def _guides(args: argparse.Namespace, settings: Settings) -> int:
    paths = getattr(args, "paths", None) or []
    if args.guides_command == "schema":
        sys.stdout.write(guide_admin.schema_text())
        return 0
    if not paths and not settings.guides_dir.is_dir():
        raise ConfigError(missing_guides(settings.guides_dir))
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: there is no such file or folder")
    if args.guides_command == "check":
        return guide_admin.check(paths or [settings.guides_dir], sys.stdout)
    return guide_admin.list_guides(paths or [settings.guides_dir], sys.stdout)


def _check_workers(settings: Settings, count: int) -> None:
    """Several processes share one database and take updates from the port they share."""
    if not 1 <= count <= 64:
        raise UsageError("--workers: give a number from 1 to 64 (one per core is plenty)")
    if settings.postgres_url is None:
        raise ConfigError(
            "--workers: several processes need a database they can share; SQLite is one "
            "process's. Set KT_DATABASE_URL=postgresql://... (README: Running at scale)"
        )
    if settings.telegram_bot_token is not None and not settings.public_url:
        raise ConfigError(
            "--workers: only one process may fetch Telegram's updates by polling; set "
            "KT_PUBLIC_URL so Telegram calls the workers' webhook instead"
        )
    if settings.telegram_bot_token is None and not settings.slack_enabled:
        raise ConfigError(
            "--workers: no chat platform is set up, so there is nothing for workers to "
            "serve (set TELEGRAM_BOT_TOKEN or SLACK_BOT_TOKEN)"
        )


def _cannot_start(error: ConfigError) -> None:
    for line in str(error).splitlines():
        print(f"Kitchen Table can't start: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        operator_log.configure()
        _cannot_start(error)
        return 2
    secrets = [v.get_secret_value() for v in (settings.telegram_bot_token, settings.secret_key,
               settings.slack_bot_token, settings.slack_app_token, settings.slack_signing_secret,
               settings.slack_client_secret, settings.database_url) if v is not None]  # fmt: skip
    operator_log.configure(secrets)
    try:
        if args.command == "guides":
            return _guides(args, settings)
        if args.command == "chat":
            name = args.name or getpass.getuser()
            if args.guide is None and args.join is None:
                print("Name a guide, or give --join CODE.", file=sys.stderr)
                return 2
            return asyncio.run(_chat(settings, args.guide or "", name, args.lang, args.join))
        if args.command == "db":
            return asyncio.run(database.command(settings, args, sys.stdout))
        if args.command in ("backup", "restore"):
            return asyncio.run(backup.command(settings, args, sys.stdout))
        admin = ("session", "invite", "roles", "cohort", "schedule", "digest", "forget", "export",
                 "console", "themes")  # fmt: skip
        if args.command in admin:
            return asyncio.run(_admin(settings, args))
        if args.workers != 1:
            _check_workers(settings, args.workers)
            return asyncio.run(workers.supervise(args.workers, ["run"]))
        return asyncio.run(_run(settings))
    except ConfigError as error:
        _cannot_start(error)
        return 2
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except DataFolderError as error:
        print(f"Kitchen Table can't start: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kitchen-table export | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
