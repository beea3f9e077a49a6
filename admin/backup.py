"""`kitchen-table backup` and `restore`: the operator's copy of the data, and the way back.

A backup holds everything people said, under pseudonyms, with the addresses the
bot replies to sealed by the secret key. It does not hold the secret key: a
backup that is stolen or lost then names nobody, and the secret is kept safe
apart from it (the README's "Backups" says where). So a restore checks that the
secret this bot has opens the backup's addresses; with another secret nobody
could be replied to and everyone would get a new pseudonym.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from cryptography.fernet import InvalidToken

from bot.config import Settings
from bot.privacy import SECRET_FILE, Identity
from storage.sqlite import SQLiteStorage
from storage.sqlite.backup import BackupError, Contents, inspect
from storage.sqlite.backup import backup as copy_out
from storage.sqlite.backup import restore as copy_in


def _secret_place(settings: Settings) -> str:
    if settings.secret_key is not None:
        return "KT_SECRET_KEY (in the bot's environment or .env)"
    return str(settings.data_dir / SECRET_FILE)


def _secret(settings: Settings) -> bytes | None:
    """The secret this bot would use, without making one up if there is none yet."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode("utf-8")
    path = settings.data_dir / SECRET_FILE
    return path.read_bytes().strip() if path.is_file() else None


def _held(contents: Contents) -> str:
    people = "participant" if contents.participants == 1 else "participants"
    answers = "answer" if contents.answers == 1 else "answers"
    return (
        f"{contents.participants:,} {people} and {contents.answers:,} {answers} "
        f"(schema {contents.schema_version})"
    )


async def backup(settings: Settings, out_path: Path, force: bool, out: TextIO) -> int:
    try:
        contents = await copy_out(settings.database_path, out_path, force=force)
    except BackupError as error:
        out.write(f"{error}\n")
        return 1
    out.write(
        f"Backed up {_held(contents)} to {out_path}, readable by you only.\n"
        f"The secret key is not in it. It is in {_secret_place(settings)}: keep a copy "
        "somewhere safe, apart from the backups. A restore needs it, or nobody can be "
        "replied to and everyone gets a new pseudonym.\n"
    )
    return 0


async def restore(
    settings: Settings, backup_file: Path, force: bool, other_secret: bool, out: TextIO
) -> int:
    try:
        contents = await inspect(backup_file)
        if contents.sealed_address is not None and not other_secret:
            problem = _secret_problem(settings, contents.sealed_address)
            if problem:
                out.write(problem)
                return 1
        _, erased = await copy_in(backup_file, settings.database_path, force=force)
    except BackupError as error:
        out.write(f"{error}\n")
        return 1
    forgotten = await _forget_again(settings.database_path, erased)
    out.write(f"Restored {_held(contents)} from {backup_file} to {settings.database_path}.\n")
    if forgotten:
        people = "person" if forgotten == 1 else "people"
        out.write(
            f"Erased again: {forgotten:,} {people} who asked to be forgotten after this "
            "backup was made.\n"
        )
    out.write("Start the bot again.\n")
    return 0


async def _forget_again(database: Path, erased: list[tuple[str, str]]) -> int:
    """Erase from the restored data everyone the replaced database had forgotten.

    An erasure is a promise: restoring a backup from before it must not bring the
    person back. The tombstones of the database that was replaced say who they are.
    """
    if not erased:
        return 0
    storage = SQLiteStorage(database)
    await storage.open()
    try:
        again = 0
        for pseudonym, at in erased:
            if await storage.tombstone(pseudonym) is None:
                await storage.forget(pseudonym, datetime.fromisoformat(at))
                again += 1
        return again
    finally:
        await storage.close()


def _secret_problem(settings: Settings, sealed: bytes) -> str | None:
    """Why this bot's secret can't open the backup's addresses, or None if it can."""
    consequence = (
        "To restore it anyway (answers and exports are whole, but nobody can be replied "
        "to and everyone gets a new pseudonym), add --other-secret.\n"
    )
    secret = _secret(settings)
    if secret is None:
        return (
            "There is no secret key here, and this backup's addresses were sealed with one. "
            f"Put the secret key you kept in {settings.data_dir / SECRET_FILE} (or set "
            f"KT_SECRET_KEY), then restore again. {consequence}"
        )
    try:
        Identity(secret).unseal(sealed)
    except InvalidToken:
        return (
            f"The secret key in {_secret_place(settings)} is not the one this backup was "
            f"made with. Put back the secret key you kept with it, then restore again. "
            f"{consequence}"
        )
    return None


async def command(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    """`kitchen-table backup` or `restore`, as parsed by bot.app."""
    if settings.postgres_url is not None:
        # PostgreSQL has its own tools, which know its files and its log; ours knows SQLite.
        out.write(
            f"kitchen-table {args.command} copies a SQLite database; this bot uses "
            "PostgreSQL (KT_DATABASE_URL). Use pg_dump and pg_restore (the README's "
            '"Running at scale" says how), and keep the secret key apart from the copy.\n'
        )
        return 2
    if args.command == "backup":
        return await backup(settings, args.out, args.force, out)
    return await restore(settings, args.file, args.force, args.other_secret, out)


def add_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Declare `backup` and `restore` on the command line (`command` adds a subcommand)."""
    save = command("backup", "copy the database to a file, safely while the bot runs")
    save.add_argument("--out", type=Path, required=True, metavar="FILE",
                      help="the backup to write (created readable by you only)")  # fmt: skip
    save.add_argument("--force", action="store_true", help="replace FILE if it exists")
    back = command("restore", "put a backup in place of the database (stop the bot first)")
    back.add_argument("file", type=Path, metavar="FILE", help="a file made by `backup`")
    back.add_argument("--force", action="store_true",
                      help="replace the database that is there")  # fmt: skip
    back.add_argument("--other-secret", action="store_true",
                      help="restore even though this bot's secret key can't open the backup's "
                      "addresses: nobody can be replied to, everyone gets a new pseudonym")  # fmt: skip
