"""Rules that need the whole guide: unique ids, earlier steps in `when`, options, ranges,
languages and templates. Each problem names where it is (a path into the YAML) and
what to change, so that an author who is not a programmer can fix it.

Every rule looks at each step once, against sets of what came before, so checking
takes time in proportion to the guide; the loader stops after enough problems.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from bot.flows.expressions import (
    ExpressionError,
    compared_values,
    condition_names,
    condition_problems,
    template_names,
    template_problems,
)
from bot.flows.guide import RESERVED_STEP_IDS, Guide, Step, StepKind
from bot.flows.text import Text

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    path: Path
    step: str | None
    message: str


def did_you_mean(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def check_guide(guide: Guide) -> Iterator[Finding]:
    """Every whole-guide problem in `guide`, lazily; none means it is ready to use."""
    return _check(guide)


def notes_for(guide: Guide) -> list[Finding]:
    """What the author should know but a check of the file can't verify (never an error)."""
    if guide.keep_in_touch is None:
        return []
    cohort = guide.keep_in_touch
    return [
        Finding(
            ("keep_in_touch",),
            None,
            f"note: at the end this guide offers to keep in touch through the cohort "
            f"'{cohort}', which must exist on the bot (kitchen-table cohort add {cohort}); "
            "until it does, nobody is offered it",
        )
    ]


def _check(guide: Guide) -> Iterator[Finding]:
    no_steps: set[str] = set()
    yield from _texts(guide, ("title",), None, guide.title, no_steps)
    if guide.summary is not None:
        yield from _texts(guide, ("summary",), None, guide.summary, no_steps)
    if guide.consent is not None:
        yield from _texts(guide, ("consent",), None, guide.consent, no_steps)
    all_ids = {s.id for s in guide.steps}
    seen: dict[str, int] = {}
    earlier: dict[str, Step] = {}
    for index, step in enumerate(guide.steps):
        at: Path = ("steps", index)
        if step.id in seen:
            yield Finding(
                (*at, "id"),
                step.id,
                f"the id '{step.id}' is already used by step {seen[step.id] + 1}; "
                "give each step its own id",
            )
        seen.setdefault(step.id, index)
        if step.id in RESERVED_STEP_IDS:
            yield Finding(
                (*at, "id"),
                step.id,
                f"'{step.id}' is a word conditions use themselves; call the step something else",
            )
        yield from _condition(step, at, earlier, all_ids)
        yield from _texts(guide, (*at, step.kind.value), step.id, step.text, earlier)
        if step.help is not None:
            yield from _texts(guide, (*at, "help"), step.id, step.help, earlier)
        yield from _options(guide, step, at)
        yield from _numbers(step, at)
        for value, label in (step.labels or {}).items():
            yield from _texts(guide, (*at, "labels", value), step.id, label, no_steps)
        yield from _translated(guide, (*at, "labels"), step.id, list((step.labels or {}).values()))
        if step.sensitive and step.quotable:
            yield Finding(
                (*at, "quotable"),
                step.id,
                "a sensitive step is never shown, so it can't be quotable; remove one of the two",
            )
        earlier.setdefault(step.id, step)


def _condition(
    step: Step, at: Path, earlier: dict[str, Step], all_ids: set[str]
) -> Iterator[Finding]:
    if step.when is None:
        return
    where: Path = (*at, "when")
    try:
        names = condition_names(step.when)
        refused = condition_problems(step.when)
    except ExpressionError as error:
        yield Finding(where, step.id, f"{error}; write it like worry >= 4")
        return
    for reason in refused:
        yield Finding(
            where,
            step.id,
            f"'when' can only compare earlier answers, like worry >= 4 or "
            f"sector == 'retail': {reason}",
        )
    for name in sorted(names):
        if name in earlier:
            continue
        if name in all_ids:
            yield Finding(
                where,
                step.id,
                f"'when' uses '{name}', which comes later; "
                "a condition can only use earlier answers",
            )
        else:
            yield Finding(
                where,
                step.id,
                f"'when' uses '{name}', which is not a step id{did_you_mean(name, earlier)}",
            )
    for name, value in compared_values(step.when):
        other = earlier.get(name)
        if other is None or other.kind not in (StepKind.CHOOSE, StepKind.CHOOSE_MANY):
            continue
        ids = [option.id for option in other.option_list()]
        if value not in ids:
            yield Finding(
                where,
                step.id,
                f"'when' compares '{name}' with '{value}', which is not one of its option ids "
                f"({', '.join(ids)}){did_you_mean(value, ids)}",
            )


def _translated(guide: Guide, at: Path, step: str, texts: list[Text]) -> Iterator[Finding]:
    """Options or scale labels written in one language, in a guide with several.

    People tap or type these in their own language: one written only once can't be
    read, nor typed, in the others (a plain text serves every language elsewhere).
    """
    plain = [text for text in texts if isinstance(text, str)]
    if len(guide.languages) < 2 or not plain:
        return
    example = ", ".join(f"{language}: ..." for language in guide.languages)
    if at[-1] == "options":
        what = "options" if len(plain) > 1 else "option"
        fix = f"write each like {{id: some-id, label: {{{example}}}}}"
    else:
        what = "labels" if len(plain) > 1 else "label"
        fix = f"write each like 1: {{{example}}}"
    shown = ", ".join(f"'{text}'" for text in plain[:3]) + (", ..." if len(plain) > 3 else "")
    yield Finding(
        at,
        step,
        f"the {what} {shown} {'are' if len(plain) > 1 else 'is'} in one language only, "
        f"but the guide is in {', '.join(guide.languages)}; {fix}",
    )


def _texts(
    guide: Guide, at: Path, step: str | None, text: Text, earlier: Collection[str]
) -> Iterator[Finding]:
    declared = guide.languages
    # A plain string is the default language's text and serves every language.
    variants = {declared[0]: text} if isinstance(text, str) else text
    if isinstance(text, dict):
        for language in declared:
            if language not in text:
                yield Finding(
                    at, step, f"this text has no '{language}' version; add {language}: ..."
                )
        known = set(declared)
        for language in text:
            if language not in known:
                yield Finding(
                    (*at, language),
                    step,
                    f"'{language}' is not one of the guide's languages ({', '.join(declared)}); "
                    "add it to 'languages' or remove it",
                )
    for language, source in variants.items():
        where = at if isinstance(text, str) else (*at, language)
        try:
            names = template_names(source)
            refused = template_problems(source)
        except ExpressionError as error:
            yield Finding(where, step, f"{error}; check the {{{{ }}}} braces")
            continue
        for reason in refused:
            yield Finding(
                where,
                step,
                f"a text can only show earlier answers, like {{{{ sector }}}}, "
                f"and {{{{ guide.title }}}}: {reason}",
            )
        for name in sorted(names):
            if name == "guide" or name in earlier:
                continue
            yield Finding(
                where,
                step,
                f"the text shows '{{{{ {name} }}}}', but '{name}' is not an earlier step"
                f"{did_you_mean(name, [*earlier, 'guide'])}",
            )


def _options(guide: Guide, step: Step, at: Path) -> Iterator[Finding]:
    if step.kind is not StepKind.CHOOSE_MANY:
        for key in ("min", "max"):
            if getattr(step, key) is not None:
                yield Finding((*at, key), step.id, f"'{key}' is only for choose_many steps")
    if step.kind not in (StepKind.CHOOSE, StepKind.CHOOSE_MANY):
        if step.options is not None:
            yield Finding(
                (*at, "options"), step.id, "only choose and choose_many steps take options"
            )
        return
    if not step.options:
        yield Finding(
            at, step.id, f"a {step.kind.value} step needs options, like options: [Yes, No]"
        )
        return
    if len(step.options) < 2:
        yield Finding((*at, "options"), step.id, "give at least two options to choose from")
    seen: set[str] = set()
    for index, (raw, option) in enumerate(zip(step.options, step.option_list(), strict=True)):
        where: Path = (*at, "options", index)
        if option.id in seen:
            yield Finding(
                where,
                step.id,
                f"two options have the id '{option.id}'; give each option a different label or id",
            )
        seen.add(option.id)
        if not isinstance(raw, str):
            yield from _texts(guide, (*where, "label"), step.id, raw.label, set())
    yield from _translated(guide, (*at, "options"), step.id, [o.label for o in step.option_list()])
    if step.kind is StepKind.CHOOSE:
        return
    low, high = step.choice_bounds()
    if step.max is not None and step.max > len(step.options):
        yield Finding(
            (*at, "max"),
            step.id,
            f"'max' is {step.max} but there are only {len(step.options)} options",
        )
    if low > high:
        yield Finding((*at, "min"), step.id, f"'min' ({low}) is more than 'max' ({high})")


def _numbers(step: Step, at: Path) -> Iterator[Finding]:
    if step.range is not None:
        low, high = step.range
        if step.kind not in (StepKind.SCALE, StepKind.NUMBER):
            yield Finding((*at, "range"), step.id, "only scale and number steps take a range")
        elif low > high:
            yield Finding(
                (*at, "range"),
                step.id,
                f"the range [{low:g}, {high:g}] is reversed; write [{high:g}, {low:g}]",
            )
        elif step.kind is StepKind.SCALE and not (low.is_integer() and high.is_integer()):
            yield Finding((*at, "range"), step.id, "a scale's range must be whole numbers")
        elif step.kind is StepKind.SCALE and high - low > 10:
            yield Finding(
                (*at, "range"),
                step.id,
                "a scale can have at most 11 points; use a number step for wider ranges",
            )
    if step.labels is not None:
        if step.kind is not StepKind.SCALE:
            yield Finding((*at, "labels"), step.id, "only scale steps take labels")
            return
        low_i, high_i = step.scale_range()
        for value in step.labels:
            if not low_i <= value <= high_i:
                yield Finding(
                    (*at, "labels", value),
                    step.id,
                    f"the label for {value} is outside the range {low_i} to {high_i}",
                )
    if step.max_length is not None and step.kind is not StepKind.ASK:
        yield Finding((*at, "max_length"), step.id, "'max_length' is only for ask steps")
