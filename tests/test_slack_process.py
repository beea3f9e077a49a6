"""`kitchen-table run` with Slack settings: the real process, in HTTP mode and in Socket
Mode, talking to the fake Slack Web API (and its Socket Mode websocket) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.conftest import ROOT
from tests.fake_slack import FakeSlack, signed_headers
from tests.test_telegram_process import free_port, stop_bot

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

SIGNING = "process-signing-secret"


async def start_bot(fake: FakeSlack, data: Path, **env: str) -> asyncio.subprocess.Process:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("KT_", "SLACK_", "TELEGRAM_"))
    }
    environment.update(
        {
            "SLACK_BOT_TOKEN": "xoxb-T1",
            "KT_SLACK_API_URL": fake.url,
            "KT_DATA_DIR": str(data),
            "KT_GUIDES_DIR": str(ROOT / "guides"),
            "KT_SECRET_KEY": "slack-process-secret-0123456789",
            **env,
        }
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=environment, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def command_form(text: str, trigger: str) -> dict[str, str]:
    return {
        "command": "/kitchen-table",
        "text": text,
        "team_id": "T1",
        "user_id": "U1",
        "channel_id": "DU1",
        "trigger_id": trigger,
    }


async def test_run_serves_slack_over_http(slack_api: FakeSlack, tmp_path: Path):
    port = free_port()
    bot = await start_bot(
        slack_api, tmp_path / "data", KT_PORT=str(port), SLACK_SIGNING_SECRET=SIGNING
    )
    try:
        body = urlencode(command_form("start weekly-checkin", "t1"))
        headers = signed_headers(body, SIGNING, "application/x-www-form-urlencoded")
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # until the process is listening
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as health:
                        if health.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            url = f"http://127.0.0.1:{port}/slack/events"
            async with session.post(url, data=body, headers=headers) as response:
                assert response.status == 200
        await slack_api.wait_until(
            lambda: any("Is that all right" in t for t in slack_api.texts("T1", "U1"))
        )
    finally:
        await stop_bot(bot)


async def test_run_serves_slack_by_socket_mode(slack_api: FakeSlack, tmp_path: Path):
    bot = await start_bot(
        slack_api, tmp_path / "data", KT_PORT=str(free_port()), SLACK_APP_TOKEN="xapp-1"
    )
    try:
        await slack_api.wait_until(lambda: slack_api.socket is not None)
        await slack_api.push("slash_commands", command_form("start weekly-checkin", "t2"), "e1")
        await slack_api.wait_until(lambda: "e1" in slack_api.acks)
        await slack_api.wait_until(
            lambda: any("Is that all right" in t for t in slack_api.texts("T1", "U1"))
        )
        event = {
            "type": "event_callback",
            "team_id": "T1",
            "event_id": "Ev1",
            "event": {
                "type": "message",
                "channel": "DU1",
                "channel_type": "im",
                "user": "U1",
                "text": "yes",
                "ts": "1767000000.000001",
            },
        }
        await slack_api.push("events_api", event, "e2")
        await slack_api.wait_until(
            lambda: any("How was your past week" in t for t in slack_api.texts("T1", "U1"))
        )
    finally:
        await stop_bot(bot)
