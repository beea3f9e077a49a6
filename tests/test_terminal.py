"""The terminal channel as a person at a keyboard meets it: help in words for typing, their
own data as a file they can keep, and a paced gathering's next question arriving while
they wait, without pressing Enter."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from datetime import date
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_cli import kitchen_table

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

SECRET = {"KT_SECRET_KEY": "terminal-secret-0123456789"}


def test_help_in_the_terminal_speaks_of_typing(tmp_path: Path):
    english = kitchen_table("chat", "changing-work", "--as", "ana", data=tmp_path / "d",
                            stdin="/help\n")  # fmt: skip
    assert "Type your answer and press Enter" in english.stdout
    assert "tapping" not in english.stdout
    spanish = kitchen_table("chat", "changing-work", "--as", "lu", "--lang", "es",
                            data=tmp_path / "d", stdin="/help\n")  # fmt: skip
    assert "Escribe tu respuesta y pulsa Intro" in spanish.stdout
    assert "tocando" not in spanish.stdout


def test_mydata_shows_a_summary_and_saves_the_file_it_names(tmp_path: Path):
    data = tmp_path / "data"
    done = kitchen_table("chat", "weekly-checkin", "--as", "ana", data=data, env=SECRET,
                         stdin="yes\n4\n40\n/mydata\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Everything we keep about you:" in done.stdout
    name = f"kitchen-table-mydata-{date.today().isoformat()}.json"
    saved = data.parent / name  # the folder the command was run from
    assert f"The same, as a file a computer can read:\n  {saved}\n" in done.stdout
    kept = json.loads(saved.read_text("utf-8"))
    assert {"answers", "runs", "consents"} <= set(kept)
    assert saved.stat().st_mode & 0o777 == 0o600  # someone's own answers: theirs alone
    assert '"answers"' not in done.stdout  # no wall of JSON on the screen
    again = kitchen_table("chat", "weekly-checkin", "--as", "ana", data=data, env=SECRET,
                          stdin="/mydata\n")  # fmt: skip
    assert f"{saved.with_name(name.replace('.json', '-2.json'))}" in again.stdout
    assert json.loads(saved.read_text("utf-8")) == kept  # the first file is left alone


async def test_a_paced_question_arrives_while_the_participant_waits(tmp_path: Path):
    data = tmp_path / "data"
    launched = kitchen_table("session", "launch", "weekly-checkin", "Pace", "--paced",
                             data=data, env=SECRET)  # fmt: skip
    code = re.search(r"Join code: ([A-Z0-9]{6})", launched.stdout).group(1)  # type: ignore[union-attr]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "TELEGRAM_"))}
    environment.update(KT_DATA_DIR=str(data), KT_GUIDES_DIR=str(ROOT / "guides"), **SECRET)
    participant = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "chat", "--join", code, "--as", "ana", env=environment,
        cwd=tmp_path, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert participant.stdin is not None and participant.stdout is not None
    seen: list[str] = []

    async def read_until(words: str) -> None:
        assert participant.stdout is not None
        async with asyncio.timeout(30):
            while not any(words in line for line in seen):
                line = (await participant.stdout.readline()).decode()
                assert line, "".join(seen)
                seen.append(line)

    try:
        participant.stdin.write(b"yes\n3\n")
        await participant.stdin.drain()
        await read_until("Please wait for the group")
        host = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "session", "next", code, env=environment,
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        opened, _ = await asyncio.wait_for(host.communicate(), 30)
        assert host.returncode == 0 and b"Question 2 of 5 is now open" in opened
        # Nothing more is typed: the question shows up on its own.
        await read_until("[2 of 5] About how many hours did you work in the past seven days?")
    finally:
        participant.stdin.close()
        await asyncio.wait_for(participant.wait(), 30)
    assert participant.returncode == 0


def test_an_offer_at_the_end_of_a_guide_waits_for_its_answer(tmp_path: Path):
    """The chat ended with the guide, so its offer to keep in touch could not be taken."""
    data = tmp_path / "data"
    assert kitchen_table("cohort", "add", "weekly", data=data, env=SECRET).returncode == 0
    guide = tmp_path / "tiny.yaml"
    guide.write_text(
        "guide: tiny\nversion: 1\ntitle: Tiny\nkeep_in_touch: weekly\n"
        "steps:\n  - id: q\n    ask: Anything on your mind?\n"
    )
    done = kitchen_table("chat", str(guide), "--as", "ana", data=data, env=SECRET,
                         stdin="Fair pay\nmaybe\n1\nnot read: the chat has ended\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    offer = done.stdout.index("Would you like a short check-in")
    assert done.stdout.index("Please choose one of the answers above", offer) > offer
    assert done.stdout.index("You're in", offer) > offer
    assert "Hi! Which conversation" not in done.stdout  # the last line went unread
