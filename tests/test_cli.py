"""The `kitchen-table` command as a person uses it: real processes, piped stdin."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT

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
        "7946", "rosalind_qi", "example.net", "123456789012",
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
    assert f"send /join {code}" in launched.stdout
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
