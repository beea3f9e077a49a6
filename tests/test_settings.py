"""Settings that can't work stop the bot at start, in one line that names the setting;
and the dates and durations the command line reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import ConfigError, load_settings
from bot.flows.duration import parse_since

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("KT_", "TELEGRAM_", "SLACK_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env from the developer's folder


def refused(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    return str(raised.value)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KT_DIGEST_CRON": "bogus"}, "KT_DIGEST_CRON: can't be read as a schedule"),
        ({"KT_ADMINS": "foo"}, "KT_ADMINS: 'foo' is not channel:id"),
        ({"KT_ADMINS": "telegram:abc"}, "KT_ADMINS: 'telegram:abc' is not channel:id"),
        ({"KT_ADMINS": "telegram:1,slack:U1"}, "KT_ADMINS: 'slack:U1' is not channel:id"),
        ({"SLACK_APP_TOKEN": "xapp-1-A"}, "SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not"),
        ({"TELEGRAM_BOT_TOKEN": "garbage"}, "TELEGRAM_BOT_TOKEN: doesn't look like a token"),
        ({"TELEGRAM_BOT_TOKEN": "'123:abc'"}, "TELEGRAM_BOT_TOKEN: doesn't look like a token"),
    ],
)
def test_a_setting_that_cannot_work_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
):
    message = refused(monkeypatch, **env)
    assert message.startswith(named)
    assert "\n" not in message


def test_a_refused_token_is_never_repeated(monkeypatch: pytest.MonkeyPatch):
    message = refused(monkeypatch, TELEGRAM_BOT_TOKEN="123456:has a space-SECRETPART")
    assert "SECRETPART" not in message


def test_a_data_folder_that_is_a_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    file = tmp_path / "not-a-folder"
    file.write_text("x")
    message = refused(monkeypatch, KT_DATA_DIR=str(file))
    assert message == f"KT_DATA_DIR: {file} is a file, not a folder; name a folder (it is created)"


def test_good_settings_are_accepted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KT_ADMINS", "telegram:12345, slack:T0001/U0002,terminal:sam")
    monkeypatch.setenv("KT_DIGEST_CRON", "30 7 * * 1-5")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    settings = load_settings()
    assert settings.digest_cron == "30 7 * * 1-5" and settings.slack_enabled


# --since: a date, a moment, or a duration back from now ---------------------------------


def test_since_takes_a_date_or_a_duration():
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("1d12h", NOW) == NOW - timedelta(hours=36)
    assert parse_since("2026-11-01", NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T08:30", NOW) == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["forever", "", "7 days", "2026-13-01", "yesterday", "-7d"])
def test_since_refuses_anything_else_with_a_hint(text: str):
    with pytest.raises(ValueError, match="a date such as 2026-01-31 or a duration such as 7d"):
        parse_since(text, NOW)


@given(st.text(max_size=30))
def test_since_either_reads_a_moment_or_explains(text: str):
    try:
        moment = parse_since(text, NOW)
    except ValueError as error:
        assert "\n" not in str(error)
    else:
        assert moment.tzinfo is not None


@given(st.dates(min_value=datetime(1900, 1, 1).date()))
def test_since_reads_every_date(day):  # type: ignore[no-untyped-def]
    assert parse_since(day.isoformat(), NOW).date() == day


@given(st.integers(min_value=1, max_value=365))
def test_since_reads_every_number_of_days(days: int):
    assert parse_since(f"{days}d", NOW) == NOW - timedelta(days=days)


def test_the_operators_log_never_shows_a_secret_nor_library_chatter():
    import io
    import logging

    from bot import operator_log

    token = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    handler = operator_log.configure([token])
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        logging.getLogger("httpx").info(
            "HTTP Request: POST https://api.telegram.org/bot%s/getMe", token
        )
        logging.getLogger("kitchen_table").warning("calling https://x/bot%s/getMe", token)
        try:
            raise ValueError(f"The token `{token}` was rejected by the server.")
        except ValueError:
            logging.getLogger("telegram.ext").exception("failed")
        logging.getLogger("slack_bolt.AsyncApp").warning(
            "As you gave `client` as well, `token` will be unused."
        )
        try:
            raise ConnectionError("Connect call failed")
        except ConnectionError:
            logging.getLogger("slack_bolt.AsyncApp").exception("Failed to connect; Retrying...")
    finally:
        logging.getLogger().removeHandler(handler)
    written = stream.getvalue()
    assert token not in written and "AAHdqTcv" not in written
    assert "calling https://x/bot<hidden>/getMe" in written
    assert "HTTP Request" not in written  # httpx's INFO lines stay below the operator's level
    assert "will be unused" not in written
    assert "ERROR slack_bolt.AsyncApp: Failed to connect; Retrying...\n" in written
    assert written.count("Traceback") == 1  # only the redacted one from telegram.ext


def test_every_setting_explains_itself_in_run_help():
    from bot.config import Settings

    assert [name for name, field in Settings.model_fields.items() if not field.description] == []
