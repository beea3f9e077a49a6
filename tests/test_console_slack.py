"""`/kitchen-table console` in Slack: the link comes by direct message (also when typed in
a channel), to admins, facilitators and coordinators only."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings
from tests.fake_slack import FakeSlack
from tests.test_slack import Workspace

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py


async def test_console_in_slack_sends_the_link_privately(slack_api: FakeSlack, tmp_path: Path):
    workspace = Workspace(slack_api, tmp_path / "data")
    workspace.settings = Settings(**{**workspace.settings.model_dump(), "console": True})
    async with workspace as ws:
        await ws.command("console", user="UHOST")
        said = " ".join(str(p.get("text", "")) for p in slack_api.posts("T1", "UHOST"))
        assert "/console/signin?t=" in said
        # Typed in a channel, it is answered in their direct messages, never in the room.
        await ws.command("console", user="UHOST", channel="C42")
        links = [c for c in slack_api.calls if "/signin" in str(c.params.get("text", ""))]
        assert [c.params["channel"] for c in links] == ["UHOST", "UHOST"]
        await ws.command("console", user="U7")
        refused = " ".join(str(p.get("text", "")) for p in slack_api.posts("T1", "U7"))
        assert "for facilitators, coordinators and admins" in refused
        assert "/signin" not in refused
