"""Recorded transcripts for every shipped guide: inputs -> what the bot said and kept.

Each file in tests/transcripts/ holds cases written by hand (a language and the
lines a participant types). The expected transcript and stored answers are
generated with `pytest tests/test_transcripts.py --regen-transcripts`; review the
diff like any other change. The clock and run ids are fixed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.channels.terminal.channel import render_plain
from bot.flows.run import RunState
from bot.library import GuideLibrary
from tests.conftest import GUIDES, Harness

TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"
FILES = sorted(TRANSCRIPTS.glob("*.yaml"))


class _Literal(str):
    """A string YAML writes as a block, so transcripts read like the conversation."""


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


yaml.SafeDumper.add_representer(_Literal, _literal)


async def play(harness: Harness, guide: str, case: dict[str, Any]) -> dict[str, Any]:
    turns = []
    user = case["name"]
    lines = [f"/start {guide}", *[str(line) for line in case["inputs"]]]
    for line in lines:
        sent = await harness.say(line, user=user, language=case.get("language"))
        turns.append(
            {"in": line, "out": _Literal("".join(render_plain(m) for m in sent).rstrip() + "\n")}
        )
    person = await harness.storage.participant(harness.pseudonym(user))
    answers: dict[str, Any] = {}
    status = None
    if person is not None and person.current_run is not None:
        run = await harness.storage.run(person.current_run)
        assert run is not None
        status = RunState.model_validate_json(run.state).status.value
        answers = {a.step: json.loads(a.value) for a in await harness.storage.answers(run.id)}
    return {"transcript": turns, "answers": answers, "status": status}


def test_every_shipped_guide_has_a_transcript():
    shipped = {p.stem for p in GUIDES.glob("*.yaml")}
    recorded = {yaml.safe_load(p.read_text("utf-8"))["guide"] for p in FILES}
    assert shipped <= recorded


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_transcript(path: Path, storage, clock, phrases, request: pytest.FixtureRequest):
    document = yaml.safe_load(path.read_text("utf-8"))
    library = GuideLibrary.from_paths([GUIDES])
    assert not library.problems
    harness = Harness(storage, library, clock, phrases)
    regenerate = request.config.getoption("--regen-transcripts")
    for case in document["cases"]:
        played = await play(harness, document["guide"], case)
        if regenerate:
            case.update(played)
            continue
        expected = {key: case.get(key) for key in ("transcript", "answers", "status")}
        assert played == expected, f"case {case['name']!r} differs; regenerate and review"
    if regenerate:
        text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=100)
        path.write_text(text, "utf-8")
