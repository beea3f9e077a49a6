"""Read a guide from YAML text and report every problem with its file, line and step.

This module parses text it is given; reading files is the caller's business.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from bot.flows.checks import Finding, Path, check_guide, did_you_mean
from bot.flows.guide import KIND_KEYS, Guide, OptionSpec, Step


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a guide, phrased for its author."""

    file: str
    line: int | None
    step: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        step = f" step '{self.step}':" if self.step else ""
        return f"{where}:{step} {self.message}"


@dataclass(frozen=True)
class LoadedGuide:
    """The outcome of reading one guide: the guide when valid, and its problems."""

    source: str
    file: str
    guide: Guide | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def hash(self) -> str:
        """Pins a run to this exact text, so later edits never change a run under way."""
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()[:16]


class GuideYamlLoader(yaml.SafeLoader):
    """YAML as guide authors mean it: only true and false are booleans, and no aliases.

    YAML 1.1 reads `options: [Yes, No]` as two booleans; an author means two words.
    Aliases (`*name`) are refused: a guide never needs them, and nested or
    self-referring ones make a file that takes minutes to read.
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a guide", event.start_mark
            )
        return super().compose_node(parent, index)


GuideYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
GuideYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


_KNOWN_KEYS: dict[str, list[str]] = {
    "guide": list(Guide.model_fields),
    "step": list(Step.model_fields),
    "option": list(OptionSpec.model_fields),
}


_QUOTE_TIP = 'Tip: put a text that contains : # ? , { } [ ] in "double quotes".'
_TEXT_KEYS = {"title", "summary", "consent", "help", "label", *KIND_KEYS}


def _line_map(
    node: yaml.Node, path: Path = (), lines: dict[Path, int] | None = None
) -> dict[Path, int]:
    """Map each path into the document to the 1-based line where it starts."""
    lines = {} if lines is None else lines
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key: str | int = key_node.value
            if isinstance(key, str) and key.lstrip("-").isdigit():
                lines.setdefault((*path, key), key_node.start_mark.line + 1)
                key = int(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _line_map(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), lines)
    return lines


def _nearest_line(lines: dict[Path, int], path: Path) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _step_id(data: Any, path: Path) -> str | None:
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        steps = data.get("steps") if isinstance(data, dict) else None
        if (
            isinstance(steps, list)
            and 0 <= path[1] < len(steps)
            and isinstance(steps[path[1]], dict)
        ):
            step_id = steps[path[1]].get("id")
            return str(step_id) if step_id is not None else f"#{path[1] + 1}"
    return None


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _data_path(data: Any, error: Any) -> Path:
    """Where in the document a pydantic error is, without pydantic's union-branch tags."""
    loc = tuple(error["loc"])
    path: list[str | int] = []
    node = data
    for part in loc:
        if not _has(node, part):
            break
        node = node[part]
        path.append(part)
    if error["type"] in ("extra_forbidden", "missing") and loc:
        # The unknown or missing key itself is what the author must change.
        path.append(loc[-1])
    return tuple(path)


def _pick(errors: list[Any]) -> Any:
    """Of the errors pydantic reports for one place (one per union branch), the most useful."""
    specific = [e for e in errors if not str(e["type"]).endswith("_type")]
    return (specific or errors)[0]


def _owner(path: Path) -> str:
    if len(path) >= 4 and path[0] == "steps" and path[2] == "options":
        return "option"
    if len(path) >= 2 and path[0] == "steps":
        return "step"
    return "guide"


def _explain(error: Any, path: Path) -> str:
    kind = error["type"]
    key = str(error["loc"][-1]) if error["loc"] else ""
    if kind == "extra_forbidden":
        known = _KNOWN_KEYS[_owner(path[:-1])]
        return f"'{key}' is not a known key{did_you_mean(key, known)}"
    if kind == "missing":
        return f"'{key}' is missing; add {key}: ..."
    if kind == "string_pattern_mismatch" and path == ("guide",):
        return "the guide id must be lowercase letters, digits and dashes, like changing-work"
    if kind == "string_pattern_mismatch" and path[-1:] == ("id",):
        return "a step id must be up to 40 letters, digits and underscores, like work_story"
    if kind in ("string_type", "dict_type") and path and path[-1] in _TEXT_KEYS:
        return f"'{path[-1]}' should be a text, or one text per language like {{en: ..., es: ...}}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if not path or not isinstance(path[-1], str):
        return message
    return f"'{path[-1]}': {message}"


def parse_guide(source: str, file: str) -> LoadedGuide:
    """Parse and check a guide; never raises on bad input."""
    try:
        node = yaml.compose(source, Loader=GuideYamlLoader)
        data = yaml.load(source, Loader=GuideYamlLoader)
    except (yaml.YAMLError, RecursionError) as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(error, "problem", None) or str(error)
        tip = f" {_QUOTE_TIP}" if "expected" in reason or "not allowed here" in reason else ""
        return LoadedGuide(
            source,
            file,
            None,
            [Problem(file, line, None, f"this is not valid YAML: {reason}.{tip}")],
        )
    if not isinstance(data, dict) or node is None:
        return LoadedGuide(
            source,
            file,
            None,
            [Problem(file, 1, None, "a guide starts with 'guide: <id>' and lists its 'steps'")],
        )
    lines = _line_map(node)
    try:
        guide = Guide.model_validate(data)
    except ValidationError as invalid:
        by_place: dict[Path, list[Any]] = {}
        for issue in invalid.errors():
            by_place.setdefault(_data_path(data, issue), []).append(issue)
        problems = [
            Problem(
                file, _nearest_line(lines, path), _step_id(data, path), _explain(_pick(errs), path)
            )
            for path, errs in by_place.items()
        ]
        return LoadedGuide(source, file, None, problems)
    findings: list[Finding] = check_guide(guide)
    problems_list = [
        Problem(file, _nearest_line(lines, f.path), f.step, f.message) for f in findings
    ]
    return LoadedGuide(source, file, None if problems_list else guide, problems_list)
