"""The Open data page, in process on the run's storage backend: each export downloaded and
read back (CSV with its header and rows, one row per conversation, JSON Lines, and the FLOIP
package, which frictionless validates as tests/test_exports.py does); dates, the minimum
group and sensitive questions (admins only) as asked; file names that say the guide, the
kind and the dates and no one; sent as it is written; every download in the audit log; and
the digest archive: the digests sent, each made again when opened (without anyone forgotten
since), and any week's made on demand."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import frictionless
import pytest

from bot.console import opendata
from bot.reports import exports
from bot.scheduling.scheduler import DIGEST, LEASE
from storage.protocol import Storage
from tests.conftest import FakeClock
from tests.console_world import World, open_world

GUIDE = "changing-work"
# One whole conversation of changing-work: sector, years, changes (technology), its story,
# a change, security 4, pay (sensitive), voice, helps, an idea, hope; nothing else.
ANSWERS = ["yes", "{sector}", "5", "1", "Robots at the till", "A new manager", "4", "1", "3",
           "1", "More staff", "4", "/skip"]  # fmt: skip


@pytest.fixture
async def world(storage: Storage, clock: FakeClock) -> AsyncIterator[World]:
    opened = await open_world(storage, clock)
    yield opened
    await opened.close()


async def take_part(world: World, people: range, sector: str = "1") -> None:
    for n in people:
        await world.say(f"/start {GUIDE}", f"p{n}")
        for text in ANSWERS:
            await world.say(text.format(sector=sector), f"p{n}")


async def filled(world: World) -> None:
    """Six people on Monday 2 March (one of them alone in construction), two on Thursday."""
    await take_part(world, range(5))
    await take_part(world, range(5, 6), sector="4")
    world.clock.advance(days=3)
    await take_part(world, range(6, 8))


async def coordinator(world: World) -> None:
    await world.grant("cora", "coordinator")
    await world.sign_in("cora")


async def download(world: World, **query: str):  # type: ignore[no-untyped-def]
    answer = await world.client.get("/console/data/export", params={"guide": GUIDE, **query})
    return answer


def attachment(answer) -> str:  # type: ignore[no-untyped-def]
    found = re.fullmatch(r'attachment; filename="([^"]+)"', answer.headers["Content-Disposition"])
    assert found is not None, answer.headers["Content-Disposition"]
    return found.group(1)


async def exported(world: World) -> list[str]:
    return [e.detail for e in await world.services.audit_log.newest() if e.what == "exported"]


async def test_csv_has_the_header_and_a_row_per_answer_without_sensitive_questions(world: World):
    await filled(world)
    await coordinator(world)
    answer = await download(world, format="csv")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert answer.headers["Transfer-Encoding"] == "chunked"  # streamed, no length up front
    assert attachment(answer) == "changing-work-answers-start-to-now.csv"
    reader = csv.DictReader(io.StringIO(await answer.text()))
    assert reader.fieldnames == exports.LONG_FIELDS
    rows = list(reader)
    assert len({r["run"] for r in rows}) == 8
    assert len(rows) == 8 * 11  # eleven answers each; pay_enough is sensitive, left out
    assert "pay_enough" not in {r["step"] for r in rows}
    assert {r["step"]: r["answer"] for r in rows}["tech_story"] == "Robots at the till"
    assert all(re.fullmatch(r"[0-9a-f]{32}", r["participant"]) for r in rows)
    assert sorted(r["answer"] for r in rows if r["step"] == "sector") == (
        ["construction"] + ["manufacturing"] * 7)  # fmt: skip
    assert await exported(world) == [
        "changing-work-answers-start-to-now.csv (minimum group off, sensitive left out)"
    ]


async def test_dates_and_the_minimum_group_as_asked(world: World):
    await filled(world)
    await coordinator(world)
    monday = await download(world, format="csv", until="2026-03-02", min_group="1")
    assert attachment(monday) == "changing-work-answers-start-to-2026-03-02.csv"
    rows = list(csv.DictReader(io.StringIO(await monday.text())))
    assert len({r["run"] for r in rows}) == 6
    sectors = [r["answer"] for r in rows if r["step"] == "sector"]
    assert sectors == ["manufacturing"] * 5  # construction, chosen by one, is left out
    thursday = await download(world, format="csv", since="2026-03-05", until="2026-03-05")
    assert attachment(thursday) == "changing-work-answers-2026-03-05-to-2026-03-05.csv"
    assert len({r["run"] for r in csv.DictReader(io.StringIO(await thursday.text()))}) == 2


async def test_one_row_per_conversation_and_json_lines(world: World):
    await filled(world)
    await coordinator(world)
    wide = await download(world, format="wide")
    assert attachment(wide) == "changing-work-runs-start-to-now.csv"
    runs = list(csv.DictReader(io.StringIO(await wide.text())))
    assert len(runs) == 8 and {r["tech_story"] for r in runs} == {"Robots at the till"}
    lines = await download(world, format="jsonl")
    assert attachment(lines) == "changing-work-answers-start-to-now.jsonl"
    assert lines.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    records = [json.loads(line) for line in (await lines.text()).splitlines()]
    assert len(records) == 8 * 11
    assert set(records[0]) == set(exports.LONG_FIELDS)
    assert {r["step"]: r["answer"] for r in records}["changes"] == ["technology"]


async def test_the_floip_package_validates(world: World, tmp_path: Path):
    await filled(world)
    await coordinator(world)
    answer = await download(world, format="floip", min_group="1")
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/zip"
    assert attachment(answer) == "changing-work-floip-start-to-now.zip"
    with zipfile.ZipFile(io.BytesIO(await answer.read())) as package:
        assert package.testzip() is None
        package.extractall(tmp_path)
    folder = tmp_path / "changing-work-floip"
    descriptor = json.loads((folder / "datapackage.json").read_text())
    assert descriptor["profile"] == "flow-results-package"
    resource = descriptor["resources"][0]
    assert "pay_enough" not in resource["schema"]["questions"]
    copy = dict(descriptor, profile="data-package")  # as tests/test_exports.py checks it
    (folder / "as-data-package.json").write_text(json.dumps(copy))
    report = frictionless.validate(str(folder / "as-data-package.json"))
    assert report.valid, report.flatten(["type", "note"])
    rows = json.loads((folder / resource["path"]).read_text())
    assert len(rows) == 8 * 11 - 1  # the sector chosen by one person, left out
    assert {row[4] for row in rows} <= set(resource["schema"]["questions"])


async def test_sensitive_questions_only_for_admins(world: World):
    await filled(world)
    await coordinator(world)
    page = await (await world.client.get("/console/data")).text()
    assert 'name="sensitive"' not in page and "only an admin can include them" in page
    refused = await download(world, format="csv", sensitive="1")
    assert refused.status == 403
    assert await exported(world) == []
    world.client.session.cookie_jar.clear()
    await world.sign_in("root")
    assert 'name="sensitive"' in await (await world.client.get("/console/data")).text()
    answer = await download(world, format="csv", sensitive="1")
    assert attachment(answer) == "changing-work-answers-start-to-now-with-sensitive.csv"
    rows = list(csv.DictReader(io.StringIO(await answer.text())))
    assert sum(r["step"] == "pay_enough" for r in rows) == 8
    assert await exported(world) == [
        "changing-work-answers-start-to-now-with-sensitive.csv (minimum group off, "
        "sensitive included)"
    ]


async def test_a_large_export_goes_out_as_it_is_written(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    await filled(world)
    await coordinator(world)
    monkeypatch.setattr(opendata, "CHUNK", 512)  # as if 64 KiB were 512 bytes
    answer = await download(world, format="csv")
    pieces = [data async for data, _ in answer.content.iter_chunks()]
    assert len(pieces) > 5
    whole = b"".join(pieces).decode()
    assert len(list(csv.DictReader(io.StringIO(whole)))) == 8 * 11


@pytest.mark.parametrize(
    ("query", "says", "field"),
    [
        ({"guide": "nope"}, "Choose one of the guides in the list.", "export-guide"),
        ({"since": "2026-02-31"}, "That isn&#39;t a date", "export-since"),
        ({"since": "2026-03-05", "until": "2026-03-01"}, "The last day comes before the first",
         "export-until"),
    ],
)  # fmt: skip
async def test_what_cant_be_exported_is_said_keeping_the_form(
    world: World, query: dict[str, str], says: str, field: str
):
    await coordinator(world)
    answer = await download(world, format="jsonl", **query)
    assert answer.status == 400
    page = await answer.text()
    assert says in page
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', page)
    assert 'value="jsonl" checked' in page  # what they chose is kept
    assert await exported(world) == []


async def sent_digest(world: World, due: datetime) -> None:
    """The scheduler's record of a weekly digest sent (by whichever instance ticked)."""
    storage = world.storage
    assert await storage.claim_occurrence(DIGEST, "UTC", due, due, LEASE) == "claimed"
    await storage.finish_occurrence(DIGEST, "UTC", due, "sent")


async def test_the_digest_archive_and_a_digest_made_for_any_week(world: World):
    await filled(world)
    await coordinator(world)
    page = await (await world.client.get("/console/data")).text()
    assert "None sent yet" in page
    await sent_digest(world, datetime(2026, 2, 23, 8, tzinfo=UTC))  # a week with nobody
    await sent_digest(world, datetime(2026, 3, 9, 8, tzinfo=UTC))
    # Claimed and never finished (its instance died): not one that was sent.
    await world.storage.claim_occurrence(DIGEST, "UTC", datetime(2026, 3, 2, 8, tzinfo=UTC),
                                         datetime(2026, 3, 2, 8, tzinfo=UTC), LEASE)  # fmt: skip
    page = await (await world.client.get("/console/data")).text()
    assert page.index("Week to 2026-03-09") < page.index("Week to 2026-02-23")  # newest first
    assert "Week to 2026-03-02" not in page
    opened = await world.client.get("/console/data/digests/2026-03-09")
    assert opened.status == 200
    kept = await opened.text()
    assert "2026-03-02" in kept and "People: 8" in kept  # the seven days to that Monday
    # Its inline styles may apply (the page is styled inline), and still no script may run.
    policy = opened.headers["Content-Security-Policy"]
    assert "style-src 'unsafe-inline'" in policy and "script-src" not in policy
    assert "default-src 'none'" in policy
    overview = await world.client.get("/console/")
    assert "style-src 'self'" in overview.headers["Content-Security-Policy"]
    saved = await world.client.get("/console/data/digests/2026-03-09", params={"download": "1"})
    assert attachment(saved) == "digest-2026-03-09.html"
    assert (await world.client.get("/console/data/digests/2026-02-16")).status == 404
    assert (await world.client.get("/console/data/digests/2026-03-02")).status == 404
    assert (await world.client.get("/console/data/digests/..%2Fsecret")).status == 404

    made = await world.client.get("/console/data/digest", params={"week_ending": "2026-03-05"})
    assert made.status == 200
    text = await made.text()
    assert "How is work changing" in text or "changing" in text.lower()
    assert "2026-02-27" in text and "2026-03-06" in text  # the seven days to the 5th
    whats = [e.what for e in await world.services.audit_log.newest()]
    assert whats.count("digest_opened") == 2 and whats.count("digest_downloaded") == 1
    bad = await world.client.get("/console/data/digest", params={"week_ending": "soon"})
    assert bad.status == 400 and 'value="soon"' in await bad.text()


async def test_a_digest_sent_opens_without_whoever_has_since_been_forgotten(world: World):
    # A theme quotes three, and "In their own words" three more: six forgotten of twelve.
    stories = {n: f"Robots took over till number {n}" for n in range(12)}
    for n, story in stories.items():
        await world.say(f"/start {GUIDE}", f"p{n}")
        for text in ANSWERS:
            await world.say(story if text == "Robots at the till" else text.format(sector="1"),
                            f"p{n}")  # fmt: skip
    await coordinator(world)
    await sent_digest(world, datetime(2026, 3, 9, 8, tzinfo=UTC))
    before = await (await world.client.get("/console/data/digests/2026-03-09")).text()
    quoted = [n for n, story in stories.items() if story in before]
    assert quoted, "the digest quotes nobody: nothing to test"
    for n in quoted:
        await world.say("/forget", f"p{n}")
        await world.say("yes", f"p{n}")
    after = await (await world.client.get("/console/data/digests/2026-03-09")).text()
    assert not [n for n in quoted if stories[n] in after]
    assert f"People: {12 - len(quoted)}" in after


async def test_only_coordinators_and_admins(world: World):
    await world.grant("fay", "facilitator")
    await world.sign_in("fay")
    assert (await world.client.get("/console/data")).status == 403
    assert (await download(world, format="csv")).status == 403
