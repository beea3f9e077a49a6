"""Read a guide from YAML text and report every problem with its file, line and step.

This module parses text it is given; reading files is the caller's business (see
`bot.library`, which refuses an oversized file before reading it). Everything here
takes time in proportion to the text: a guide at the size limit is checked in well
under a second, so a bad or hostile file can't stall the bot's start.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import yaml
from pydantic import ValidationError

from bot.flows.checks import Finding, Path, check_guide, did_you_mean, notes_for
from bot.flows.guide import KIND_KEYS, Guide, OptionSpec, Step

# The largest guide accepted, in bytes of UTF-8 and in steps. A long guide is
# about 40 steps and 20 KB; these leave room for ten times that, while a file
# at the limit is still checked in a fraction of a second.
MAX_GUIDE_BYTES = 256 * 1024
MAX_STEPS = 500
# Past this many problems in one file the rest are summed up in one line: a
# file with thousands of mistakes is usually the wrong file, and fixing the first
# hundred changes the others anyway.
MAX_PROBLEMS = 100


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
    """The outcome of reading one guide: the guide when valid, its problems, and notes.

    Notes are not problems: they tell the author something the check can't verify
    itself (a cohort that must exist in the bot's database), and never refuse a guide.
    """

    source: str
    file: str
    guide: Guide | None
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)

    @property
    def hash(self) -> str:
        """Pins a run to this exact text, so later edits never change a run under way."""
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()[:16]


def too_big(size: int) -> str | None:
    """The one-line refusal for a guide of `size` bytes, or None when it is small enough."""
    if size <= MAX_GUIDE_BYTES:
        return None
    shown = f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{size // 1024} KB"
    if size // 1024 <= MAX_GUIDE_BYTES // 1024:  # "257 KB" would mislead; and a read that
        # stopped just past the limit does not know the size anyway
        shown = f"more than {MAX_GUIDE_BYTES // 1024} KB"
    return (
        f"this file is {shown}; a guide can be at most {MAX_GUIDE_BYTES // 1024} KB "
        f"and {MAX_STEPS} steps: split it into smaller guides"
    )


# libyaml does the scanning when PyYAML was built with it (the wheels are): about
# four times faster than the pure-Python parser, which stays the fallback.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class GuideYamlLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """YAML as guide authors mean it: only true and false are booleans.

    YAML 1.1 reads `options: [Yes, No]` as two booleans; an author means two words.
    Aliases (`*name`) are refused after composing (see `_walk`): a guide never needs
    them, and nested or self-referring ones make a file that takes minutes to read.
    """


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

_QUOTE_TIP = 'put the whole text in "double quotes"'
_TEXT_KEYS = {"title", "summary", "consent", "help", "label", *KIND_KEYS}


class _YamlProblem(Exception):
    """A YAML mistake already put in a guide author's words."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _walk(node: yaml.Node) -> dict[Path, int]:
    """Map each path into the document to the 1-based line where it starts.

    Iterative, and visiting each node once: an alias makes two places share one
    node, so it is found here (and refused) before anything could expand it.
    """
    lines: dict[Path, int] = {}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, Path, int]] = [(node, (), node.start_mark.line + 1)]
    while stack:
        current, path, line = stack.pop()
        if id(current) in seen:
            raise _YamlProblem(
                line,
                "a *name (a YAML alias) repeats another part of the file; "
                "aliases are not allowed in a guide: write the value out in full",
            )
        seen.add(id(current))
        lines.setdefault(path, line)
        children: list[tuple[yaml.Node, Path, int]] = []
        if isinstance(current, yaml.MappingNode):
            keys: dict[object, int] = {}
            for key_node, value_node in current.value:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _YamlProblem(
                        key_line,
                        "a key must be a word followed by ': ', like ask: ...; "
                        'if a text starts with { or [, put it in "double quotes"',
                    )
                key: str | int = key_node.value
                if key in keys:
                    raise _YamlProblem(
                        key_line,
                        f"'{key}' is written twice here (also on line {keys[key]}); keep one",
                    )
                keys.setdefault(key, key_line)
                if isinstance(key, str) and key.lstrip("-").isdigit():
                    lines.setdefault((*path, key), key_line)
                    key = int(key)
                lines[(*path, key)] = key_line
                children.append((value_node, (*path, key), key_line))
        elif isinstance(current, yaml.SequenceNode):
            children = [
                (item, (*path, index), item.start_mark.line + 1)
                for index, item in enumerate(current.value)
            ]
        stack.extend(reversed(children))  # document order, so a repeat is the later one
    return lines


def _source_line(source: str, line: int) -> str:
    """The text of 1-based line `line` (found without splitting the whole text)."""
    start = 0
    for _ in range(line - 1):
        start = source.find("\n", start) + 1
        if start == 0:
            return ""
    end = source.find("\n", start)
    return source[start:] if end < 0 else source[start:end]


def _tab_lines(source: str) -> list[int]:
    """Lines indented with a tab: YAML forbids them, and authors can't see them."""
    return [
        number
        for number, text in enumerate(source.split("\n"), 1)
        if "\t" in text[: len(text) - len(text.lstrip(" \t"))]
    ]


def _explain_yaml(error: yaml.YAMLError, source: str) -> list[_YamlProblem]:
    """PyYAML's (or libyaml's) wording, turned into what a guide author should change."""
    problem = str(getattr(error, "problem", None) or error)
    mark = getattr(error, "problem_mark", None)
    context_mark = getattr(error, "context_mark", None)
    # libyaml may place the end of the text on a line after the last: clamp to the text.
    last = source.count("\n") + 1
    line = min(mark.line + 1, last) if mark is not None else None
    column = mark.column if mark is not None else 0
    opened = min(context_mark.line + 1, last) if context_mark is not None else line
    at_end = mark is not None and not source[mark.index :].strip()
    text = _source_line(source, line) if line else ""
    indent = len(text) - len(text.lstrip(" "))
    found = text[column : column + 1]
    if isinstance(error, yaml.reader.ReaderError):
        at = min(max(error.position, 0), len(source))
        return [
            _YamlProblem(
                source.count("\n", 0, at) + 1,
                "this line has an invisible control character that can't be in a guide; "
                "delete it (retype the line if you can't see it)",
            )
        ]
    if "tab character" in problem or "'\\t'" in problem or found == "\t":
        # Every tab at once: they are invisible, and YAML would stop at each in turn.
        tabs: list[int | None] = [*_tab_lines(source)] or [line]
        return [_YamlProblem(tab, "tabs can't be used for indenting; use spaces") for tab in tabs]
    if "nesting depth" in problem:
        return [_YamlProblem(line, "this is nested too deeply to be a guide")]
    if at_end and "quoted scalar" not in str(getattr(error, "context", "")):
        return [
            _YamlProblem(
                opened,
                "the file ends before this is finished: close its [ ], { } or quotes",
            )
        ]
    if "quoted scalar" in str(getattr(error, "context", "")):
        return [
            _YamlProblem(
                opened,
                "a quote opened on this line is never closed; end the text with the same quote",
            )
        ]
    if "flow sequence" in str(getattr(error, "context", "")):
        return [_YamlProblem(opened, "a list opened with [ here is not closed with ]")]
    if "flow mapping" in str(getattr(error, "context", "")):
        return [_YamlProblem(opened, "a { opened here is not closed with }")]
    if "expected node content" in problem or "node content" in problem:
        return [_YamlProblem(line, "two commas in a row, or a comma before ] or }: remove one")]
    if "mapping values are not allowed" in problem:
        if text.find(":") == column and column > indent:
            return [
                _YamlProblem(
                    line,
                    "this line starts further right than the line above it; "
                    "line it up with the other keys of its step",
                )
            ]
        return [_YamlProblem(line, f"this text has ': ' in it; {_QUOTE_TIP}")]
    if "could not find expected ':'" in problem:
        return [
            _YamlProblem(opened, "a key needs ': ' after it, with a space, like ask: A question")
        ]
    if any(
        words in problem
        for words in ("cannot start any token", "alphabetic or numeric", "comment or line break")
    ) or ("not allowed" in problem and column > indent):
        first = text[column : column + 1] or text.lstrip()[:1]
        return [_YamlProblem(line, f"a text can't start with {first}; {_QUOTE_TIP}")]
    if "could not determine a constructor" in problem:
        return [_YamlProblem(line, f"a text can't start with !; {_QUOTE_TIP}")]
    if column > indent:
        return [
            _YamlProblem(
                line,
                f"something follows the text on this line; if it is all one text, {_QUOTE_TIP}",
            )
        ]
    return [
        _YamlProblem(
            line,
            "this line is not lined up with the lines above it: check how many spaces it "
            "starts with (a new step starts with '  - id:', its keys line up under 'id')",
        )
    ]


def _read_yaml(source: str) -> tuple[Any, dict[Path, int]]:
    """The document and a line for each place in it; raises _YamlProblem (a list of them)."""
    loader = GuideYamlLoader(source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines = _walk(node)
        return loader.construct_document(node), lines
    finally:
        loader.dispose()


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
    # A key as written can span lines (YAML's `? ...` keys): shown on one line, short.
    key = " ".join(str(error["loc"][-1]).split())[:60] if error["loc"] else ""
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


# What stands in for a part pydantic refused, so the whole-guide checks can still
# look at everything else (and report it too) instead of stopping at the first error.
_PLACEHOLDERS: dict[str, Any] = {"guide": "invalid", "version": 1, "title": ""}


def _partial_guide(data: dict[str, Any], errors: list[Any]) -> Guide | None:
    """The guide with each refused part replaced by a harmless stand-in, for more checks."""
    broken_top = {str(e["loc"][0]) for e in errors if e["loc"] and e["loc"][0] != "steps"}
    if "languages" in broken_top:
        return None  # every text's languages would be judged against the wrong list
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        return None
    broken_steps = {e["loc"][1] for e in errors if len(e["loc"]) > 1 and e["loc"][0] == "steps"}
    steps: list[Step] = []
    for index, raw in enumerate(raw_steps):
        if index not in broken_steps:
            steps.append(Step.model_validate(raw))
            continue
        # Keep the step's id, so later steps may still refer to it without a false alarm.
        step_id = raw.get("id") if isinstance(raw, dict) else None
        steps.append(Step.model_construct(id=str(step_id or f"_step{index}"), say=""))
    partial = {key: value for key, value in data.items() if key not in broken_top}
    for key in broken_top & set(_PLACEHOLDERS):
        partial[key] = _PLACEHOLDERS[key]
    partial["steps"] = steps
    try:
        return Guide.model_validate(partial)
    except ValidationError:
        return None


def _refused(source: str, file: str, line: int | None, message: str) -> LoadedGuide:
    return LoadedGuide(source, file, None, [Problem(file, line, None, message)])


def parse_guide(source: str, file: str) -> LoadedGuide:
    """Parse and check a guide; never raises on bad input."""
    # Characters never outnumber bytes, so a text too long in characters is too big
    # without encoding it; otherwise count its bytes exactly.
    refusal = too_big(len(source)) or too_big(len(source.encode("utf-8", "replace")))
    if refusal is not None:
        return _refused(source, file, None, refusal)
    # YAML counts a lone \r as a line break, as files read from disk already do:
    # the same text with \n only is read the same, and its lines found the same way.
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    try:
        data, lines = _read_yaml(text)
    except _YamlProblem as problem:
        return _refused(source, file, problem.line, problem.message)
    except yaml.YAMLError as error:
        found = _explain_yaml(error, text)
        return LoadedGuide(
            source, file, None, [Problem(file, p.line, None, p.message) for p in found]
        )
    if not isinstance(data, dict):
        return _refused(source, file, 1, "a guide starts with 'guide: <id>' and lists its 'steps'")
    steps = data.get("steps")
    if isinstance(steps, list) and len(steps) > MAX_STEPS:
        return _refused(
            source,
            file,
            lines.get(("steps",)),
            f"this guide has {len(steps)} steps; a guide can have at most {MAX_STEPS}: "
            "split it into smaller guides",
        )
    problems: list[Problem] = []
    guide: Guide | None = None
    try:
        guide = Guide.model_validate(data)
        checked: Guide | None = guide
    except ValidationError as invalid:
        errors = invalid.errors()
        by_place: dict[Path, list[Any]] = {}
        for issue in errors:
            by_place.setdefault(_data_path(data, issue), []).append(issue)
        problems = [
            Problem(
                file, _nearest_line(lines, path), _step_id(data, path), _explain(_pick(errs), path)
            )
            for path, errs in by_place.items()
        ]
        checked = _partial_guide(data, errors)
    findings: list[Finding] = []
    if checked is not None:
        # Stop early past the cap: the rest are counted by nobody, and cost nothing.
        findings = list(islice(check_guide(checked), MAX_PROBLEMS + 1))
    problems.extend(
        Problem(file, _nearest_line(lines, f.path), f.step, f.message) for f in findings
    )
    if len(problems) > MAX_PROBLEMS:
        problems = problems[:MAX_PROBLEMS]
        problems.append(
            Problem(
                file,
                None,
                None,
                f"more problems not shown (the first {MAX_PROBLEMS} are above): "
                "fix these and check again",
            )
        )
    notes = [
        Problem(file, _nearest_line(lines, f.path), f.step, f.message)
        for f in (notes_for(guide) if guide is not None else [])
    ]
    if problems:
        return LoadedGuide(source, file, None, problems, notes)
    return LoadedGuide(source, file, guide, [], notes)


def parse_stored_guide(source: str, file: str) -> LoadedGuide:
    """A guide text that runs under way were started on, read back from storage.

    It passed the checks of its day. Later versions of `guides check` may ask more of
    a guide (Spanish for every option, say); a conversation already under way must not
    break because of that, so a stored text that still reads as a guide is used, with
    its problems kept for the log. Texts are still shown through the sandbox, and a
    text that fails there is shown without its template parts.
    """
    loaded = parse_guide(source, file)
    if loaded.guide is not None:
        return loaded
    try:
        data, _ = _read_yaml(source.replace("\r\n", "\n").replace("\r", "\n"))
        guide = Guide.model_validate(data)
    except (_YamlProblem, yaml.YAMLError, ValidationError):
        return loaded
    return LoadedGuide(source, file, guide, loaded.problems)
