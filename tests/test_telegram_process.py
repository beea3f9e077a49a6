"""`kitchen-table run` with a Telegram token: the real process, wired by the composition
root, talking to the fake Bot API over HTTP, by long polling and by webhook."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.channels.telegram.channel import SECRET_HEADER, webhook_secrets
from tests.conftest import ROOT
from tests.fake_telegram import TOKEN, FakeTelegram

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

SECRET = "process-test-secret-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_bot(fake: FakeTelegram, data: Path, **env: str) -> asyncio.subprocess.Process:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "SLACK_"))}
    environment.update(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "KT_TELEGRAM_API_URL": fake.url,
            "KT_DATA_DIR": str(data),
            "KT_GUIDES_DIR": str(ROOT / "guides"),
            "KT_SECRET_KEY": SECRET,
            **env,
        }
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=environment, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def stop_bot(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        code = await asyncio.wait_for(process.wait(), 20)
        assert process.stderr is not None
        assert code == 0, (await process.stderr.read()).decode()


async def test_run_polls_telegram_and_answers(fake: FakeTelegram, tmp_path: Path):
    bot = await start_bot(fake, tmp_path / "data", KT_PORT=str(free_port()))
    try:
        await fake.wait_until(lambda: fake.calls_to("deleteWebhook"))
        fake.queue(fake.message_update(11, "/start weekly-checkin"))
        await fake.wait_until(lambda: any("Is that all right" in t for t in fake.texts(11)))
        fake.queue(fake.message_update(11, "yes"))
        await fake.wait_until(lambda: any("How was your past week" in t for t in fake.texts(11)))
    finally:
        await stop_bot(bot)


async def test_run_serves_a_webhook(fake: FakeTelegram, tmp_path: Path):
    port = free_port()
    bot = await start_bot(
        fake, tmp_path / "data", KT_PORT=str(port), KT_PUBLIC_URL="https://kt.example"
    )
    path, token = webhook_secrets(SECRET.encode())
    try:
        await fake.wait_until(lambda: fake.calls_to("setWebhook"))
        hook = fake.calls_to("setWebhook")[0]
        assert hook["url"] == f"https://kt.example/telegram/{path}"
        assert hook["secret_token"] == token
        local = f"http://127.0.0.1:{port}/telegram/{path}"
        async with aiohttp.ClientSession() as session:
            update = fake.message_update(12, "/start weekly-checkin")
            async with session.post(local, json=update) as refused:
                assert refused.status == 403
            async with session.post(local, json=update, headers={SECRET_HEADER: token}) as ok:
                assert ok.status == 200
            await fake.wait_until(lambda: any("Is that all right" in t for t in fake.texts(12)))
            async with session.get(f"http://127.0.0.1:{port}/healthz") as health:
                assert (await health.json())["status"] == "ok"
    finally:
        await stop_bot(bot)


async def test_invite_prints_a_deep_link_when_telegram_is_set_up(
    fake: FakeTelegram, tmp_path: Path
):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "SLACK_"))}
    environment.update(TELEGRAM_BOT_TOKEN=TOKEN, KT_TELEGRAM_API_URL=fake.url,
                       KT_DATA_DIR=str(tmp_path / "data"), KT_SECRET_KEY=SECRET)  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "invite", "facilitator", env=environment, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert "https://t.me/KitchenTableBot?start=redeem-" in out.decode()
