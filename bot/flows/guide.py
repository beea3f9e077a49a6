"""The guide model: what a guide author writes in YAML, validated by pydantic.

Structural rules (types, unknown keys, exactly one step kind) live here;
rules that need the whole guide (earlier steps, languages, templates) live in
`checks.py`, so that a guide with several problems reports all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.flows.duration import parse_duration
from bot.flows.text import Text, slugify

GUIDE_ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,39}$"
# Words that `when` and `{{ }}` give a meaning of their own, so no step may be called them.
RESERVED_STEP_IDS = frozenset(
    {"guide", "self", "loop", "none", "None", "true", "false", "True", "False",
     "and", "or", "not", "in", "is", "if", "else", "range", "namespace"}
)  # fmt: skip


class StepKind(StrEnum):
    """The six kinds of step; the key that names the kind also holds its text."""

    SAY = "say"
    ASK = "ask"
    CHOOSE = "choose"
    CHOOSE_MANY = "choose_many"
    SCALE = "scale"
    NUMBER = "number"


KIND_KEYS: tuple[str, ...] = tuple(kind.value for kind in StepKind)


class OptionSpec(BaseModel):
    """An option written out in full: `{id: mfg, label: {en: Manufacturing, es: Manufactura}}`."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    id: str = Field(min_length=1)
    label: Text

    @model_validator(mode="before")
    @classmethod
    def _needs_id(cls, data: Any) -> Any:
        # `{en: Manufacturing, es: Manufactura}` without an id is the usual slip in a
        # guide with several languages: explain the fix rather than list missing keys.
        if isinstance(data, dict) and "id" not in data and "label" not in data:
            example = ", ".join(f"{key}: ..." for key in data)
            raise ValueError(
                f"an option in several languages needs an id, like {{id: some-id, label: {{{example}}}}}"
            )
        return data


@dataclass(frozen=True)
class Option:
    """An option as the engine sees it: a stable id and a label."""

    id: str
    label: Text


class Step(BaseModel):
    """One step of a guide: a message, or a question of one of five kinds."""

    model_config = ConfigDict(
        extra="forbid",
        coerce_numbers_to_str=True,  # `options: [1, 2, 3]` means three labels
        json_schema_extra={"oneOf": [{"required": [key]} for key in KIND_KEYS]},
    )

    id: str = Field(pattern=STEP_ID_PATTERN, description="Unique in the guide; used in `when`.")
    say: Text | None = None
    ask: Text | None = None
    choose: Text | None = None
    choose_many: Text | None = None
    scale: Text | None = None
    number: Text | None = None
    when: str | None = Field(None, description="Asked only when this holds, e.g. `worry >= 4`.")
    optional: bool = False
    quotable: bool = False
    sensitive: bool = False
    scrub: bool = True
    max_length: int | None = Field(None, gt=0)
    range: tuple[float, float] | None = None
    labels: dict[int, Text] | None = None
    options: list[str | OptionSpec] | None = None
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=1)
    help: Text | None = Field(None, description="Shown when the participant sends /help.")

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Step:
        present = [key for key in KIND_KEYS if getattr(self, key) is not None]
        if len(present) != 1:
            found = ", ".join(present) if present else "none"
            raise ValueError(f"a step needs exactly one of {', '.join(KIND_KEYS)} (found {found})")
        return self

    @cached_property  # asked several times per answer; a step never changes once parsed
    def kind(self) -> StepKind:
        return next(StepKind(key) for key in KIND_KEYS if getattr(self, key) is not None)

    @property
    def text(self) -> Text:
        value: Text | None = getattr(self, self.kind.value)
        assert value is not None  # guaranteed by _exactly_one_kind
        return value

    @property
    def is_question(self) -> bool:
        return self.kind is not StepKind.SAY

    def option_list(self) -> list[Option]:
        return list(self._options)

    @cached_property  # read several times per answer; a parsed step never changes
    def _options(self) -> tuple[Option, ...]:
        return tuple(
            Option(id=slugify(raw), label=raw)
            if isinstance(raw, str)
            else Option(id=raw.id, label=raw.label)
            for raw in self.options or []
        )

    def scale_range(self) -> tuple[int, int]:
        low, high = self.range or (1, 5)
        return int(low), int(high)

    def choice_bounds(self) -> tuple[int, int]:
        count = len(self.options or [])
        return (self.min if self.min is not None else 1, self.max or count)


class Guide(BaseModel):
    """A conversation guide, as one YAML file in `guides/`."""

    model_config = ConfigDict(extra="forbid")

    guide: str = Field(
        pattern=GUIDE_ID_PATTERN, max_length=60, description="Lowercase letters, digits, dashes."
    )
    version: int = Field(ge=1, le=2**31 - 1, description="Bump it when questions change.")
    title: Text
    summary: Text | None = None
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    minutes: int | None = Field(None, ge=1)
    expires_after: str = Field("7d", description="Idle runs expire after this: 3d, 12h, 30m.")
    consent: Text | None = None
    keep_in_touch: str | None = Field(
        None,
        pattern=GUIDE_ID_PATTERN,
        max_length=60,
        description="A cohort to offer joining when someone finishes (for scheduled check-ins).",
    )
    public: bool = Field(
        False,
        description="Publish a report of this guide's results at /report/GUIDE, without sign-in:"
        " figures by the minimum group and quotes from quotable questions only.",
    )
    audience: Literal["everyone", "facilitators"] = Field(
        "everyone",
        description="Who the menu of guides offers it to: everyone, or only facilitators,"
        " coordinators and admins (a report a host writes after a gathering). Anyone may"
        " still start it by name.",
    )
    steps: list[Step] = Field(min_length=1)

    @field_validator("expires_after")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, value: list[str]) -> list[str]:
        for code in value:
            if not code or not code.replace("-", "").isalpha() or len(code) > 8:
                raise ValueError(f"'{code}' is not a language code; write codes like en or es")
        return value

    @property
    def id(self) -> str:
        return self.guide

    @property
    def default_language(self) -> str:
        return self.languages[0]

    @cached_property  # checked for every run resumed; a parsed guide never changes
    def expiry(self) -> timedelta:
        return parse_duration(self.expires_after)

    @property
    def questions(self) -> list[Step]:
        return list(self._questions)

    @cached_property  # read several times per answer; a parsed guide never changes
    def _questions(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.is_question)

    def step(self, step_id: str) -> Step:
        return next(step for step in self.steps if step.id == step_id)

    def index_of(self, step_id: str) -> int:
        return next(i for i, step in enumerate(self.steps) if step.id == step_id)


def guide_json_schema() -> dict[str, Any]:
    """The JSON Schema guide authors point their editors at."""
    schema = Guide.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Kitchen Table conversation guide"
    return schema
