"""The console from the bot's machine: `kitchen-table console link`, and `kitchen-table run`
serving the console (and /healthz) when no chat platform is set; the settings that
turn it on and say where it is."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.config import Settings
from tests.conftest import ROOT
from tests.test_cli import kitchen_table
from tests.test_telegram_process import free_port

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py


def test_the_console_is_off_unless_turned_on_and_lives_under_the_public_address():
    assert not Settings(_env_file=None).console_enabled  # type: ignore[call-arg]
    on = Settings(_env_file=None, console=True, host="0.0.0.0", port=9000)  # type: ignore[call-arg]
    assert on.console_enabled and on.console_url == "http://0.0.0.0:9000/console"
    public = Settings(_env_file=None, public_url="https://kt.example/")  # type: ignore[call-arg]
    assert public.console_enabled and public.console_url == "https://kt.example/console"


def test_console_link_prints_a_link_that_signs_an_admin_in_once(tmp_path: Path):
    env = {"KT_CONSOLE": "1", "KT_PORT": "8123"}
    done = kitchen_table("console", "link", data=tmp_path / "data", env=env)
    assert done.returncode == 0, done.stderr
    assert re.match(r"http://127\.0\.0\.1:8123/console/signin\?t=[\w-]{40,}\n", done.stdout)
    assert "once, as an admin, within 10 minutes" in done.stdout
    off = kitchen_table("console", "link", data=tmp_path / "data")
    assert off.returncode == 2
    assert "the console is off: set KT_CONSOLE=1" in off.stderr


async def test_run_serves_the_console_when_no_chat_platform_is_set(tmp_path: Path):
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "TELEGRAM_", "SLACK_"))}  # fmt: skip
    environment.update({"KT_DATA_DIR": str(tmp_path / "data"), "KT_GUIDES_DIR": str(ROOT / "guides"),
                        "KT_CONSOLE": "1", "KT_PORT": str(port)})  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=environment, cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        async with asyncio.timeout(30):  # until it says it serves: no terminal conversation
            while b"serving the console" not in await process.stderr.readline():
                pass
            async with aiohttp.ClientSession() as session:
                while True:
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/healthz") as health:
                            assert health.status == 200
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)  # not listening yet
                async with session.get(f"http://127.0.0.1:{port}/console/") as page:
                    assert page.status == 401
                    assert "Please sign in first" in await page.text()
    finally:
        process.terminate()
        stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert b"Is that all right" not in stdout  # no guide was opened in a terminal
