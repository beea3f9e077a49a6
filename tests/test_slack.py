"""Slack, end to end over real HTTP: signed requests into the bot's /slack/events, and
slack_sdk's calls out to a fake Slack Web API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app.cli import Bot, build, make_slack
from bot.app.web import make_web_app, start_web
from bot.channels.http import RequestRefused
from bot.channels.slack.channel import SlackChannel, slack_request
from bot.config import Settings
from bot.delivery.ratelimit import RateLimits
from bot.messages import NotStored
from tests.conftest import ROOT, FakeClock
from tests.fake_slack import CLIENT_ID, CLIENT_SECRET, FakeSlack, signed_headers
from tests.test_telegram_process import free_port

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

SIGNING = "slack-signing-secret"
SECRET = "slack-test-secret-0123456789"

ECHO_GUIDE = """
guide: echo
version: 1
title: Echo
consent: We keep your answers without your name.
steps:
  - id: story
    ask: Tell us anything.
    scrub: false
  - id: helps
    choose_many: What would help?
    options: [Training, A union, Better pay]
  - id: bye
    say: "You said: {{ story }}"
"""


class Workspace:
    """The bot serving Slack, and a crowd of people clicking and typing in it."""

    def __init__(self, fake: FakeSlack, data: Path, oauth: bool = False) -> None:
        self.fake = fake
        self.data = data
        self.oauth = oauth
        self.clock = FakeClock()
        self.ids = itertools.count(1)
        guides = data / "guides"
        guides.mkdir(parents=True, exist_ok=True)
        for name in ("weekly-checkin.yaml", "changing-work.yaml"):
            (guides / name).write_text((ROOT / "guides" / name).read_text())
        (guides / "echo.yaml").write_text(ECHO_GUIDE)
        values: dict[str, Any] = {
            "data_dir": data,
            "guides_dir": guides,
            "secret_key": SECRET,
            "slack_signing_secret": SIGNING,
            "slack_api_url": fake.url,
            "admins": "slack:T1/UHOST",
        }
        if oauth:
            values |= {"slack_client_id": CLIENT_ID, "slack_client_secret": CLIENT_SECRET}
        else:
            values["slack_bot_token"] = "xoxb-T1"
        self.settings = Settings(**values)

    async def __aenter__(self) -> Workspace:
        self._build = build(self.settings, self.clock)
        self.bot: Bot = await self._build.__aenter__()
        self.slack: SlackChannel = make_slack(self.settings, self.bot)
        # Pacing is tested on its own; here people may click as fast as they like.
        generous = (1e6, 1e6)
        self.slack.limits = RateLimits(overall=generous, per_chat=generous, per_group=generous)
        self.bot.deliverer.channels[self.slack.name] = self.slack
        web_app = make_web_app()
        self.slack.add_routes(web_app, oauth=self.oauth)
        port = free_port()
        self.runner = await start_web(web_app, "127.0.0.1", port)
        self.base = f"http://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()
        await self.runner.cleanup()
        await self._build.__aexit__(None, None, None)

    # Requests from Slack ---------------------------------------------------

    async def post(
        self,
        body: str,
        content_type: str,
        *,
        timestamp: int | None = None,
        secret: str = SIGNING,
        headers: dict[str, str] | None = None,
    ) -> int:
        signed = signed_headers(body, secret, content_type, timestamp) | (headers or {})
        async with self.http.post(f"{self.base}/slack/events", data=body, headers=signed) as r:
            status = r.status
        await self.bot.deliverer.drain("slack")
        return status

    async def command(
        self, text: str, user: str = "U1", team: str = "T1", channel: str | None = None
    ) -> int:
        form = {
            "command": "/kitchen-table",
            "text": text,
            "team_id": team,
            "user_id": user,
            "channel_id": channel or f"D{user}",
            "trigger_id": f"trigger-{next(self.ids)}",
        }
        return await self.post(urlencode(form), "application/x-www-form-urlencoded")

    def event_body(self, text: str, user: str = "U1", team: str = "T1", **event: Any) -> str:
        n = next(self.ids)
        return json.dumps(
            {
                "type": "event_callback",
                "team_id": team,
                "api_app_id": "A1",
                "event_id": f"Ev{n}",
                "event_time": 1767000000,
                "event": {
                    "type": "message",
                    "channel": f"D{user}",
                    "channel_type": "im",
                    "user": user,
                    "text": text,
                    "ts": f"1767000000.{n:06d}",
                    **event,
                },
            }
        )

    async def say(self, text: str, user: str = "U1", team: str = "T1") -> int:
        return await self.post(self.event_body(text, user, team), "application/json")

    def last_post(self, user: str = "U1", team: str = "T1") -> dict[str, Any]:
        return self.fake.posts(team, user)[-1]

    def message_with(
        self, label: str, user: str, team: str, channel: str | None = None
    ) -> dict[str, Any]:
        for post in reversed(self.fake.posts(team, channel or user)):
            if find_element(post, label) is not None:
                return post
        raise AssertionError(f"no message with {label!r}")

    async def click(
        self,
        label: str,
        user: str = "U1",
        team: str = "T1",
        ticked: list[str] | None = None,
        channel: str | None = None,
    ) -> int:
        """Click the newest button labelled `label` (in their DM, or in `channel`), with
        these checkboxes ticked."""
        post = self.message_with(label, user, team, channel)
        element = find_element(post, label)
        assert element is not None
        state: dict[str, Any] = {}
        for block_index, block in enumerate(post["blocks"]):
            for item in block.get("elements", []):
                if item.get("type") == "checkboxes":
                    chosen = [o for o in item["options"] if o["text"]["text"] in (ticked or [])]
                    state.setdefault(f"b{block_index}", {})[item["action_id"]] = {
                        "type": "checkboxes",
                        "selected_options": chosen,
                    }
        payload = {
            "type": "block_actions",
            "team": {"id": team},
            "user": {"id": user, "team_id": team},
            "container": {
                "type": "message",
                "channel_id": channel or f"D{user}",
                "message_ts": post["_ts"],
            },
            "state": {"values": state},
            "actions": [
                {
                    "type": "button",
                    "action_id": element["action_id"],
                    "value": element["value"],
                    "action_ts": f"1767000001.{next(self.ids):06d}",
                }
            ],
        }
        form = urlencode({"payload": json.dumps(payload)})
        return await self.post(form, "application/x-www-form-urlencoded")

    async def state(self, user: str = "U1", team: str = "T1") -> dict[str, Any]:
        pid = self.bot.identity.pseudonym("slack", f"{team}:{user}")
        person = await self.bot.storage.participant(pid)
        assert person is not None and person.current_run is not None
        run = await self.bot.storage.run(person.current_run)
        assert run is not None
        answers = await self.bot.storage.answers(run.id)
        return {"status": run.status, "answers": {a.step: json.loads(a.value) for a in answers}}


def find_element(post: dict[str, Any], label: str) -> dict[str, Any] | None:
    for block in post.get("blocks", []):
        for element in block.get("elements", []):
            if element.get("type") == "button" and element["text"]["text"] == label:
                return element
    return None


@pytest.fixture
async def workspace(slack_api: FakeSlack, tmp_path: Path) -> AsyncIterator[Workspace]:
    async with Workspace(slack_api, tmp_path / "data") as ws:
        yield ws


async def test_the_weekly_check_in_by_slash_command_buttons_and_replies(workspace: Workspace):
    ws = workspace
    assert await ws.command("start weekly-checkin") == 200
    assert "Is that all right" in ws.last_post()["text"]
    assert await ws.click("I agree") == 200
    # The consent message now shows what was chosen, with nothing left to click.
    answered = ws.fake.updates()[-1]
    assert answered["ts"] == ws.message_with("I agree", "U1", "T1")["_ts"]
    assert "✓ I agree" in json.dumps(answered["blocks"], ensure_ascii=False)
    assert not any(b["type"] == "actions" for b in answered["blocks"])
    assert "How was your past week" in ws.last_post()["text"]
    await ws.click("4")
    assert "how many hours" in ws.last_post()["text"]
    await ws.say("38")
    await ws.click("No")
    assert "next week better" in ws.last_post()["text"]
    await ws.say("Fewer double shifts")
    assert "Thank you" in ws.last_post()["text"]
    state = await ws.state()
    assert state["status"] == "finished"
    assert state["answers"] == {
        "week": 4,
        "hours": 38,
        "changed": "no",
        "better_week": "Fewer double shifts",
    }


async def test_checkboxes_submit_a_set_and_old_buttons_change_nothing(workspace: Workspace):
    ws = workspace
    await ws.command("start echo")
    await ws.click("I agree")
    await ws.say("fine")
    question = ws.last_post()
    kinds = [e["type"] for b in question["blocks"] for e in b.get("elements", [])]
    assert "checkboxes" in kinds
    await ws.click("Done", ticked=["Training", "Better pay"])
    assert (await ws.state())["answers"]["helps"] == ["training", "better-pay"]
    # A click on an old message (the consent, already given) changes nothing.
    before = await ws.state()
    await ws.click("I agree")
    assert "finished" in ws.fake.texts("T1", "U1")[-1]
    assert await ws.state() == before


async def test_skip_back_and_stop_are_buttons(workspace: Workspace):
    ws = workspace
    await ws.command("start weekly-checkin")
    await ws.click("I agree")
    await ws.click("4")
    assert [e["text"]["text"] for e in ws.last_post()["blocks"][-1]["elements"]] == [
        "Back",
        "Stop",
    ]
    await ws.click("Back")
    assert "How was your past week" in ws.last_post()["text"]
    await ws.click("Stop")
    assert (await ws.state())["status"] == "stopped"


async def test_bad_signature_and_stale_timestamp_are_refused_and_change_nothing(
    workspace: Workspace,
):
    ws = workspace
    body = ws.event_body("hi")
    assert await ws.post(body, "application/json", secret="not-the-secret") == 401
    stale = int(time.time()) - 6 * 60
    assert await ws.post(body, "application/json", timestamp=stale) == 401
    pid = ws.bot.identity.pseudonym("slack", "T1:U1")
    assert await ws.bot.storage.participant(pid) is None
    assert ws.fake.calls_to("chat.postMessage") == []
    assert await ws.post(body, "application/json") == 200  # the same, signed: accepted
    assert len(ws.fake.calls_to("chat.postMessage")) == 1


async def test_a_retried_event_is_processed_once(workspace: Workspace):
    ws = workspace
    await ws.command("start weekly-checkin")
    await ws.click("I agree")
    await ws.click("4")
    body = ws.event_body("38")
    assert await ws.post(body, "application/json") == 200
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert await ws.post(body, "application/json", headers=retry) == 200
    asked = [t for t in ws.fake.texts("T1", "U1") if "anything change" in t]
    assert len(asked) == 1


async def test_slack_markup_in_an_answer_is_shown_literally_everywhere(workspace: Workspace):
    ws = workspace
    await ws.command("start echo")
    await ws.click("I agree")
    # What Slack sends when someone types these characters (it escapes <, > and &).
    typed = "&lt;!channel&gt; &lt;@U123&gt; &lt;http://x|y&gt; &amp; more"
    await ws.say(typed)
    await ws.click("Done", ticked=["Training"])
    assert (await ws.state())["answers"]["story"] == "<!channel> <@U123> <http://x|y> & more"
    echo = ws.last_post()
    assert "You said" in echo["text"]
    for call in ws.fake.calls:
        shown = json.dumps(call.params)
        for markup in ("<!channel>", "<@U123>", "<http://x|y>"):
            assert markup not in shown
    assert "&lt;!channel&gt; &lt;@U123&gt; &lt;http://x|y&gt; &amp; more" in echo["text"]


async def test_mentions_typed_as_real_mentions_are_not_kept(workspace: Workspace):
    ws = workspace
    await ws.command("start weekly-checkin")
    await ws.click("I agree")
    await ws.click("4")
    await ws.say("38")
    await ws.click("No")
    await ws.say("Ask <@U0LEADER> and see <https://union.example/join|our page>")
    stored = (await ws.state())["answers"]["better_week"]
    assert "U0LEADER" not in stored and "union.example" not in stored


async def test_ratelimited_waits_for_retry_after_then_sends(workspace: Workspace):
    ws = workspace
    ws.fake.fail(
        "chat.postMessage", 429, {"ok": False, "error": "ratelimited"}, **{"Retry-After": "7"}
    )
    await ws.command("start weekly-checkin")
    assert ws.fake.texts("T1", "U1") == []
    ws.clock.advance(seconds=5)
    await ws.bot.deliverer.drain("slack")
    assert ws.fake.texts("T1", "U1") == []  # not before Slack said
    ws.clock.advance(seconds=3)
    await ws.bot.deliverer.drain("slack")
    first, second = ws.fake.texts("T1", "U1")  # in order, each once
    assert "Weekly check-in" in first and "Is that all right" in second


async def test_a_long_message_is_posted_in_several_and_goes_on_after_a_fault(
    workspace: Workspace,
):
    """Slack takes 50 blocks and about 12,000 characters a message: someone's data
    inlined by /mydata, or a long report, is posted in as many as it needs, in order.
    A fault on the second posts the rest later, never the first again."""
    from bot.messages import Outbound
    from storage.rows import Commit, OutboxRow

    ws = workspace
    lines = [f"line {n:04d} " + "x" * 2990 for n in range(120)]  # a section block each
    message = Outbound(text="\n".join(lines))
    row = OutboxRow("slack", "someone", ws.bot.identity.seal("T1:U1"),
                    message.model_dump_json(exclude_defaults=True), ws.clock())  # fmt: skip
    await ws.bot.storage.commit(Commit(outbox=[row]))
    ws.fake.fail("chat.postMessage", 500, {"ok": False, "error": "internal_error"}, after=1)
    await ws.bot.deliverer.drain("slack")
    assert len(ws.fake.posts("T1", "U1")) == 1
    ws.clock.advance(minutes=5)
    await ws.bot.deliverer.drain("slack")
    posts = ws.fake.posts("T1", "U1")
    assert len(posts) > 1
    for post in posts:
        assert 0 < len(post["blocks"]) <= 50
        assert sum(len(b["text"]["text"]) for b in post["blocks"]) <= 10_000
    shown = "".join(b["text"]["text"] for p in posts for b in p["blocks"])
    assert [shown.count(f"line {n:04d} ") for n in range(120)] == [1] * 120
    assert posts[0]["text"].startswith("line 0000") and posts[1]["text"] != posts[0]["text"]


def test_someones_data_is_shown_in_code_blocks_that_each_close_and_keep_every_character():
    """/mydata in Slack (no files): the JSON in code blocks, one a section, each fenced,
    no `&amp;` cut in two; put back together it is the file, character for character."""
    from bot.channels.slack.format import blocks
    from bot.messages import Outbound

    document = json.dumps({"answers": [["r1", f"pay & <hours> {n}"] for n in range(400)]})
    _, rendered = blocks(Outbound(text="Everything we keep about you", document=document), "/kt")
    sections = [b["text"]["text"] for b in rendered if b["type"] == "section"]
    assert sections[0] == "Everything we keep about you"
    code = sections[1:]
    assert len(code) > 1 and all(s.startswith("```") and s.endswith("```") for s in code)
    assert all(len(s) <= 3000 for s in code)
    assert not [s for s in code if re.search(r"&[a-z]{0,3}$", s[:-3])]  # no entity cut
    joined = "".join(s[3:-3] for s in code)
    unescaped = joined.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert unescaped == document


async def test_a_refused_token_holds_messages_until_it_is_put_right(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
):
    """Slack refusing the bot's token is the deployment's fault, not the person's: their
    messages wait and go once it is fixed, and they stay reachable for check-ins."""
    ws = workspace
    ws.fake.fail("chat.postMessage", 200, {"ok": False, "error": "invalid_auth"})
    with caplog.at_level(logging.ERROR):
        await ws.command("start weekly-checkin")
    assert ws.fake.texts("T1", "U1") == []
    assert "refused the bot's token (invalid_auth)" in caplog.text
    pid = ws.bot.identity.pseudonym("slack", "T1:U1")
    person = await ws.bot.storage.participant(pid)
    assert person is not None and not person.unreachable
    ws.clock.advance(seconds=3)  # the first retry's wait
    await ws.bot.deliverer.drain("slack")
    first, second = ws.fake.texts("T1", "U1")
    assert "Weekly check-in" in first and "Is that all right" in second


async def test_the_app_home_lists_guides_and_unfinished_ones(workspace: Workspace):
    ws = workspace
    await ws.command("start weekly-checkin")
    await ws.click("I agree")
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event_id": "EvHome",
            "event": {"type": "app_home_opened", "user": "U1", "channel": "DU1", "tab": "home"},
        }
    )
    assert await ws.post(body, "application/json") == 200
    view = ws.fake.calls_to("views.publish")[-1].params["view"]
    shown = json.dumps(view, ensure_ascii=False)
    assert "pick up where you left off" in shown
    assert shown.count("Weekly check-in") == 2  # unfinished, and in the list of all
    assert "Echo" in shown


async def test_oauth_installs_two_workspaces_whose_people_stay_apart(
    slack_api: FakeSlack, tmp_path: Path
):
    async with Workspace(slack_api, tmp_path / "data", oauth=True) as ws:
        for team in ("T1", "T2"):
            async with ws.http.get(f"{ws.base}/slack/install", allow_redirects=False) as page:
                assert page.status == 200
                cookie = SimpleCookie(page.headers["Set-Cookie"])
                state = cookie["slack-app-oauth-state"].value
            url = f"{ws.base}/slack/oauth_redirect?code=code-{team}&state={state}"
            headers = {"Cookie": f"slack-app-oauth-state={state}"}
            async with ws.http.get(url, headers=headers) as done:
                assert done.status == 200, await done.text()
            # A state is good for one installation only.
            async with ws.http.get(url, headers=headers) as replay:
                assert replay.status == 401
        # The same user id in both workspaces is two different, unrelated people.
        await ws.command("start weekly-checkin", user="U1", team="T1")
        await ws.command("start echo", user="U1", team="T2")
        await ws.click("I agree", user="U1", team="T1")
        await ws.click("4", user="U1", team="T1")
        assert "how many hours" in ws.fake.texts("T1", "U1")[-1]
        assert "Tell us anything" not in " ".join(ws.fake.texts("T1", "U1"))
        assert "Is that all right" in ws.fake.texts("T2", "U1")[-1]
        assert (await ws.state("U1", "T1"))["answers"] == {"week": 4}
        with pytest.raises(AssertionError):
            await ws.state("U1", "T3")
        t1 = ws.bot.identity.pseudonym("slack", "T1:U1")
        t2 = ws.bot.identity.pseudonym("slack", "T2:U1")
        assert t1 != t2
    # Tokens are stored sealed: no workspace token appears in the data folder.
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert b"xoxb-T" not in path.read_bytes(), path


def test_the_manifest_asks_for_what_the_bot_uses_and_the_readme_lists_every_setting():
    import yaml

    from bot.app.cli import SLACK_SCOPES

    manifest = yaml.safe_load((ROOT / "slack-manifest.yaml").read_text())
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(SLACK_SCOPES)
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert commands == [Settings.model_fields["slack_command"].default]
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == {
        "app_home_opened",
        "message.im",
    }
    readme = (ROOT / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env = alias if isinstance(alias, str) else f"KT_{name.upper()}"
        assert f"`{env}`" in readme, env


async def test_when_storage_fails_slack_retries_events_and_commands_get_a_plain_apology(
    workspace: Workspace,
):
    ws = workspace
    handle = ws.slack.handle

    async def broken(inbound: Any) -> None:
        raise NotStored("database or disk is full")  # as the dispatcher says it

    ws.slack.handle = broken
    body = ws.event_body("hi")
    assert await ws.post(body, "application/json") == 500  # Slack sends it again later
    form = {"command": "/kitchen-table", "text": "guides", "team_id": "T1", "user_id": "U1",
            "trigger_id": "t-broken"}  # fmt: skip
    encoded = urlencode(form)
    headers = signed_headers(encoded, SIGNING, "application/x-www-form-urlencoded")
    async with ws.http.post(f"{ws.base}/slack/events", data=encoded, headers=headers) as r:
        assert r.status == 200
        assert "could not save" in (await r.text()).lower()
    ws.slack.handle = handle
    assert await ws.post(body, "application/json") == 200  # the retry, once space is back
    assert len(ws.fake.texts("T1", "U1")) == 1


async def test_an_event_stuck_on_storage_is_answered_503_and_its_retry_goes_through(
    workspace: Workspace,
):
    """A turn stuck on a database that went away mid-call (no error, no answer) is cut off
    at the deadline: Slack hears 503 and sends the event again, and the stuck turn is
    cancelled, so it holds nothing up. (Real deadline: 10 s; here a tenth of a second.)"""
    ws = workspace
    handle = ws.slack.handle
    cancelled = asyncio.Event()

    async def stuck(inbound: Any) -> None:
        try:
            await asyncio.Event().wait()  # never set: a call with no end
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ws.slack.handle = stuck
    ws.slack.deadline = 0.1
    body = ws.event_body("hi")
    # Without a deadline the call never ends: the test fails here after 30 s, not hangs.
    assert await asyncio.wait_for(ws.post(body, "application/json"), 30) == 503
    assert cancelled.is_set()
    assert ws.fake.texts("T1", "U1") == []
    ws.slack.handle = handle
    assert await ws.post(body, "application/json") == 200  # Slack's retry: handled once
    assert await ws.post(body, "application/json") == 200  # and again: nothing more
    assert len(ws.fake.texts("T1", "U1")) == 1


async def test_saying_hi_lists_the_guides_as_buttons_and_one_click_starts(workspace: Workspace):
    ws = workspace
    await ws.say("hi")
    labels = [e["text"]["text"] for b in ws.last_post()["blocks"] for e in b.get("elements", [])]
    assert {"Weekly check-in", "Echo"} <= set(labels)
    await ws.click("Weekly check-in")
    assert "Is that all right" in ws.last_post()["text"]
    # The /kitchen-table help text names Slack's command, not Telegram's /skip.
    await ws.command("help")
    shown = " ".join(ws.fake.texts("T1", "U1")[-2:])
    assert "/kitchen-table skip" in shown and " /skip" not in shown


async def test_changing_work_end_to_end_with_buttons_checkboxes_replies_and_skip(
    workspace: Workspace,
):
    ws = workspace
    await ws.command("start changing-work")
    await ws.click("I agree")
    await ws.click("Health care or caregiving")
    await ws.say("12")
    await ws.click("Done", ticked=["New technology or automation", "Less predictable schedules"])
    typed = ["They brought in a scheduling app that decides our shifts. Call me 312-555-0199",
             "Short staffed every night", "1", "We need more people", "1", "2", "2", "1, 4",
             "Listen to nurses aides", "3"]  # fmt: skip
    for text in typed:
        assert await ws.say(text) == 200
    await ws.click("Skip")
    state = await ws.state()
    assert state["status"] == "finished"
    answers = state["answers"]
    assert answers["sector"] == "health-care"
    assert answers["years"] == 12
    assert answers["changes"][0] == "technology" and len(answers["changes"]) == 2
    assert "312-555-0199" not in answers["tech_story"]
    assert answers["anything_else"] is None
    # Every question that had buttons and was clicked now shows its answer instead.
    assert len(ws.fake.updates()) == 3


async def test_a_gathering_in_a_channel_from_launch_to_a_shared_summary(workspace: Workspace):
    ws = workspace
    await ws.command("launch weekly-checkin Union hall supper", user="UHOST", channel="C1")
    invite = ws.fake.posts("T1", "C1")[-1]
    assert "Union hall supper" in invite["text"]
    # Slack has one command per app: the room is told to type it the Slack way.
    found = re.search(r"/kitchen-table join ([A-Z0-9]{6})", invite["text"])
    assert found is not None
    code = found.group(1)
    assert any(f"Join code: {code}" in t for t in ws.fake.texts("T1", "UHOST"))
    people = [f"U{n}" for n in range(7)]
    for n, user in enumerate(people):
        await ws.click("Join", user=user, channel="C1")
        await ws.click("I agree", user=user)
        await ws.click("4", user=user)
        await ws.say(str(36 + n), user=user)
        await ws.click("No", user=user)
        await ws.say(f"&lt;!here&gt; more rest {n}", user=user)
        assert "Thank you" in ws.last_post(user)["text"]
    await ws.command("status", user="UHOST", channel="C1")
    status = ws.fake.posts("T1", "UHOST")[-1]
    assert "finished 7" in json.dumps(status["blocks"])
    await ws.command("close --share", user="UHOST", channel="C1")
    shared = ws.fake.posts("T1", "C1")[-2]
    private = ws.fake.posts("T1", "UHOST")[-1]
    for summary in (shared, private):
        shown = summary["blocks"][0]["text"]["text"]
        assert "*What the room said: Union hall supper*" in shown
        assert "7 took part and 7 finished" in shown
        assert "&lt;!here&gt; more rest" in shown and "<!here>" not in json.dumps(summary)
    assert "is closed" in ws.fake.texts("T1", "C1")[-1]
    # Someone else in the channel can't check it; they are told so privately, not the room.
    await ws.command("status", user="U0", channel="C1")
    assert "Only the facilitator" in ws.fake.texts("T1", "U0")[-1]
    assert "Only the facilitator" not in ws.fake.texts("T1", "C1")[-1]


async def test_old_skip_back_stop_buttons_change_nothing_and_slack_ids_are_not_kept(
    workspace: Workspace,
):
    ws = workspace
    WHO = "U07QSLACKPERSON"
    await ws.command("start weekly-checkin", user=WHO)
    await ws.click("I agree", user=WHO)
    await ws.click("4", user=WHO)  # now at "how many hours", which has Back and Stop under it
    await ws.say("38", user=WHO)  # answered by typing: its buttons stay on screen
    before = await ws.state(WHO)
    hours_message = next(p for p in ws.fake.posts("T1", WHO) if "how many hours" in p["text"])
    stop = find_element(hours_message, "Stop")
    assert stop is not None
    await ws.click(
        "Stop", user=WHO
    )  # the newest Stop is under the current question: that one works...
    assert (await ws.state(WHO))["status"] == "stopped"
    # ...but a fresh start, then the old Back under "how many hours", must not act.
    await ws.command("start weekly-checkin", user=WHO)
    state_now = await ws.state(WHO)
    payload = {
        "type": "block_actions", "team": {"id": "T1"}, "user": {"id": WHO, "team_id": "T1"},
        "container": {"type": "message", "channel_id": "D" + WHO, "message_ts": hours_message["_ts"]},
        "actions": [{"type": "button", "action_id": find_element(hours_message, "Back")["action_id"],  # type: ignore[index]
                     "value": find_element(hours_message, "Back")["value"], "action_ts": "9.9"}],  # type: ignore[index]
    }  # fmt: skip
    await ws.post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")
    assert await ws.state(WHO) == state_now
    assert before["answers"]["hours"] == 38
    # Slack's ids for people never reach the disk, not even in the record of seen messages.
    for path in ws.data.rglob("*"):
        if path.is_file() and path.suffix in ("", ".db", ".db-wal"):
            assert WHO.encode() not in path.read_bytes(), path


async def test_requests_slack_could_not_have_sent_get_a_4xx_and_one_log_line(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
):
    ws = workspace
    url = f"{ws.base}/slack/events"
    event = ws.event_body("hi")
    form = "application/x-www-form-urlencoded"
    deep = "[" * 100_000 + "]" * 100_000

    def signed(body: str, content_type: str = "application/json") -> dict[str, str]:
        return signed_headers(body, SIGNING, content_type)

    now = str(int(time.time()))
    bad: list[tuple[str | bytes, dict[str, str], int]] = [
        # The timestamp header is not a number: was 500.
        (event, signed(event) | {"X-Slack-Request-Timestamp": "soon"}, 401),
        (event, signed(event) | {"X-Slack-Request-Timestamp": "1e9"}, 401),
        (event, {"Content-Type": "application/json", "X-Slack-Signature": "v0=00"}, 401),
        (event, {"Content-Type": "application/json", "X-Slack-Request-Timestamp": now}, 401),
        (deep, {"Content-Type": "application/json"}, 401),  # unsigned: not even parsed
        (deep, signed(deep), 400),
        ("{not json", signed("{not json"), 400),
        ("[1, 2]", signed("[1, 2]"), 400),  # JSON, but not an object
        ('{"team": 5}', signed('{"team": 5}'), 400),
        ("payload=%7Bnot", signed("payload=%7Bnot", form), 400),  # bad JSON in a form
        ("payload=%5B1%5D", signed("payload=%5B1%5D", form), 400),  # a list in a form
        (b"\xff\xfe not utf-8", {"Content-Type": "application/json"}, 400),
        (event, signed(event, "text/plain"), 415),
        ("x" * 2_000_000, signed("x"), 413),
    ]
    for body, headers, status in bad:
        caplog.clear()
        async with ws.http.post(url, data=body, headers=headers) as response:
            assert response.status == status, (body[:40], headers)
        lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1, (body[:40], [r.getMessage() for r in lines])
        assert lines[0].exc_info is None and "\n" not in lines[0].getMessage()
    assert ws.fake.calls_to("chat.postMessage") == []
    assert await ws.post(event, "application/json") == 200  # a good one still works
    assert len(ws.fake.calls_to("chat.postMessage")) == 1
    assert await ws.command("help") == 200  # and a form


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["application/json", "application/x-www-form-urlencoded"]),
    st.one_of(
        st.text(),
        st.text().map(lambda t: "payload=" + quote(t)),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
            max_leaves=20,
        ).map(json.dumps),
    ),
)
def test_any_signed_body_is_read_as_bolt_would_or_refused_with_a_4xx(
    content_type: str, body: str
) -> None:
    try:
        request = slack_request(content_type, body, "", {"content-type": content_type})
    except RequestRefused as refused:
        assert 400 <= refused.status < 500
    else:
        assert isinstance(request.body, dict)
