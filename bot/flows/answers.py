"""Turn what a participant typed or tapped into an answer for a step, or say why not.

Parsing is forgiving: an option can be given by its number, its label in any
of the guide's languages, or its id; a number may come with words around it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from bot.flows.guide import Guide, Step, StepKind
from bot.flows.scrub import strip_invisible
from bot.flows.text import all_variants, fold, localize

AnswerValue = str | int | float | list[str] | None


@dataclass(frozen=True)
class Parsed:
    """A valid answer, ready to store."""

    value: AnswerValue


@dataclass(frozen=True)
class Invalid:
    """Why an answer was not accepted: a phrase key and its placeholders."""

    reason: str
    params: dict[str, object] = field(default_factory=dict)


_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+$")


def tapped_option(step: Step, value: str) -> str | None:
    """The option a button tap carries: its id, or `#n` (its position) where a platform
    could not fit the id in a button."""
    options = step.option_list()
    if value.startswith("#") and value[1:].isdigit():
        index = int(value[1:])
        return options[index].id if index < len(options) else None
    return value if value in {option.id for option in options} else None


def match_option(step: Step, typed: str) -> str | None:
    """The id of the option `typed` names: its label or id, else its 1-based number."""
    options = step.option_list()
    key = fold(typed)
    # Labels and ids first, so that `options: [3, 4, 5]` means what it says.
    for option in options:
        if key == fold(option.id) or any(key == fold(v) for v in all_variants(option.label)):
            return option.id
    if key.isdigit():
        index = int(key) - 1
        return options[index].id if 0 <= index < len(options) else None
    # The first word or words of one label are enough: "salud" for "Salud o cuidados".
    if len(key) >= 3:
        starts = {
            option.id
            for option in options
            for variant in all_variants(option.label)
            if (fold(variant) + " ").startswith(key + " ") or fold(variant).startswith(key + ",")
        }
        if len(starts) == 1:
            return starts.pop()
    return None


def _parse_number(typed: str) -> float | None:
    """The one number in `typed`: "40", "about 40 hours", "1,500", "7,5" (a decimal comma)."""
    found = _NUMBER.findall(typed)
    if len(found) != 1:
        return None
    text = found[0]
    text = text.replace(",", "") if _THOUSANDS.match(text) else text.replace(",", ".")
    try:
        number = float(text)
    except ValueError:  # "1.2.3"
        return None
    return number if math.isfinite(number) and abs(number) < 1e15 else None


def _as_int_if_whole(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def parse_choice(step: Step, typed: str) -> Parsed | Invalid:
    option = match_option(step, typed)
    return Parsed(option) if option else Invalid("invalid_choice")


def check_choices(step: Step, chosen: list[str]) -> Parsed | Invalid:
    """Validate a set of option ids against the step's min and max."""
    low, high = step.choice_bounds()
    unique = list(dict.fromkeys(chosen))
    if not low <= len(unique) <= high:
        return Invalid("invalid_choices", {"min": max(low, 1), "max": high})
    # Keep the guide's order, so that answers compare equal however they were typed.
    order = [option.id for option in step.option_list()]
    return Parsed(sorted(unique, key=order.index))


def parse_choices(step: Step, typed: str) -> Parsed | Invalid:
    low, high = step.choice_bounds()
    whole = match_option(step, typed)
    if whole is not None:  # a single label that itself contains a comma
        return check_choices(step, [whole])
    parts = [part for part in re.split(r"[,;\n]+", typed) if part.strip()]
    if len(parts) == 1 and match_option(step, parts[0]) is None:
        # "1 3" is as natural as "1, 3" for numbers.
        parts = parts[0].split()
    chosen = [match_option(step, part) for part in parts]
    if not parts or None in chosen:
        return Invalid("invalid_choices", {"min": max(low, 1), "max": high})
    return check_choices(step, [option for option in chosen if option])


def parse_scale(step: Step, typed: str) -> Parsed | Invalid:
    low, high = step.scale_range()
    key = fold(typed)
    for value, label in (step.labels or {}).items():
        if any(key == fold(v) for v in all_variants(label)):
            return Parsed(value)
    number = _parse_number(typed)
    if number is None or not number.is_integer() or not low <= number <= high:
        return Invalid("invalid_scale", {"low": low, "high": high})
    return Parsed(int(number))


def parse_number(step: Step, typed: str) -> Parsed | Invalid:
    number = _parse_number(typed)
    if step.range is not None:
        low, high = step.range
        if number is None or not low <= number <= high:
            return Invalid(
                "invalid_number_range",
                {"low": _as_int_if_whole(low), "high": _as_int_if_whole(high)},
            )
    if number is None:
        return Invalid("invalid_number")
    return Parsed(_as_int_if_whole(number))


def parse_text(step: Step, typed: str, limit: int) -> Parsed | Invalid:
    text = typed.strip()
    # Only invisible characters (an escape, a zero-width space) is nothing typed: kept, it
    # became an empty answer once scrubbed (found by the property tests).
    if not strip_invisible(text).strip():
        return Invalid("empty_answer")
    limit = min(limit, step.max_length or limit)
    if len(text) > limit:
        return Invalid("too_long", {"limit": limit})
    return Parsed(text)


def parse_answer(step: Step, typed: str, limit: int) -> Parsed | Invalid:
    """Parse typed text for any question step; `limit` caps free-text length. Nothing
    (or too much) typed for a choice, scale or number is refused as that kind's answer
    is ("a whole number from 1 to 5"), not as words ("a few words are plenty")."""
    match step.kind:
        case StepKind.CHOOSE:
            return parse_choice(step, typed)
        case StepKind.CHOOSE_MANY:
            return parse_choices(step, typed)
        case StepKind.SCALE:
            return parse_scale(step, typed)
        case StepKind.NUMBER:
            return parse_number(step, typed)
        case _:
            return parse_text(step, typed, limit)


def display(guide: Guide, step: Step, value: AnswerValue, language: str) -> str:
    """An answer as the participant would read it back: labels, not ids."""
    if value is None:
        return "–"
    labels = {o.id: localize(o.label, language, guide.default_language) for o in step.option_list()}
    if isinstance(value, list):
        return ", ".join(labels.get(v, v) for v in value)
    if step.kind is StepKind.CHOOSE:
        return labels.get(str(value), str(value))
    if step.kind is StepKind.SCALE and step.labels and isinstance(value, int):
        label = step.labels.get(value)
        if label is not None:
            return f"{value} ({localize(label, language, guide.default_language)})"
    return str(value)
