"""The `kitchen-table` command as a person uses it: real processes, piped stdin."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT
from tests.fake_telegram import FakeTelegram

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

EXAMPLE = DATA / "format-example.yaml"


def kitchen_table(
    *args: str, data: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("KT_", "TELEGRAM_", "SLACK_"))
    }
    environment.update({"KT_DATA_DIR": str(data), "KT_GUIDES_DIR": str(ROOT / "guides")})
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        cwd=data.parent,
        timeout=60,
    )


def test_chat_walks_through_a_guide_and_exits_when_finished(tmp_path: Path):
    answers = "yes\n2\nWe got a scheduling app\n5\nThe app decides\n1, 3\n45\nextra line\n"
    done = kitchen_table(
        "chat", str(EXAMPLE), "--as", "rosa", data=tmp_path / "data", stdin=answers
    )
    assert done.returncode == 0, done.stderr
    assert "[1 of 6] Which best describes your work?" in done.stdout
    assert "  2. Health care" in done.stdout
    assert "(1 = Not at all · 5 = Very)" in done.stdout
    assert done.stdout.rstrip().endswith(
        "Thank you! Your answers join others from How is work changing where you live?."
    )


def test_chat_resumes_an_unfinished_run_for_the_same_name(tmp_path: Path):
    data = tmp_path / "data"
    first = kitchen_table("chat", str(EXAMPLE), "--as", "rosa", data=data, stdin="yes\n2\n")
    assert first.returncode == 0
    assert first.stdout.rstrip().endswith("(You can skip this one with /skip.)")
    again = kitchen_table("chat", str(EXAMPLE), "--as", "rosa", data=data, stdin="/skip\n")
    assert "Welcome back! Let's pick up where you left off." in again.stdout
    assert "Tell us about one change at work in the last year." in again.stdout
    assert "How worried are you about your job?" in again.stdout
    other = kitchen_table("chat", str(EXAMPLE), "--as", "sam", data=data, stdin="")
    assert "Welcome back" not in other.stdout


def test_after_saying_no_the_terminal_waits_for_the_start_it_offers(tmp_path: Path):
    """ "If you change your mind, send /start": the chat stays open to take it, rather
    than ending where nobody can send anything (found by review)."""
    said = kitchen_table("chat", str(EXAMPLE), "--as", "rosa", data=tmp_path / "data",
                         stdin="no\n/start changing-work\nyes\n")  # fmt: skip
    assert said.returncode == 0
    assert "If you change your mind, send /start." in said.stdout
    after = said.stdout.split("If you change your mind, send /start.", 1)[1]
    assert "Is that all right with you?" in after
    assert "[1 of" in after  # agreed this time: the first question


def test_spanish_from_the_command_line(tmp_path: Path):
    done = kitchen_table(
        "chat", "changing-work", "--as", "lu", "--lang", "es", data=tmp_path / "d", stdin=""
    )
    assert done.returncode == 0, done.stderr
    assert "¿Te parece bien?" in done.stdout


def test_after_a_conversation_the_data_folder_names_nobody(tmp_path: Path):
    data = tmp_path / "data"
    name = "Rosalind Quetzal-Ibarra"
    answers = (
        "yes\n2\n"
        "Write to rosalind.qi@example.org or call 312-555-0199 or +44 20 7946 0958, "
        "ask @rosalind_qi, see https://rosalind.example.net/me, id 123456789012\n"
        "5\nI worry\n1\n40\n"
    )
    done = kitchen_table("chat", str(EXAMPLE), "--as", name, data=data, stdin=answers)
    assert done.returncode == 0, done.stderr
    secrets = [
        name, "Rosalind", "rosalind", "Quetzal", "example.org", "312-555-0199", "3125550199",
        # Not "7946" alone: four digits turn up by chance in the hex of pseudonyms and ids
        # (it did once in a few hundred runs), which would say nothing about the phone.
        "7946 0958", "79460958", "rosalind_qi", "example.net", "123456789012",
    ]  # fmt: skip
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".db") for p in files)
    for path in files:
        raw = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in raw, f"{secret!r} found in {path.name}"
            assert secret.encode("utf-16-le") not in raw


def test_guides_commands(tmp_path: Path):
    checked = kitchen_table("guides", "check", data=tmp_path)
    assert checked.returncode == 0, checked.stdout
    listed = kitchen_table("guides", "list", data=tmp_path)
    assert "changing-work" in listed.stdout and "weekly-checkin" in listed.stdout
    schema = kitchen_table("guides", "schema", data=tmp_path)
    assert schema.stdout == (ROOT / "guides" / "guide.schema.json").read_text("utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text("utf-8").replace("range: [0, 100]", "range: [100, 0]"))
    failed = kitchen_table("guides", "check", str(bad), data=tmp_path)
    assert failed.returncode == 1
    assert f"{bad}:33: step 'hours': the range [100, 0] is reversed" in failed.stdout


def test_run_without_tokens_explains_and_opens_the_terminal(tmp_path: Path):
    done = kitchen_table("run", data=tmp_path / "data", stdin="no\n", env={"KT_PORT": "0"})
    assert done.returncode == 0, done.stderr
    assert "TELEGRAM_BOT_TOKEN" in done.stderr
    assert "How is work changing" in done.stdout
    assert "Nothing you said has been kept" in done.stdout


def test_invalid_configuration_fails_clearly(tmp_path: Path):
    done = kitchen_table("run", data=tmp_path, env={"KT_PORT": "eighty", "KT_SECRET_KEY": "short"})
    assert done.returncode == 2
    assert "KT_PORT:" in done.stderr
    assert "KT_SECRET_KEY: must be at least 16 characters" in done.stderr


def test_a_missing_guide_is_explained(tmp_path: Path):
    done = kitchen_table("chat", "no-such-guide", data=tmp_path)
    assert done.returncode == 1
    assert "There is no guide 'no-such-guide'" in done.stderr


def test_the_generated_secret_is_private(tmp_path: Path):
    data = tmp_path / "data"
    kitchen_table("chat", str(EXAMPLE), "--as", "x", data=data, stdin="no\n")
    assert (data / "secret.key").stat().st_mode & 0o777 == 0o600


def test_a_whole_gathering_rehearsed_in_terminals(tmp_path: Path):
    import re

    data = tmp_path / "data"
    env = {"KT_SECRET_KEY": "rehearsal-secret-0123456789"}
    launched = kitchen_table("session", "launch", "weekly-checkin", "Tuesday", "supper",
                             data=data, env=env)  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    code = re.search(r"Join code: ([A-Z0-9]{6})", launched.stdout).group(1)  # type: ignore[union-attr]
    assert f"sending /join {code}" in launched.stdout
    for n, person in enumerate(["ana", "ben", "cal", "dee", "eve"]):
        answers = f"yes\n{1 + n % 5}\n{35 + n}\nno\nMore <b>rest</b> {n}\n"
        walked = kitchen_table("chat", "--join", code, "--as", person, data=data, stdin=answers,
                               env=env)  # fmt: skip
        assert "Thank you" in walked.stdout, walked.stdout + walked.stderr
    status = kitchen_table("session", "status", data=data, env=env)
    assert "Joined 5 · answering 0 · finished 5" in status.stdout
    closed = kitchen_table("session", "close", code, data=data, env=env)
    assert "5 took part and 5 finished" in closed.stdout
    # Hours 35..39, one person each: no one's answer, not even as the middle value.
    assert "split their answers into ranges" in closed.stdout
    assert "Middle value" not in closed.stdout
    assert "More <b>rest</b>" in closed.stdout  # plain text: shown exactly as typed
    late = kitchen_table("chat", "--join", code, "--as", "fay", data=data, stdin="", env=env)
    assert "has closed" in late.stdout
    qr = kitchen_table("session", "qr", code, "--out", str(tmp_path / "join.svg"),
                       "--link", f"https://t.me/KitchenTableBot?start=join-{code}",
                       data=data, env=env)  # fmt: skip
    assert qr.returncode == 0 and (tmp_path / "join.svg").read_text().startswith("<?xml")
    invited = kitchen_table("invite", "coordinator", "--expires", "2d", data=data, env=env)
    assert "good for 2 days" in invited.stdout and "/redeem" in invited.stdout
    roles = kitchen_table("roles", "list", data=data, env=env)
    assert "No facilitators or coordinators yet" in roles.stdout


def test_cohorts_and_schedules_from_the_command_line(tmp_path: Path):
    import re

    data = tmp_path / "data"
    env = {"KT_SECRET_KEY": "schedule-secret-0123456789", "KT_TIMEZONE": "America/Chicago"}
    made = kitchen_table("cohort", "add", "riverside", data=data, env=env)
    code = re.search(r"/join ([A-Z0-9]{7})", made.stdout).group(1)  # type: ignore[union-attr]
    assert f"riverside  /join {code}" in kitchen_table("cohort", "list", data=data, env=env).stdout
    bad = kitchen_table("schedule", "add", "--guide", "weekly-checkin", "--cohort", "riverside",
                        "--cron", "every monday", data=data, env=env)  # fmt: skip
    assert bad.returncode == 2 and "can't be read" in bad.stdout
    added = kitchen_table("schedule", "add", "--guide", "weekly-checkin", "--cohort", "riverside",
                          "--cron", "0 9 * * MON", data=data, env=env)  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    assert "(America/Chicago)" in added.stdout and "Mon" in added.stdout and "09:00" in added.stdout
    schedule_id = re.search(r"Added schedule (\w+)", added.stdout).group(1)  # type: ignore[union-attr]
    assert kitchen_table("schedule", "pause", schedule_id, data=data, env=env).returncode == 0
    listed = kitchen_table("schedule", "list", data=data, env=env).stdout
    assert (
        f"{schedule_id}  weekly-checkin -> riverside  0 9 * * MON (America/Chicago)  paused"
        in listed
    )
    assert kitchen_table("schedule", "remove", schedule_id, data=data, env=env).returncode == 0
    assert "No schedules yet" in kitchen_table("schedule", "list", data=data, env=env).stdout
    joined = kitchen_table("chat", "--join", code, "--as", "rosa", data=data, env=env)
    assert "America/Chicago" in joined.stdout


def test_export_and_forget_from_the_command_line(tmp_path: Path):
    import csv
    import io
    import json

    data = tmp_path / "data"
    env = {"KT_SECRET_KEY": "export-secret-0123456789"}
    for person in ("ana", "ben"):
        kitchen_table("chat", "weekly-checkin", "--as", person, data=data, env=env,
                      stdin="yes\n4\n40\nno\nRest\n")  # fmt: skip
    exported = kitchen_table("export", "--guide", "weekly-checkin", data=data, env=env)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 8 and "Exported 8 answers" in exported.stderr
    ana = rows[0]["participant"]
    folder = tmp_path / "package"
    floip = kitchen_table("export", "--guide", "weekly-checkin", "--format", "floip",
                          "--out", str(folder), data=data, env=env)  # fmt: skip
    assert floip.returncode == 0 and json.loads((folder / "datapackage.json").read_text())
    forgot = kitchen_table("forget", "--participant", ana, data=data, env=env)
    assert "only a tombstone remains" in forgot.stdout
    after = kitchen_table("export", "--guide", "weekly-checkin", data=data, env=env)
    assert ana not in after.stdout and len(after.stdout.splitlines()) == 5
    again = kitchen_table("forget", "--participant", ana, data=data, env=env)
    assert "already forgotten" in again.stdout


def read_only_folder(tmp_path: Path) -> Path:
    """A folder nothing can be written to: by permissions, or (as root, who ignores them)
    a read-only tmpfs mounted for this test."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        return folder
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("running as root without the right to mount a read-only folder")
    return folder


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    folder = read_only_folder(tmp_path)
    yield folder
    if os.geteuid() == 0:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_read_only_data_folder_is_one_clear_error(read_only: Path):
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    for data in (read_only, read_only / "data"):  # the folder itself, or one to create in it
        for secret in ({"KT_SECRET_KEY": "a-secret-for-this-test-0123456789"}, {}):
            started = kitchen_table("run", data=data, env=secret)
            assert started.returncode == 1
            assert "Traceback" not in started.stderr
            assert started.stderr.strip().splitlines()[-1] == (
                f"Kitchen Table can't start: it can't write to its data folder {data}"
                f" ({reason}). Give it a folder it can write to with KT_DATA_DIR"
                " (or free some space), then start it again."
            )


# Errors: one line, no traceback, non-zero exit (#17) -------------------------------------


def one_line_error(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The one line a failed command printed on stderr (after any log lines)."""
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = [
        line for line in done.stderr.splitlines() if not line.startswith(("WARNING ", "INFO "))
    ]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_since_and_expires_take_dates_and_durations_or_say_why(tmp_path: Path):
    data = tmp_path / "data"
    env = {"KT_SECRET_KEY": "since-secret-0123456789"}
    kitchen_table("chat", "weekly-checkin", "--as", "ana", data=data, env=env,
                  stdin="yes\n4\n40\nno\nRest\n")  # fmt: skip
    recent = kitchen_table("export", "--guide", "weekly-checkin", "--since", "7d", data=data,
                           env=env)  # fmt: skip
    assert recent.returncode == 0 and "Exported 4 answers" in recent.stderr
    dated = kitchen_table("digest", "--since", "2026-01-01", data=data, env=env)
    assert dated.returncode == 0, dated.stderr
    assert one_line_error(
        kitchen_table(
            "export", "--guide", "weekly-checkin", "--since", "last week", data=data, env=env
        )
    ) == (
        "--since: 'last week' is not a date or a duration; write a date such as 2026-01-31 "
        "or a duration such as 7d"
    )
    assert one_line_error(kitchen_table("digest", "--since", "2026-13-01", data=data, env=env))
    forever = one_line_error(kitchen_table("invite", "facilitator", "--expires", "forever",
                                           data=data, env=env))  # fmt: skip
    assert forever.startswith("--expires: 'forever' is not a duration; write it like 7d")


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"KT_DIGEST_CRON": "bogus"}, "KT_DIGEST_CRON: can't be read as a schedule"),
        ({"KT_ADMINS": "telegram:abc"}, "KT_ADMINS: 'telegram:abc' is not channel:id"),
        ({"SLACK_APP_TOKEN": "xapp-1"}, "SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not"),
        ({"KT_GUIDES_DIR": "no-such-folder"}, "KT_GUIDES_DIR: there is no folder no-such-folder"),
        ({"KT_DEFAULT_GUIDE": "nope"}, "KT_DEFAULT_GUIDE: There is no guide 'nope' in"),
        ({"TELEGRAM_BOT_TOKEN": "garbage"}, "TELEGRAM_BOT_TOKEN: doesn't look like a token"),
    ],
)
def test_settings_that_cannot_work_stop_the_bot_in_one_line(
    tmp_path: Path, env: dict[str, str], line: str
):
    done = kitchen_table("run", data=tmp_path / "data", env={"KT_PORT": "0", **env})
    assert one_line_error(done).startswith(f"Kitchen Table can't start: {line}")


def test_a_data_folder_that_is_a_file_is_one_line(tmp_path: Path):
    file = tmp_path / "data"
    file.write_text("not a folder")
    done = kitchen_table("session", "status", data=file)
    assert one_line_error(done) == (
        f"Kitchen Table can't start: KT_DATA_DIR: {file} is a file, not a folder; "
        "name a folder (it is created)"
    )


def test_guides_commands_fail_on_a_missing_folder(tmp_path: Path):
    for action in ("list", "check"):
        done = kitchen_table("guides", action, data=tmp_path, env={"KT_GUIDES_DIR": "gone"})
        assert "KT_GUIDES_DIR: there is no folder gone" in one_line_error(done)
    named = kitchen_table("guides", "list", "nowhere.yaml", data=tmp_path)
    assert one_line_error(named) == "nowhere.yaml: there is no such file or folder"


def test_chat_in_a_language_the_guide_lacks_is_refused(tmp_path: Path):
    done = kitchen_table("chat", "changing-work", "--lang", "fr", data=tmp_path / "d")
    assert one_line_error(done) == (
        "--lang fr: the guide changing-work is written in en, es; choose one of those"
    )


def test_session_commands_exit_non_zero_when_they_do_nothing(tmp_path: Path):
    data = tmp_path / "data"
    env = {"KT_SECRET_KEY": "exit-code-secret-0123456789"}
    launched = kitchen_table("session", "launch", "no-such-guide", data=data, env=env)
    assert launched.returncode == 1 and "couldn't find" in launched.stdout
    status = kitchen_table("session", "status", "ZZZZZZ", data=data, env=env)
    assert status.returncode == 1 and "couldn't find that gathering" in status.stdout
    image = tmp_path / "join.svg"
    qr = kitchen_table("session", "qr", "ZZZZZZ", "--out", str(image), data=data, env=env)
    assert qr.returncode == 1 and "There is no gathering with the code ZZZZZZ" in qr.stdout
    assert not image.exists()


def test_the_command_line_names_commands_to_run_not_chat_commands(tmp_path: Path):
    data = tmp_path / "data"
    env = {"KT_SECRET_KEY": "wording-secret-0123456789"}
    launched = kitchen_table("session", "launch", "weekly-checkin", data=data, env=env)
    assert launched.returncode == 0, launched.stderr
    assert "Run `kitchen-table session status` to see how it fills" in launched.stdout
    assert "`kitchen-table session close` when you are done" in launched.stdout
    assert "/status" not in launched.stdout and "/close" not in launched.stdout


def test_a_printable_qr_code_links_to_the_bot_with_the_name_and_code_under_it(tmp_path: Path):
    import re

    data = tmp_path / "data"
    env = {"KT_SECRET_KEY": "qr-secret-0123456789", "TELEGRAM_BOT_USERNAME": "@KitchenTableBot"}
    launched = kitchen_table("session", "launch", "weekly-checkin", "Tuesday", "<supper>",
                             data=data, env=env)  # fmt: skip
    code = re.search(r"Join code: ([A-Z0-9]{6})", launched.stdout).group(1)  # type: ignore[union-attr]
    image = tmp_path / "join.svg"
    saved = kitchen_table("session", "qr", code.lower(), "--out", str(image), data=data, env=env)
    assert saved.returncode == 0, saved.stderr
    assert f"https://t.me/KitchenTableBot?start=join-{code}" in saved.stdout
    svg = image.read_text("utf-8")
    assert 'width="120mm"' in svg
    assert ">Tuesday &lt;supper&gt;</text>" in svg and f">{code}</text>" in svg
    png = tmp_path / "join.png"
    assert (
        kitchen_table("session", "qr", code, "--out", str(png), data=data, env=env).returncode == 0
    )
    width = int.from_bytes(png.read_bytes()[16:20], "big")  # the PNG header's IHDR width
    assert width >= 1000


def test_a_cohort_name_against_the_rule_is_refused(tmp_path: Path):
    done = kitchen_table("cohort", "add", "River Side", data=tmp_path / "data")
    assert done.returncode == 2
    assert "lowercase letters, digits and dashes" in done.stdout and "river-side" in done.stdout
    assert "No cohorts yet" in kitchen_table("cohort", "list", data=tmp_path / "data").stdout


def test_version_and_help(tmp_path: Path):
    version = kitchen_table("--version", data=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("kitchen-table ")
    run_help = kitchen_table("run", "--help", data=tmp_path).stdout
    for setting in ("KT_DATA_DIR", "KT_DIGEST_CRON", "TELEGRAM_BOT_TOKEN", "SLACK_APP_TOKEN"):
        assert setting in run_help
    assert "README.md" in run_help
    export_help = kitchen_table("export", "--help", data=tmp_path).stdout
    for option in ("--guide", "--format", "--since", "--until", "--out", "--wide", "--min-group"):
        line = next(x for x in export_help.splitlines() if x.strip().startswith(option))
        assert len(line.split(maxsplit=2)) >= 2, f"{option} has no help"


# Platforms that refuse the bot, or can't be reached (#17) ---------------------------------

REFUSED_TOKEN = "999999:Refused-Token-abcdefghijklmnopqrstuvw"


async def start_run(tmp_path: Path, **env: str) -> asyncio.subprocess.Process:
    from tests.test_telegram_process import free_port

    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("KT_", "TELEGRAM_", "SLACK_"))
    }
    environment.update(KT_DATA_DIR=str(tmp_path / "data"), KT_GUIDES_DIR=str(ROOT / "guides"),
                       KT_SECRET_KEY="platform-secret-0123456789", KT_PORT=str(free_port()),
                       **env)  # fmt: skip
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=environment, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def lines_until(process: asyncio.subprocess.Process, words: str, count: int) -> list[str]:
    """stderr's lines until `count` of them hold `words` (the bot retrying, say)."""
    assert process.stderr is not None
    seen: list[str] = []
    async with asyncio.timeout(30):
        while sum(words in line for line in seen) < count:
            line = (await process.stderr.readline()).decode()
            assert line, "".join(seen)
            seen.append(line)
    return seen


async def stopped(process: asyncio.subprocess.Process) -> str:
    process.terminate()
    _, rest = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, rest.decode()
    return rest.decode()


async def test_a_token_telegram_refuses_is_one_line_that_never_shows_it(
    fake: FakeTelegram, tmp_path: Path
):
    bot = await start_run(tmp_path, TELEGRAM_BOT_TOKEN=REFUSED_TOKEN,
                          KT_TELEGRAM_API_URL=fake.url)  # fmt: skip
    out, err = await asyncio.wait_for(bot.communicate(), 30)
    said = (out + err).decode()
    assert bot.returncode == 2, said
    assert said.strip().splitlines() == [
        "Kitchen Table can't start: TELEGRAM_BOT_TOKEN: Telegram refused this token; copy it "
        "again from @BotFather (/mybots, then API Token)"
    ]
    assert "Refused-Token" not in said


async def test_telegram_out_of_reach_is_tried_again_with_backoff_one_line_each(tmp_path: Path):
    from tests.test_telegram_process import free_port

    unreachable = f"http://127.0.0.1:{free_port()}"
    bot = await start_run(tmp_path, TELEGRAM_BOT_TOKEN=REFUSED_TOKEN,
                          KT_TELEGRAM_API_URL=unreachable)  # fmt: skip
    try:
        seen = await lines_until(bot, "Telegram could not be reached", 2)
    finally:
        rest = await stopped(bot)
    retries = [line for line in seen if "Telegram could not be reached" in line]
    assert retries[0].startswith(
        f"WARNING kitchen_table: Telegram could not be reached at {unreachable} ("
    )
    assert retries[0].rstrip().endswith("trying again in 1 s")
    assert retries[1].rstrip().endswith("trying again in 2 s")
    everything = "".join(seen) + rest
    assert "Traceback" not in everything and "Refused-Token" not in everything


async def test_slack_out_of_reach_is_tried_again_with_backoff_one_line_each(tmp_path: Path):
    from tests.test_telegram_process import free_port

    bot = await start_run(tmp_path, SLACK_BOT_TOKEN="xoxb-not-a-real-token",
                          SLACK_APP_TOKEN="xapp-not-a-real-token",
                          KT_SLACK_API_URL=f"http://127.0.0.1:{free_port()}/")  # fmt: skip
    try:
        seen = await lines_until(bot, "Slack could not be reached", 2)
    finally:
        rest = await stopped(bot)
    retries = [line for line in seen if "Slack could not be reached" in line]
    assert retries[0].rstrip().endswith("trying again in 1 s")
    assert retries[1].rstrip().endswith("trying again in 2 s")
    everything = "".join(seen) + rest
    assert "Traceback" not in everything and "will be unused" not in everything
    assert "not-a-real-token" not in everything


def test_files_are_written_only_where_asked(tmp_path: Path):
    data = tmp_path / "data"
    done = kitchen_table("export", "--guide", "weekly-checkin", "--format", "floip", data=data)
    assert one_line_error(done) == (
        "--format floip writes a folder: name it with --out, e.g. --out weekly-checkin-floip"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_the_start_up_log_names_a_keep_in_touch_cohort_that_does_not_exist(tmp_path: Path):
    data = tmp_path / "data"
    first = kitchen_table("chat", "changing-work", "--as", "ana", data=data, stdin="")
    assert "cohort 'weekly', which does not exist" in first.stderr
    assert "kitchen-table cohort add weekly" in first.stderr
    assert kitchen_table("cohort", "add", "weekly", data=data).returncode == 0
    again = kitchen_table("chat", "changing-work", "--as", "ana", data=data, stdin="")
    assert "which does not exist" not in again.stderr
