"""Running on PostgreSQL, as an operator does it: `db upgrade` and `db status`, a bot that
refuses a schema behind its version or another secret key, `db copy` from SQLite, and
erasure that leaves a forgotten person's words in neither `pg_dump` nor the server's
files. Each test has a database of its own (tests/pg.py)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from bot.app import database
from storage.postgres import PostgresStorage
from storage.rows import AnswerRow, Commit, OutboxRow, ParticipantRow, RunRow
from storage.sqlite import SQLiteStorage
from tests.conftest import ROOT
from tests.pg import drop_databases, fresh_database

pytestmark = pytest.mark.postgres

SECRET = "operations-test-secret-0123456789"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    yield await fresh_database()
    await drop_databases()


def kitchen_table(url: str, data: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "SLACK_"))}
    environment.pop("TELEGRAM_BOT_TOKEN", None)
    environment.update(
        {"KT_DATABASE_URL": url, "KT_DATA_DIR": str(data), "KT_SECRET_KEY": SECRET,
         "KT_GUIDES_DIR": str(ROOT / "guides"), **env}
    )  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "bot", *argv], env=environment, cwd=ROOT,
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


async def test_db_upgrade_makes_the_schema_and_run_refuses_one_behind(url: str, tmp_path: Path):
    status = kitchen_table(url, tmp_path, "db", "status")
    assert status.returncode == 1
    assert "behind: run `kitchen-table db upgrade`" in status.stdout

    upgrade = kitchen_table(url, tmp_path, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert "upgraded the schema from version 0 to" in upgrade.stdout
    assert "up to date" in kitchen_table(url, tmp_path, "db", "status").stdout
    again = kitchen_table(url, tmp_path, "db", "upgrade")
    assert "up to date" in again.stdout

    # A database whose schema is behind this version's (as after installing a newer bot).
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "DELETE FROM schema_version WHERE version = (SELECT max(version) FROM schema_version)"
        )
    finally:
        await connection.close()
    refused = kitchen_table(url, tmp_path, "cohort", "list")
    assert refused.returncode == 2
    assert "run `kitchen-table db upgrade`" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "PASSWORD" not in refused.stderr


async def test_an_instance_with_another_secret_key_refuses_to_start(url: str, tmp_path: Path):
    first = kitchen_table(url, tmp_path / "a", "cohort", "add", "riverside")
    assert first.returncode == 0, first.stderr
    other = kitchen_table(
        url, tmp_path / "b", "cohort", "list", KT_SECRET_KEY="a-different-secret-987654321"
    )
    assert other.returncode == 2
    assert "written with another secret key" in other.stderr
    same = kitchen_table(url, tmp_path / "c", "cohort", "list")
    assert same.returncode == 0 and "riverside" in same.stdout


async def test_workers_need_postgresql_and_webhooks(url: str, tmp_path: Path):
    on_sqlite = kitchen_table("", tmp_path, "run", "--workers", "2", TELEGRAM_BOT_TOKEN="1:a")
    assert on_sqlite.returncode == 2
    assert "need a database they can share" in on_sqlite.stderr
    polling = kitchen_table(url, tmp_path, "run", "--workers", "2", TELEGRAM_BOT_TOKEN="1:a")
    assert polling.returncode == 2
    assert "only one process may fetch Telegram's updates by polling" in polling.stderr


def _commits(people: int) -> list[Commit]:
    commits = []
    for n in range(people):
        person, run = f"{n:032x}", f"run-{n}"
        commits.append(
            Commit(
                inbound_key=f"key-{n}",
                participant=ParticipantRow(person, "telegram", b"sealed", "es", run),
                runs=[
                    RunRow(run, person, "weekly-checkin", 1, "h", "active", '{"s": 1}', NOW, NOW)
                ],
                answers=[
                    AnswerRow(run, "week", person, "weekly-checkin", 1, "scale", str(n % 5), NOW),
                    AnswerRow(
                        run,
                        "story",
                        person,
                        "weekly-checkin",
                        1,
                        "text",
                        f"Turnos dobles, ñandú {n} 'quotes'\n",
                        NOW + timedelta(seconds=n),
                    ),
                ],
                outbox=[OutboxRow("telegram", person, b"sealed", '{"text": "hi"}', NOW)],
            )
        )
    return commits


async def test_db_copy_moves_every_row_from_sqlite_and_checks_it(url: str, tmp_path: Path):
    source = tmp_path / "kitchen-table.db"
    sqlite = SQLiteStorage(source)
    await sqlite.open()
    try:
        assert all(await sqlite.commit_many(_commits(30)))
        await sqlite.put_record("role", "someone", b"\x00coordinator")
    finally:
        await sqlite.close()

    copied = kitchen_table(
        url, tmp_path, "db", "copy", "--from", f"sqlite:///{source}", "--to", url
    )
    assert copied.returncode == 0, copied.stdout + copied.stderr
    assert "count and digest match on both sides" in copied.stdout
    assert "answers" in copied.stdout and "60 rows" in copied.stdout

    postgres = PostgresStorage(url, pool_size=2)
    await postgres.open()
    try:
        person = await postgres.participant(f"{7:032x}")
        assert person is not None and person.language == "es"
        answers = {a.step: a.value for a in await postgres.answers("run-7")}
        assert answers == {"week": "2", "story": "Turnos dobles, ñandú 7 'quotes'\n"}
        assert await postgres.record("role", "someone", NOW) == b"\x00coordinator"
        assert await postgres.inbound_seen("key-7")
        # The copy carries on where SQLite stopped: a new answer is a new row.
        assert await postgres.commit(Commit(inbound_key="key-new"))
    finally:
        await postgres.close()

    twice = kitchen_table(url, tmp_path, "db", "copy", "--from", f"sqlite:///{source}", "--to", url)
    assert twice.returncode == 1
    assert "Nothing was copied" in twice.stdout and "already holds" in twice.stdout


async def _data_directory(url: str) -> Path | None:
    connection = await asyncpg.connect(url)
    try:
        folder = Path(await connection.fetchval("SHOW data_directory"))
    except asyncpg.InsufficientPrivilegeError:
        return None
    finally:
        await connection.close()
    return folder if os.access(folder / "base", os.R_OK | os.X_OK) else None


def _files_holding(folder: Path, marker: bytes) -> list[str]:
    found = subprocess.run(
        ["grep", "-rlaF", marker.decode(), str(folder)], capture_output=True, text=True
    )
    return [line.removeprefix(f"{folder}/") for line in found.stdout.splitlines()]


async def test_after_forget_neither_pg_dump_nor_the_servers_files_hold_their_words(
    url: str, tmp_path: Path
):
    marker = f"MARK{secrets.token_hex(8)}"
    # A long answer (stored apart, TOAST) that doesn't compress, and a short one.
    filler = " ".join(secrets.token_hex(16) for _ in range(80))
    long_answer = f"{filler} {marker}_LONG {filler}"
    store = PostgresStorage(url, pool_size=2)
    await store.open()
    try:
        commits = _commits(200)
        person, run = f"{3:032x}", "run-3"
        commits[3].answers.append(
            AnswerRow(run, "more", person, "weekly-checkin", 1, "text", long_answer, NOW)
        )
        commits[3].answers.append(
            AnswerRow(run, "why", person, "weekly-checkin", 1, "text", f"{marker}_SHORT", NOW)
        )
        assert all(await store.commit_many(commits))
        async with store.pool.acquire() as connection:
            await connection.execute("ANALYZE; CHECKPOINT")
        folder = await _data_directory(url)
        if folder is None:
            pytest.skip("the server's data directory can't be read here (run as root or postgres)")
        if not _files_holding(folder, marker.encode()):
            pytest.skip("grep can't see the words in the server's files before erasure either")

        await store.forget(person, NOW)
        lines = await database.maintain(store)
        assert any("rewrote answers" in line for line in lines), lines
        assert any("cycled the write-ahead log" in line for line in lines), lines
        again = await database.maintain(store)
        assert again == ["nothing was erased or blanked since the last round: nothing to clear"]
        others = await store.answers("run-4")
        assert {a.step for a in others} == {"week", "story"}  # nobody else lost a word
    finally:
        await store.close()

    pg_dump = shutil.which("pg_dump")
    assert pg_dump is not None, "pg_dump is needed (Debian: postgresql-client)"
    dumped = await asyncio.create_subprocess_exec(pg_dump, url, stdout=subprocess.PIPE)
    dump = (await dumped.communicate())[0].decode()
    assert "Turnos dobles, ñandú 4" in dump  # the dump is real
    assert marker not in dump
    assert _files_holding(folder, marker.encode()) == []


async def test_old_text_blanked_by_retention_is_cleared_from_the_files_too(url: str):
    """Retention's blanking leaves the old values in dead rows and the log, as a delete
    does: erasure's next round rewrites the files after it, as after /forget."""
    store = PostgresStorage(url, pool_size=2)
    await store.open()
    try:
        assert all(await store.commit_many(_commits(3)))
        await database.maintain(store, at_once=True)
        assert await database.maintain(store) == [
            "nothing was erased or blanked since the last round: nothing to clear"
        ]
        assert await store.expire_texts(["text"], NOW + timedelta(days=1)) == 3
        lines = await database.maintain(store)
        assert any("rewrote answers" in line for line in lines), lines
        assert await store.expire_texts(["text"], NOW + timedelta(days=1)) == 0
        assert (await database.maintain(store))[0].startswith("nothing was erased")
    finally:
        await store.close()


async def test_healthz_says_when_the_database_is_away(url: str, tmp_path: Path):
    store = PostgresStorage(url, pool_size=2)
    await store.open()
    try:
        assert await database.reachable(store)
    finally:
        await store.close()
    gone = PostgresStorage(url.rsplit("/", 1)[0] + "/kt_no_such_database", pool_size=1)
    assert not await asyncio.wait_for(database.reachable(gone), 10)


async def test_only_one_instance_may_poll_telegram(url: str, tmp_path: Path):
    from tests.fake_telegram import FakeTelegram
    from tests.test_telegram_process import free_port, start_bot, stop_bot

    fake = FakeTelegram()
    await fake.start()
    try:
        first = await start_bot(fake, tmp_path / "a", KT_PORT=str(free_port()), KT_DATABASE_URL=url)
        try:
            await fake.wait_until(lambda: fake.calls_to("getUpdates"), 30)
            second = await start_bot(
                fake, tmp_path / "b", KT_PORT=str(free_port()), KT_DATABASE_URL=url
            )
            assert await asyncio.wait_for(second.wait(), 60) == 2
            assert second.stderr is not None
            said = (await second.stderr.read()).decode()
            assert "another instance on this database already fetches" in said
            assert "KT_PUBLIC_URL" in said and "Traceback" not in said
            assert first.returncode is None  # the first polls on
        finally:
            await stop_bot(first)
    finally:
        await fake.stop()


async def test_workers_share_the_port_and_stop_together(url: str, tmp_path: Path):
    import aiohttp

    from bot.channels.telegram.channel import SECRET_HEADER, webhook_secrets
    from tests.fake_telegram import TOKEN, FakeTelegram
    from tests.test_telegram_process import free_port

    assert kitchen_table(url, tmp_path, "db", "upgrade").returncode == 0
    fake = FakeTelegram()
    await fake.start()
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "SLACK_"))}
    environment.update(
        {"TELEGRAM_BOT_TOKEN": TOKEN, "KT_TELEGRAM_API_URL": fake.url, "KT_DATABASE_URL": url,
         "KT_DATA_DIR": str(tmp_path), "KT_SECRET_KEY": SECRET, "KT_PORT": str(port),
         "KT_GUIDES_DIR": str(ROOT / "guides"), "KT_PUBLIC_URL": f"http://127.0.0.1:{port}",
         "KT_DB_POOL_SIZE": "3"}
    )  # fmt: skip
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--workers", "2", env=environment, cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await fake.wait_until(lambda: len(fake.calls_to("setWebhook")) == 2, 60)
        path, token = webhook_secrets(SECRET.encode())
        async with aiohttp.ClientSession() as session:
            for chat in range(300, 320):
                update = fake.message_update(chat, "/start weekly-checkin")
                async with session.post(
                    f"http://127.0.0.1:{port}/telegram/{path}", json=update,
                    headers={SECRET_HEADER: token},
                ) as reply:  # fmt: skip
                    assert reply.status == 200
        for chat in range(300, 320):
            await fake.wait_until(
                lambda c=chat: any("Is that all right" in t for t in fake.texts(c))
            )
    finally:
        supervisor.terminate()
        code = await asyncio.wait_for(supervisor.wait(), 60)
        await fake.stop()
    assert supervisor.stderr is not None
    said = (await supervisor.stderr.read()).decode()
    assert code == 0, said
    assert "started 2 workers sharing the port" in said


async def test_the_bot_clears_an_erasure_from_the_files_by_itself(url: str):
    """Soon after a /forget, without anyone running `db maintain`."""
    store = PostgresStorage(url, pool_size=2)
    await store.open()
    clearing = asyncio.create_task(database.keep_clearing(store, every=0.05))
    try:
        assert all(await store.commit_many(_commits(3)))
        await store.forget(f"{1:032x}", NOW)
        async with store.pool.acquire() as connection:
            for _ in range(400):  # up to 20 s
                cleared = await connection.fetchval(
                    "SELECT cleared_through FROM kt_maintenance"
                ) if await connection.fetchval(
                    "SELECT to_regclass('kt_maintenance') IS NOT NULL"
                ) else None  # fmt: skip
                if cleared == NOW:
                    break
                await asyncio.sleep(0.05)
            assert cleared == NOW
    finally:
        clearing.cancel()
        await asyncio.gather(clearing, return_exceptions=True)
        await store.close()
