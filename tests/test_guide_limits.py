"""Oversized guides are refused in one line, before they are read, and never stop the bot.

How long checking takes is measured by hand, not asserted here (a shared machine's
speed varies): a guide at both limits (500 steps, 256 KB) checks in about 0.08 s.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from admin.guides import check
from bot.flows.loader import MAX_GUIDE_BYTES, MAX_STEPS, parse_guide
from bot.library import GuideLibrary, read_guide_file
from tests.conftest import GUIDES
from tests.test_cli import kitchen_table

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py


def steps_guide(count: int) -> str:
    steps = "".join(f"  - id: s{n}\n    say: Hello {n}\n" for n in range(count))
    return f"guide: many\nversion: 1\ntitle: Many steps\nsteps:\n{steps}"


def test_a_guide_just_over_the_size_limit_is_refused_in_one_line(tmp_path: Path):
    big = tmp_path / "big.yaml"
    text = steps_guide(3)
    big.write_text(text + "#" * (MAX_GUIDE_BYTES + 1 - len(text)) + "\n", "utf-8")
    out = io.StringIO()
    assert check([big], out) == 1
    assert out.getvalue().splitlines() == [
        f"{big}: this file is more than 256 KB; a guide can be at most 256 KB and 500 steps: "
        "split it into smaller guides",
        "1 problem in 1 file(s).",
    ]


def test_a_guide_at_the_size_limit_is_accepted(tmp_path: Path):
    text = steps_guide(3)
    padded = text + "#" * (MAX_GUIDE_BYTES - len(text) - 1) + "\n"
    assert len(padded.encode()) == MAX_GUIDE_BYTES
    assert parse_guide(padded, "g.yaml").problems == []


def test_a_50_mb_file_is_refused_without_being_read(tmp_path: Path, monkeypatch):
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as file:
        file.truncate(50 * 1024 * 1024)  # sparse: costs the disk nothing

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("an oversized guide was opened")

    monkeypatch.setattr(Path, "open", no_reading)
    monkeypatch.setattr(Path, "read_text", no_reading)
    monkeypatch.setattr(Path, "read_bytes", no_reading)
    loaded = read_guide_file(huge)
    assert [str(p) for p in loaded.problems] == [
        f"{huge}: this file is 50.0 MB; a guide can be at most 256 KB and 500 steps: "
        "split it into smaller guides"
    ]


def test_a_guide_with_too_many_steps_is_refused_in_one_line():
    assert parse_guide(steps_guide(MAX_STEPS), "g.yaml").problems == []
    refused = parse_guide(steps_guide(MAX_STEPS + 1), "g.yaml")
    assert refused.guide is None
    assert [str(p) for p in refused.problems] == [
        "g.yaml:4: this guide has 501 steps; a guide can have at most 500: "
        "split it into smaller guides"
    ]


def test_a_refused_guide_is_skipped_and_the_others_are_served(tmp_path: Path):
    folder = tmp_path / "guides"
    folder.mkdir()
    shutil.copy(GUIDES / "weekly-checkin.yaml", folder)
    (folder / "many.yaml").write_text(steps_guide(MAX_STEPS + 1), "utf-8")
    with (folder / "huge.yaml").open("wb") as file:
        file.truncate(50 * 1024 * 1024)
    library = GuideLibrary.from_paths([folder])
    assert library.get("weekly-checkin") is not None
    assert [str(p).split(": ", 1)[1][:18] for p in library.problems] == [
        "this file is 50.0 ",
        "this guide has 501",
    ]


@pytest.mark.skipif(os.name != "posix", reason="runs the bot as a process")
def test_the_bot_starts_with_a_warning_and_serves_the_other_guides(tmp_path: Path):
    folder = tmp_path / "guides"
    folder.mkdir()
    shutil.copy(GUIDES / "weekly-checkin.yaml", folder)
    with (folder / "huge.yaml").open("wb") as file:
        file.truncate(50 * 1024 * 1024)
    done = kitchen_table(
        "chat",
        "weekly-checkin",
        "--as",
        "rosa",
        data=tmp_path / "data",
        stdin="yes\n4\n",
        env={"KT_GUIDES_DIR": str(folder)},
    )
    assert done.returncode == 0, done.stderr
    assert "Weekly check-in" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if "huge.yaml" in line]
    assert len(warnings) == 1 and "at most 256 KB" in warnings[0]
