"""A quote knows whose words it is, wherever it goes: a worker process and back, a
template, the list of people a report quotes."""

from __future__ import annotations

import pickle

import pytest

from bot.reports.quotes import Quote, quoting
from bot.reports.render import Reports

pytestmark = pytest.mark.same_on_every_backend


def test_a_quote_is_its_text_everywhere_and_keeps_its_author_through_a_worker():
    said = Quote("More rest & fair pay", "p1")
    assert said == "More rest & fair pay" and said.casefold() == "more rest & fair pay"
    back = pickle.loads(pickle.dumps((said,)))[0]  # themes come back from a worker so
    assert back == said and back.person == "p1"
    assert quoting([back, Quote("rest", "p0"), "a plain string", Quote("again", "p1")]) == [
        "p0",
        "p1",
    ]


def test_a_template_shows_the_words_escaped_and_never_the_author(tmp_path):
    from bot.locales import load_phrasebook

    (tmp_path / "one.j2").write_text("{{ q }}\n")
    reports = Reports(load_phrasebook(), override=tmp_path)
    shown = reports.render("one", "html", "en", q=Quote("<b>pay</b>", "p1secret"))
    assert "&lt;b&gt;pay&lt;/b&gt;" in shown and "p1secret" not in shown
