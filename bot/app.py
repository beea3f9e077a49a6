"""The composition root: the only module that builds every part and wires them together.

`kitchen-table` is its command line: run the bot, chat in the terminal, and
check, list or describe guides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from admin import guides as guide_admin
from bot.channels.base import Channel
from bot.channels.terminal import CHANNEL as TERMINAL
from bot.channels.terminal import TerminalChannel, chat
from bot.config import ConfigError, Settings, load_settings
from bot.delivery import Deliverer
from bot.dispatcher import Dispatcher
from bot.library import GuideLibrary, read_guide_file
from bot.locales import load_phrasebook
from bot.privacy import Identity, load_or_create_secret
from bot.web import make_web_app, start_web
from storage.sqlite import SQLiteStorage

log = logging.getLogger("kitchen_table")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Bot:
    settings: Settings
    storage: SQLiteStorage
    library: GuideLibrary
    dispatcher: Dispatcher
    deliverer: Deliverer


@contextlib.asynccontextmanager
async def build(settings: Settings, channels: dict[str, Channel]) -> AsyncIterator[Bot]:
    """Open storage and wire dispatcher and delivery for the given channels."""
    secret_value = settings.secret_key.get_secret_value() if settings.secret_key else None
    identity = Identity(load_or_create_secret(secret_value, settings.data_dir))
    storage = SQLiteStorage(settings.database_path)
    await storage.open()
    try:
        library = GuideLibrary.from_paths([settings.guides_dir])
        deliverer = Deliverer(storage, identity, channels, utc_now)
        dispatcher = Dispatcher(
            storage=storage,
            library=library,
            identity=identity,
            phrases=load_phrasebook(),
            clock=utc_now,
            max_answer_chars=settings.max_answer_chars,
            on_commit=deliverer.wake,
        )
        yield Bot(settings, storage, library, dispatcher, deliverer)
    finally:
        await storage.close()


async def _chat(settings: Settings, guide: str, name: str, language: str | None) -> int:
    async with build(settings, {TERMINAL: TerminalChannel()}) as bot:
        guide_id = guide
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
            print(
                f"There is no guide '{guide}' in {settings.guides_dir} (found: {known}).",
                file=sys.stderr,
            )
            return 1
        for problem in bot.library.problems:
            log.warning("skipped a guide with problems: %s", problem)
        # Anything owed from an earlier session is delivered first.
        await bot.deliverer.drain(TERMINAL)
        return await chat(bot.dispatcher, bot.deliverer, guide_id, name, language)


async def _run(settings: Settings) -> int:
    configured: list[str] = []
    if settings.telegram_bot_token is not None:
        configured.append("telegram")
    if not configured:
        print(
            "No chat platform is set up, so here is the terminal. To add Telegram, set\n"
            "TELEGRAM_BOT_TOKEN (from @BotFather); for Slack, see the README.",
            file=sys.stderr,
        )
        runner = None
        with contextlib.suppress(OSError):
            runner = await start_web(make_web_app(), settings.host, settings.port)
        try:
            return await _chat(settings, settings.default_guide, getpass.getuser(), None)
        finally:
            if runner is not None:
                await runner.cleanup()
    print("Telegram arrives with issue #3; set no token to use the terminal.", file=sys.stderr)
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kitchen-table",
        description="Conversation guides about work, answered without names.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start every configured channel (the terminal if none)")
    chat_cmd = commands.add_parser("chat", help="walk through a guide in the terminal")
    chat_cmd.add_argument("guide", help="a guide id, or the path to a YAML file")
    chat_cmd.add_argument("--as", dest="name", help="who is answering (default: your user name)")
    chat_cmd.add_argument("--lang", help="language to start in, e.g. es")
    guides = commands.add_parser("guides", help="check, list or describe guides")
    guide_commands = guides.add_subparsers(dest="guides_command", required=True)
    check_cmd = guide_commands.add_parser("check", help="check guides and explain any problem")
    check_cmd.add_argument("paths", nargs="*", type=Path, help="files or folders")
    list_cmd = guide_commands.add_parser("list", help="list the guides")
    list_cmd.add_argument("paths", nargs="*", type=Path)
    guide_commands.add_parser("schema", help="print the guides' JSON Schema")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"Kitchen Table can't start; please fix its configuration:\n{error}", file=sys.stderr)
        return 2
    if args.command == "guides":
        paths = getattr(args, "paths", None) or [settings.guides_dir]
        if args.guides_command == "check":
            return guide_admin.check(paths, sys.stdout)
        if args.guides_command == "list":
            return guide_admin.list_guides(paths, sys.stdout)
        sys.stdout.write(guide_admin.schema_text())
        return 0
    try:
        if args.command == "chat":
            name = args.name or getpass.getuser()
            return asyncio.run(_chat(settings, args.guide, name, args.lang))
        return asyncio.run(_run(settings))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
