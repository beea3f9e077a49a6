"""A fourth channel, written in the test: it can't edit, show buttons or send files.

It declares so (`Capabilities()`), and the core draws for it: choices as a numbered
list, a changed message as a new one. Every shipped guide's recorded transcript
then runs through it to the same answers and the same ending.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.delivery.channel import Capabilities, SendResult, Sent
from bot.delivery.deliverer import Deliverer
from bot.flows.run import RunState
from bot.library import GuideLibrary
from bot.messages import Inbound, Outbound
from tests.conftest import GUIDES, Harness
from tests.test_transcripts import FILES


class PlainChannel:
    """Text in, text out: an SMS gateway, say."""

    name = "plain"
    capabilities = Capabilities()

    def __init__(self) -> None:
        self.sent: list[tuple[str, Outbound]] = []

    async def send(self, address: str, message: Outbound) -> SendResult:
        self.sent.append((address, message))
        return Sent()


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_every_transcript_through_a_channel_without_buttons_or_edits(
    path: Path, storage, clock, phrases
) -> None:
    document = yaml.safe_load(path.read_text("utf-8"))
    harness = Harness(storage, GuideLibrary.from_paths([GUIDES]), clock, phrases)
    plain = PlainChannel()
    deliverer = Deliverer(storage, harness.identity, {"plain": plain}, clock)
    for case in document["cases"]:
        user = case["name"]
        for line in [f"/start {document['guide']}", *map(str, case["inputs"])]:
            inbound = Inbound("plain", user, user, line, language=case.get("language"))
            await harness.dispatcher.handle(inbound)
            await deliverer.drain("plain")
        person = await storage.participant(harness.identity.pseudonym("plain", user))
        answers: dict[str, Any] = {}
        status = None
        if person is not None and person.current_run is not None:
            run = await storage.run(person.current_run)
            assert run is not None
            status = RunState.model_validate_json(run.state).status.value
            answers = {a.step: json.loads(a.value) for a in await storage.answers(run.id)}
        assert (answers, status) == (case["answers"], case["status"]), case["name"]
    assert plain.sent
    for _, message in plain.sent:
        assert not message.buttons and not message.controls and message.edit is None
        assert message.document is None and message.qr is None
    # The consent question's two choices reached them as a list to type from.
    assert any("  1. " in m.text and "  2. " in m.text for _, m in plain.sent)
