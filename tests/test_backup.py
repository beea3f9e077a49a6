"""`kitchen-table backup` and `restore` as an operator uses them: real processes, real files.

The promise: a backup taken while the bot runs, restored on a new machine with the
secret kept apart, gives back the same data (the same CSV export, byte for byte);
a restore never replaces a database by surprise, nor one the bot has open, nor
takes a file that isn't a Kitchen Table database.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_cli import kitchen_table

CHECK_IN = "yes\n4\n40\nno\nRest\n"  # the weekly check-in, answered whole


def answered(data: Path, *people: str, env: dict[str, str] | None = None) -> None:
    for person in people:
        done = kitchen_table(
            "chat", "weekly-checkin", "--as", person, data=data, stdin=CHECK_IN, env=env
        )
        assert done.returncode == 0, done.stderr


def export(data: Path, env: dict[str, str] | None = None) -> str:
    done = kitchen_table("export", "--guide", "weekly-checkin", data=data, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_backup_restored_on_a_new_machine_exports_the_same_answers(tmp_path: Path):
    data = tmp_path / "data"
    answered(data, "ana", "ben", "cy")
    before = export(data)
    assert before.count("\n") == 13  # a header and four answers from each of three people
    saved = tmp_path / "backups" / "kt-2026-01-05.db"

    done = kitchen_table("backup", "--out", str(saved), data=data)

    assert done.returncode == 0, done.stderr
    assert "Backed up 3 participants and 12 answers" in done.stdout
    assert "The secret key is not in it" in done.stdout
    assert str(data / "secret.key") in done.stdout
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    secret = (data / "secret.key").read_bytes().strip()
    assert secret not in saved.read_bytes()
    assert not saved.with_name(saved.name + "-wal").exists()  # one self-contained file

    # A new machine: nothing but the secret key, kept apart, and the backup.
    new = tmp_path / "new-machine" / "data"
    new.mkdir(parents=True, mode=0o700)
    shutil.copy(data / "secret.key", new / "secret.key")
    restored = kitchen_table("restore", str(saved), data=new)

    assert restored.returncode == 0, restored.stderr
    assert "Restored 3 participants and 12 answers" in restored.stdout
    assert stat.S_IMODE((new / "kitchen-table.db").stat().st_mode) == 0o600
    assert export(new) == before


def test_a_backup_while_the_bot_runs_and_a_restore_refused_while_it_does(tmp_path: Path):
    data = tmp_path / "data"
    answered(data, "ana")
    saved = tmp_path / "earlier.db"
    assert kitchen_table("backup", "--out", str(saved), data=data).returncode == 0
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KT_")}
    environment.update({"KT_DATA_DIR": str(data), "KT_GUIDES_DIR": str(ROOT / "guides")})
    bot = subprocess.Popen(
        [sys.executable, "-m", "bot", "chat", "weekly-checkin", "--as", "ben"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=tmp_path,
    )
    try:
        assert bot.stdin is not None and bot.stdout is not None
        # Ben's conversation is open (the bot holds the database) once it asks him a question.
        while "?" not in (line := bot.stdout.readline()):
            assert line, "the bot stopped before asking anything"
        bot.stdin.write("yes\n")
        bot.stdin.flush()
        while "[1 of" not in (line := bot.stdout.readline()):
            assert line, "the bot stopped before the first question"

        during = tmp_path / "during.db"
        copied = kitchen_table("backup", "--out", str(during), data=data)
        assert copied.returncode == 0, copied.stderr
        assert "Backed up 2 participants and 4 answers" in copied.stdout

        refused = kitchen_table("restore", str(saved), "--force", data=data)
        assert refused.returncode == 1
        assert "is in use: stop the bot first" in refused.stdout
    finally:
        bot.communicate("/stop\n", timeout=60)
    # Ben's conversation is still there: nothing was replaced under the running bot.
    with sqlite3.connect(data / "kitchen-table.db") as db:
        assert db.execute("SELECT count(*) FROM participants").fetchone()[0] == 2


def test_a_restore_replaces_an_existing_database_only_with_force(tmp_path: Path):
    data = tmp_path / "data"
    answered(data, "ana")
    saved = tmp_path / "one-person.db"
    assert kitchen_table("backup", "--out", str(saved), data=data).returncode == 0
    answered(data, "ben")
    two_people = export(data)

    refused = kitchen_table("restore", str(saved), data=data)

    assert refused.returncode == 1
    assert "There is already a database at" in refused.stdout
    assert "then restore again with --force" in refused.stdout
    assert export(data) == two_people

    forced = kitchen_table("restore", str(saved), "--force", data=data)
    assert forced.returncode == 0, forced.stderr
    assert export(data).count("\n") == 5  # the header and ana's four answers


def _other_database(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE recipes (name TEXT)")
        db.execute("PRAGMA user_version=3")


def _newer_backup(path: Path) -> None:
    shutil.copy(path.parent / "good.db", path)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=999")


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: p.write_text("name,answer\nana,4\n"), "is not a Kitchen Table database"),
        (_other_database, "is an SQLite database, but not Kitchen Table's"),
        (_newer_backup, "was made by a newer Kitchen Table (schema 999"),
        (lambda p: None, "There is no file at"),
    ],
    ids=["a CSV file", "another program's database", "a newer schema", "a missing file"],
)
def test_a_restore_takes_only_a_kitchen_table_database_it_knows(tmp_path: Path, make, said):
    data = tmp_path / "data"
    answered(data, "ana")
    assert kitchen_table("backup", "--out", str(tmp_path / "good.db"), data=data).returncode == 0
    (data / "kitchen-table.db").unlink()
    candidate = tmp_path / "candidate.db"
    make(candidate)

    refused = kitchen_table("restore", str(candidate), data=data)

    assert refused.returncode == 1
    assert said in refused.stdout
    assert not (data / "kitchen-table.db").exists()


def test_a_restore_needs_the_secret_the_backup_was_made_with(tmp_path: Path):
    data = tmp_path / "data"
    answered(data, "ana", env={"KT_SECRET_KEY": "the-first-secret-0123456789"})
    saved = tmp_path / "kt.db"
    done = kitchen_table(
        "backup",
        "--out",
        str(saved),
        data=data,
        env={"KT_SECRET_KEY": "the-first-secret-0123456789"},
    )
    assert "It is in KT_SECRET_KEY" in done.stdout
    new = tmp_path / "new"

    nothing = kitchen_table("restore", str(saved), data=new)
    assert nothing.returncode == 1
    assert "There is no secret key here" in nothing.stdout
    assert str(new / "secret.key") in nothing.stdout

    other = {"KT_SECRET_KEY": "another-secret-0123456789"}
    wrong = kitchen_table("restore", str(saved), data=new, env=other)
    assert wrong.returncode == 1
    assert "is not the one this backup was made with" in wrong.stdout
    assert not (new / "kitchen-table.db").exists()

    anyway = kitchen_table("restore", str(saved), "--other-secret", data=new, env=other)
    assert anyway.returncode == 0, anyway.stderr
    assert "Restored 1 participant and 4 answers" in anyway.stdout


def test_a_backup_needs_a_database_and_keeps_earlier_backups(tmp_path: Path):
    data = tmp_path / "data"
    nothing = kitchen_table("backup", "--out", str(tmp_path / "kt.db"), data=data)
    assert nothing.returncode == 1
    assert f"There is no database at {data / 'kitchen-table.db'}" in nothing.stdout
    assert not (tmp_path / "kt.db").exists()

    answered(data, "ana")
    earlier = tmp_path / "monday.db"
    earlier.write_bytes(b"last week's backup")
    kept = kitchen_table("backup", "--out", str(earlier), data=data)
    assert kept.returncode == 1
    assert "already exists; name a new file, or add --force" in kept.stdout
    assert earlier.read_bytes() == b"last week's backup"


def test_someone_forgotten_after_a_backup_stays_forgotten_when_it_is_restored(tmp_path: Path):
    data = tmp_path / "data"
    answered(data, "ana", "ben")
    saved = tmp_path / "before.db"
    assert kitchen_table("backup", "--out", str(saved), data=data).returncode == 0
    ben = export(data).splitlines()[-1].split(",")[1]  # the last answer's pseudonym
    forgot = kitchen_table("forget", "--participant", ben, data=data)
    assert forgot.returncode == 0, forgot.stdout + forgot.stderr
    without_ben = export(data)
    assert ben not in without_ben

    restored = kitchen_table("restore", str(saved), "--force", data=data)

    assert restored.returncode == 0, restored.stderr
    assert "Restored 2 participants and 8 answers" in restored.stdout
    assert "Erased again: 1 person who asked to be forgotten after this backup" in restored.stdout
    assert export(data) == without_ben
