"""Themes for a guide's question, and a coordinator's corrections to them: the one place
the CLI, the digest and the console ask.

Every call names a guide, a free-text question (step) and a period. Answers are read
as stored (scrubbed), never from a `sensitive` step; the codebook is a record of kind
"codebook" per guide and question (`codebook.py`). An edit is made to the themes as
the period shows them: the first edit keeps every theme shown then in the codebook,
so the next week's answers go to the coordinator's themes, and only what fits none
forms new candidates, marked new. An edit that can't be made raises `CodebookError`
(its key names the phrase that says why) and saves nothing. A web page calls the same
methods: list (`themes`), `examples`, `rename`, `merge`, `split`, each for a guide, a
question and a period; the service does not check roles, its caller does.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, aclosing
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import cast

from bot.flows.guide import Guide, Step, StepKind
from bot.flows.scrub import scrub
from bot.flows.text import localize
from bot.library import GuideLibrary
from bot.reports.themes.codebook import KIND, Codebook, CodebookError, record_key
from bot.reports.themes.model import Answer, QuestionThemes, Theme, Themes
from storage.protocol import RecordStore, ReportStore

IN_PROCESS = 20_000  # answers to one question grouped in the bot's process; more: a worker
MAX_EXAMPLES = 50  # answers offered to choose from when splitting a theme
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # a period open at either end
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def find_themes(answers: Sequence[Answer], *, min_group: int, codebook: Codebook | None) -> Themes:
    """The engine's `find_themes`, imported when first needed: scikit-learn takes over a
    second to import, which every other command would pay for nothing."""
    from bot.reports.themes.engine import find_themes as find

    return find(answers, min_group=min_group, codebook=codebook)


def answer_id(run_id: str, step: str) -> str:
    """An answer's id for themes: opaque, stable, and naming neither person nor run."""
    return hashlib.sha256(f"{run_id}\x00{step}".encode()).hexdigest()[:16]


def records_of(storage: object) -> RecordStore | None:
    """The storage's records, when it keeps them (every backend does; a digest is handed
    its reads only, typed as such)."""
    return cast(RecordStore, storage) if callable(getattr(storage, "record", None)) else None


def free_text_steps(guide: Guide) -> list[Step]:
    """The questions themes may be found for: free text, not sensitive."""
    return [s for s in guide.questions if s.kind is StepKind.ASK and not s.sensitive]


async def read_answers(
    storage: ReportStore, guide: Guide, steps: Sequence[Step], since: datetime | None,
    until: datetime | None,
) -> dict[str, list[Answer]]:  # fmt: skip
    """Each step's free-text answers in [since, until), as stored, with the run's language.

    Read a page at a time from the free-text steps' own rows, each with its run's
    language (`with_language`), kept as plain text without decoding most of them: the
    export's rows, read before, held every step's answers, ~5 s more in a week of a
    million."""
    wanted = {s.id: s for s in steps if s.kind is StepKind.ASK and not s.sensitive}
    found: dict[str, list[Answer]] = {step: [] for step in wanted}
    if not wanted:
        return found
    pages = storage.answer_text_pages(guide.id, list(wanted), since or EARLIEST,
                                      until or LATEST, with_language=True)  # fmt: skip
    async with aclosing(pages):
        async for page in pages:
            for row in page:
                step = wanted[row.step]
                text = _text(row.value)
                if not text or not text.strip():
                    continue
                if not step.scrub:
                    text = scrub(text)  # only scrubbed text, ever
                found[row.step].append(Answer(answer_id(row.run_id, row.step), row.participant,
                                              row.language or guide.default_language, text,
                                              step.quotable))  # fmt: skip
    return found


def _text(value: str) -> str | None:
    """An answer's text from its JSON, or None when it is not text. Most are strings with
    nothing escaped, taken as they are (as `digest_texts._text` does)."""
    if value[:1] == '"' and value[-1:] == '"' and "\\" not in value:
        return value[1:-1]
    decoded = json.loads(value)
    return decoded if isinstance(decoded, str) else None


@dataclass(frozen=True)
class Example:
    """An answer a coordinator may choose when splitting a theme: quotable ones only."""

    id: str
    text: str


class ThemeService:
    """Themes and the codebook, for one storage and one library of guides."""

    def __init__(self, storage: ReportStore, library: GuideLibrary, *, min_group: int) -> None:
        self.storage = storage
        self.library = library
        self.min_group = min_group

    def question(self, guide_id: str, step_id: str) -> tuple[Guide, Step]:
        """The guide and its free-text question, or CodebookError saying what is wrong."""
        loaded = self.library.get(guide_id)
        if loaded is None or loaded.guide is None:
            raise CodebookError("themes_error_no_guide", guide=guide_id)
        guide = loaded.guide
        step = next((s for s in guide.questions if s.id == step_id), None)
        if step is None:
            raise CodebookError("themes_error_no_step", guide=guide_id, step=step_id)
        if step.kind is not StepKind.ASK:
            raise CodebookError("themes_error_not_free_text", step=step_id)
        if step.sensitive:
            raise CodebookError("themes_error_sensitive", step=step_id)
        return guide, step

    async def codebook(self, guide_id: str, step_id: str, now: datetime) -> Codebook | None:
        saved = await self.kept(guide_id, step_id, now)
        return Codebook.from_json(saved) if saved else None

    async def kept(self, guide_id: str, step_id: str, now: datetime) -> bytes | None:
        """The codebook as kept (what an edit replaces, if it is still that)."""
        records = records_of(self.storage)
        if records is None:
            return None
        return await records.record(KIND, record_key(guide_id, step_id), now)

    async def themes(
        self, guide_id: str, step_id: str, since: datetime | None, until: datetime
    ) -> Themes:
        """The question's themes in [since, until), the codebook applied."""
        guide, step = self.question(guide_id, step_id)
        # Read before the answers: an erasure between the two makes these look stale.
        forgotten = await self.storage.forgotten_so_far()
        answers = (await read_answers(self.storage, guide, [step], since, until))[step.id]
        saved = await self.kept(guide_id, step_id, until)
        book = Codebook.from_json(saved) if saved else None
        grouped = await _grouped(answers, self.min_group, book)
        return replace(grouped, codebook=saved, forgotten=forgotten)

    async def still_hold(self, themes: Themes, guide_id: str, step_id: str, now: datetime) -> bool:
        """Whether themes found a while ago still show what the database holds: the
        question's codebook is the one they were found with, and nobody has been
        forgotten since (whose words they might quote). Any instance's edit or erasure
        counts at once."""
        if themes.forgotten != await self.storage.forgotten_so_far():
            return False
        return themes.codebook == await self.kept(guide_id, step_id, now)

    async def examples(
        self, guide_id: str, step_id: str, theme_id: str, since: datetime | None, until: datetime
    ) -> list[Example]:
        """A theme's answers a coordinator may choose from to split it: from a quotable
        question only (its answers may be shown), at most `MAX_EXAMPLES`."""
        guide, step = self.question(guide_id, step_id)
        if not step.quotable:
            raise CodebookError("themes_error_not_quotable", step=step_id)
        answers = (await read_answers(self.storage, guide, [step], since, until))[step.id]
        book = await self.codebook(guide_id, step_id, until)
        theme = _find(await _grouped(answers, self.min_group, book), theme_id)
        inside = set(theme.answers)
        return [Example(a.id, scrub(a.text)) for a in answers if a.id in inside][:MAX_EXAMPLES]

    async def rename(
        self, guide_id: str, step_id: str, theme_id: str, name: str, since: datetime | None,
        until: datetime,
    ) -> Themes:  # fmt: skip
        book, ids, _, _, was = await self._adopted(guide_id, step_id, since, until)
        return await self._save(book.rename(ids.get(theme_id, theme_id), name), was, guide_id,
                                step_id, since, until)  # fmt: skip

    async def merge(
        self, guide_id: str, step_id: str, keep: str, gone: str, since: datetime | None,
        until: datetime,
    ) -> Themes:  # fmt: skip
        """`gone` joins `keep` (which keeps its name)."""
        book, ids, shown, _, was = await self._adopted(guide_id, step_id, since, until)
        sizes = (len(_find(shown, keep).answers), len(_find(shown, gone).answers))
        merged = book.merge(ids.get(keep, keep), ids.get(gone, gone), sizes)
        return await self._save(merged, was, guide_id, step_id, since, until)

    async def split(
        self, guide_id: str, step_id: str, theme_id: str, chosen: Sequence[str], name: str | None,
        since: datetime | None, until: datetime,
    ) -> Themes:  # fmt: skip
        """The chosen answers (ids, from `examples`) leave the theme and start one of their
        own, named `name` if given; the theme keeps the rest."""
        book, ids, shown, answers, was = await self._adopted(guide_id, step_id, since, until)
        theme = _find(shown, theme_id)
        picked = set(chosen)
        if not picked:
            raise CodebookError("themes_error_split_none")
        if not picked <= set(theme.answers):
            raise CodebookError("themes_error_split_outside", theme=theme_id)
        if picked == set(theme.answers):
            raise CodebookError("themes_error_split_all", theme=theme_id)
        same = [a for a in answers if a.language == theme.language]
        people = [a.person for a in same]
        rows = {a.id: n for n, a in enumerate(same)}
        stays = [rows[a] for a in theme.answers if a not in picked]
        leaves = [rows[a] for a in sorted(picked)]
        if min(len({people[n] for n in side}) for side in (stays, leaves)) < 2:
            # A theme is what people share: one person's answers alone, on either side,
            # would be kept in the codebook as their own words.
            raise CodebookError("themes_error_split_one", theme=theme_id)
        from bot.reports.themes.space import centre_of, fit  # see find_themes

        space = fit([a.text for a in same], theme.language)
        book = book.recentre(
            ids.get(theme_id, theme_id), centre_of(space, stays, [people[n] for n in stays])
        )
        book, added = book.add(
            theme.language, centre_of(space, leaves, [people[n] for n in leaves])
        )
        if name is not None:
            book = book.rename(added, name)
        return await self._save(book, was, guide_id, step_id, since, until)

    async def _adopted(
        self, guide_id: str, step_id: str, since: datetime | None, until: datetime
    ) -> tuple[Codebook, dict[str, str], Themes, list[Answer], bytes | None]:
        """The codebook with every theme shown now kept in it (new candidates get ids of
        their own: shown id -> kept id), the themes shown, the answers, and the codebook
        as it was kept (None: none yet)."""
        guide, step = self.question(guide_id, step_id)
        answers = (await read_answers(self.storage, guide, [step], since, until))[step.id]
        was = await self.kept(guide_id, step_id, until)
        book = Codebook.from_json(was) if was else Codebook(guide_id, step_id)
        shown = await _grouped(answers, self.min_group, book)
        ids: dict[str, str] = {}
        for theme in shown.themes:
            if theme.id not in {t.id for t in book.themes}:
                book, ids[theme.id] = book.add(theme.language, theme.centre)
        return book, ids, shown, answers, was

    async def _save(
        self, book: Codebook, was: bytes | None, guide_id: str, step_id: str,
        since: datetime | None, until: datetime,
    ) -> Themes:  # fmt: skip
        """Keep the edited codebook, if nobody else changed it since it was read (another
        coordinator, on this instance or another): else nothing is kept, and they are
        told to look again, rather than one edit silently undoing the other."""
        records = records_of(self.storage)
        if records is None:
            raise CodebookError("themes_error_no_records")
        if not await records.replace_record(KIND, record_key(guide_id, step_id), was,
                                            book.to_json()):  # fmt: skip
            raise CodebookError("themes_error_changed_meanwhile")
        return await self.themes(guide_id, step_id, since, until)


async def _grouped(
    answers: Sequence[Answer], min_group: int, book: Codebook | None,
    worker: ProcessPoolExecutor | None = None,
) -> Themes:  # fmt: skip
    """`find_themes` in a thread: grouping is CPU work (seconds for a big question), and the
    bot, or the console, goes on answering meanwhile. A big question is grouped in a
    short-lived process instead (`worker`, or one made for it), so the bot's own never
    holds scikit-learn (~70 MB once imported, for as long as the bot runs) nor the
    grouping's matrices (a 1M-answer digest's peak: 279 -> ~185 MB)."""
    if len(answers) < IN_PROCESS:
        return await asyncio.to_thread(find_themes, answers, min_group=min_group, codebook=book)
    task = functools.partial(find_themes, list(answers), min_group=min_group, codebook=book)
    if worker is not None:
        return await asyncio.get_running_loop().run_in_executor(worker, task)
    with _worker() as made:
        return await asyncio.get_running_loop().run_in_executor(made, task)


def _worker() -> ProcessPoolExecutor:
    """One process to group in: a fresh interpreter (spawned), nothing of the bot's state."""
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))


def _find(themes: Themes, theme_id: str) -> Theme:
    for theme in themes.themes:
        if theme.id == theme_id:
            return theme
    raise CodebookError("themes_error_unknown", theme=theme_id)


async def question_themes(
    storage: ReportStore, guide: Guide, since: datetime, until: datetime, *, min_group: int,
    language: str,
) -> list[QuestionThemes]:  # fmt: skip
    """The themes of each of a guide's free-text questions in [since, until), each with
    its codebook when there is one, for the digest. Grouping runs in a thread, a big
    question's in a worker process (one for all of them), so the bot goes on answering
    meanwhile."""
    records = records_of(storage)
    out = []
    with ExitStack() as cleanup:
        worker: ProcessPoolExecutor | None = None  # one for every big question, when needed
        for step in free_text_steps(guide):
            # One question's answers at a time: a week of 100,000 answers to each of two
            # questions holds half as many (~40 MB) as reading both at once.
            answers = (await read_answers(storage, guide, [step], since, until))[step.id]
            if worker is None and len(answers) >= IN_PROCESS:
                worker = cleanup.enter_context(_worker())
            found = await _themes_of(records, guide, step, answers, until, min_group, language,
                                     worker)  # fmt: skip
            answers = []  # let them go before the next question's are read
            if found is not None:
                out.append(found)
    return out


async def _themes_of(
    records: RecordStore | None, guide: Guide, step: Step,
    answers: list[Answer], until: datetime, min_group: int, language: str,
    worker: ProcessPoolExecutor | None,
) -> QuestionThemes | None:  # fmt: skip
    """One question's themes for the digest, or None when there are none to show."""
    if len({a.person for a in answers}) < min_group:
        return None
    saved = await records.record(KIND, record_key(guide.id, step.id), until) if records else None
    book = Codebook.from_json(saved) if saved else None
    themes = await _grouped(answers, min_group, book, worker)
    if not themes:
        return None
    text = localize(step.text, language, guide.default_language)
    return QuestionThemes(step.id, text, without_answers(themes))


def without_answers(themes: Themes) -> Themes:
    """Themes as a report shows them: no answer ids, no centres."""
    return replace(themes, themes=[replace(t, answers=(), centre=()) for t in themes.themes])
