"""A guide made for results tests, and answers to it written straight to storage: who
works where, how stressed they are, their hours, a quotable story, a note not to be
quoted and a sensitive question, for tests of the console's results and the public
report (tests/test_console_results.py, tests/test_public_report.py); and three things
people wrote about, six answers each, for the themes tests (in process and in a browser)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bot.library import GuideLibrary, read_guide_file
from storage.protocol import Storage
from storage.rows import AnswerRow, Commit, RunRow

GUIDE_ID = "kitchen-pulse"
GUIDE = """\
guide: kitchen-pulse
version: 1
title: {en: Kitchen pulse, es: Pulso de cocina}
languages: [en, es]
public: %(public)s
steps:
  - id: dept
    choose: {en: Where do you work?, es: ¿Dónde trabajas?}
    options:
      - {id: kitchen, label: {en: Kitchen, es: Cocina}}
      - {id: front, label: {en: Front of house, es: Sala}}
      - {id: office, label: {en: Office, es: Oficina}}
  - id: stress
    scale: {en: How stressed are you?, es: ¿Cuánto estrés tienes?}
    range: [1, 5]
  - id: hours
    number: {en: How many hours last week?, es: ¿Cuántas horas la semana pasada?}
    range: [0, 100]
  - id: story
    ask: {en: Tell us about your week, es: Cuéntanos tu semana}
    quotable: true
  - id: note
    ask: {en: Anything just for us?, es: ¿Algo solo para nosotros?}
    optional: true
  - id: pay
    sensitive: true
    choose: {en: Is your pay enough?, es: ¿Te alcanza el sueldo?}
    options:
      - {id: enough, label: {en: Enough, es: Alcanza}}
      - {id: short, label: {en: Not enough, es: No alcanza}}
"""


# Three themes, six answers each: better pay, a raise, hours cut (one answer with markup
# that must be shown escaped).
PAY = [
    "we need better pay",
    "better pay please",
    "pay should be better",
    "pay us better",
    "<b>x</b> better pay & rent",
    "better pay for all of us",
]
RAISE = [
    "better pay, the raise was tiny",
    "better pay: no raise this year",
    "a raise and better pay",
    "better pay and a real raise",
    "the raise was small, pay better",
    "no raise, better pay needed",
]
HOURS = [
    "my hours got cut",
    "hours cut to 20 a week",
    "they cut hours without notice",
    "hours cut again",
    "fewer hours every month, hours cut",
    "hours cut for everyone",
]


def add_guide(library: GuideLibrary, folder: Path, *, public: bool = True) -> None:
    path = folder / f"{GUIDE_ID}.yaml"
    path.write_text(GUIDE % {"public": "true" if public else "false"}, "utf-8")
    loaded = read_guide_file(path)
    assert loaded.guide is not None, loaded
    library.add(loaded)


@dataclass(frozen=True)
class Person:
    dept: str
    stress: int
    hours: int
    story: str = "a long week"
    note: str = "just between us"
    pay: str = "short"


async def answer(storage: Storage, people: list[Person], at: datetime, tag: str) -> None:
    """Each person answers every question once, at `at` (runs named by `tag`)."""
    for n, person in enumerate(people):
        run_id, who = f"{tag}-run{n}", f"{tag}-p{n}"
        values = [("dept", "choose", person.dept), ("stress", "scale", person.stress),
                  ("hours", "number", person.hours), ("story", "ask", person.story),
                  ("note", "ask", person.note), ("pay", "choose", person.pay)]  # fmt: skip
        await storage.commit(
            Commit(
                runs=[RunRow(run_id, who, GUIDE_ID, 1, "h", "finished", "{}", at, at)],
                answers=[
                    AnswerRow(
                        run_id,
                        step,
                        who,
                        GUIDE_ID,
                        1,
                        kind,
                        json.dumps(value),
                        at + timedelta(seconds=i),
                    )
                    for i, (step, kind, value) in enumerate(values)
                ],
            )
        )
