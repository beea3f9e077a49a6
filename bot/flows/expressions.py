"""`when` conditions and `{{ }}` texts, evaluated in jinja2's sandbox.

Whatever a participant typed reaches these only as a value in the context, so
it is shown literally and never evaluated. Output is plain text: channels
escape it for their own markup when they render it.

A guide may only show answers and compare them: `guides check` walks each
template's syntax tree (`uses`) and refuses anything else (attributes such as
`__class__`, calls such as `range(...)`, `*` and `**`, loops), so what the sandbox
would refuse, or spend minutes on, never reaches a participant. If rendering fails
all the same, the text is shown with its template parts left out, never raw braces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

# One sandbox, configured once and never mutated: jinja environments are safe to share.
_SANDBOX = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=False)

# What a text may read of `guide` (see the engine's template context).
GUIDE_FIELDS = frozenset({"id", "title", "summary", "minutes"})
# Filters and tests that only look at a value, in time and memory bounded by it.
SAFE_FILTERS = frozenset(
    {"default", "d", "lower", "upper", "capitalize", "title", "trim", "length", "count",
     "first", "last", "int", "float", "round", "string", "abs"}
)  # fmt: skip
SAFE_TESTS = frozenset(
    {"none", "defined", "undefined", "number", "string", "true", "false", "in", "eq", "ne",
     "lt", "le", "gt", "ge", "even", "odd", "divisibleby"}
)  # fmt: skip
# Nodes that only hold, compare or combine values already there.
_PLAIN = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Const, nodes.Name, nodes.If,
    nodes.CondExpr, nodes.Compare, nodes.Operand, nodes.And, nodes.Or, nodes.Not,
    nodes.Neg, nodes.Pos, nodes.Add, nodes.Sub, nodes.Div, nodes.FloorDiv, nodes.Mod,
    nodes.Concat, nodes.List, nodes.Tuple,
)  # fmt: skip


class ExpressionError(ValueError):
    """A `when` expression or a template that does not parse."""


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _quoted(text: str) -> str:
    """An author's text inside a one-line problem: on one line, and not too long."""
    flat = _one_line(text)
    return f"'{flat[:60]}...'" if len(flat) > 60 else f"'{flat}'"


def _too_deep(what: str) -> ExpressionError:
    # jinja parses and walks its trees recursively: a condition of thousands of
    # `or`s, or brackets in brackets, runs out of Python's stack. Say so plainly.
    return ExpressionError(f"{what} is too long or has too many brackets in brackets")


@lru_cache(maxsize=1024)
def _parse_condition(expression: str) -> nodes.Template:
    try:
        return _SANDBOX.parse("{{ (" + expression + ") }}")
    except TemplateSyntaxError as error:
        raise ExpressionError(
            f"{_quoted(expression)} does not parse: {_one_line(error.message)}"
        ) from None
    except RecursionError:
        raise _too_deep(_quoted(expression)) from None


def _names(tree: nodes.Node) -> frozenset[str]:
    """The names a tree reads and does not set itself.

    Not jinja's `meta.find_undeclared_variables`: that runs the code generator, which
    works out constant parts ahead, so `'x' * 999999999` took ten seconds and gigabytes
    to check before it was refused.
    """
    stored = {node.name for node in tree.find_all(nodes.Name) if node.ctx != "load"}
    return frozenset(
        node.name
        for node in tree.find_all(nodes.Name)
        if node.ctx == "load" and node.name not in stored
    )


@lru_cache(maxsize=1024)
def condition_names(expression: str) -> frozenset[str]:
    """The step ids (and other names) a condition refers to; raises ExpressionError."""
    try:
        return _names(_parse_condition(expression))
    except RecursionError:
        raise _too_deep(_quoted(expression)) from None


def _uses(tree: nodes.Node, guide_fields: bool) -> Iterator[str]:
    """Why each part of `tree` that does more than show or compare values is refused."""
    for node in tree.find_all(nodes.Node):
        if isinstance(node, _PLAIN):
            continue
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            name = node.attr if isinstance(node, nodes.Getattr) else _const(node.arg)
            owner = node.node.name if isinstance(node.node, nodes.Name) else None
            if guide_fields and owner == "guide" and isinstance(name, str) and name in GUIDE_FIELDS:
                continue
            if isinstance(name, str) and name.startswith("_"):
                yield f"'{name}' is not allowed"
            elif guide_fields:
                yield (
                    f"'{owner or '...'}.{name}' can't be shown; "
                    f"use a step id, or guide.{'/'.join(sorted(GUIDE_FIELDS))}"
                )
            else:
                yield f"'{owner or '...'}.{name}' can't be used; compare answers by their step id"
        elif isinstance(node, nodes.Call):
            called = node.node.name if isinstance(node.node, nodes.Name) else "..."
            yield f"'{called}(...)' calls something, which guides can't do"
        elif isinstance(node, nodes.Mul | nodes.Pow):
            yield "'*' and '**' are not allowed"
        elif isinstance(node, nodes.Filter):
            if node.name not in SAFE_FILTERS:
                yield f"the filter '|{node.name}' is not allowed"
        elif isinstance(node, nodes.Test):
            if node.name not in SAFE_TESTS:
                yield f"'is {node.name}' is not allowed"
        else:
            yield f"'{type(node).__name__.lower()}' is not allowed here; only {{% if %}} is"


def _const(node: nodes.Node) -> object:
    return node.value if isinstance(node, nodes.Const) else "[...]"


@lru_cache(maxsize=1024)
def condition_problems(expression: str) -> tuple[str, ...]:
    """What a condition does beyond comparing answers; raises ExpressionError."""
    try:
        return tuple(dict.fromkeys(_uses(_parse_condition(expression), guide_fields=False)))
    except RecursionError:
        raise _too_deep(_quoted(expression)) from None


@lru_cache(maxsize=1024)
def compared_values(expression: str) -> tuple[tuple[str, str], ...]:
    """(step id, text) for each text a condition compares an answer with.

    `sector == 'retail'`, `sector != 'retail'`, `'training' in helps` and
    `sector in ['retail', 'care']`: the texts must be option ids of that step.
    """
    found: list[tuple[str, str]] = []
    try:
        compares = list(_parse_condition(expression).find_all(nodes.Compare))
    except RecursionError:
        raise _too_deep(_quoted(expression)) from None
    for compare in compares:
        left = compare.expr
        for operand in compare.ops:
            right = operand.expr
            if operand.op in ("eq", "ne", "in", "notin"):
                for name, other in ((left, right), (right, left)):
                    if not isinstance(name, nodes.Name):
                        continue
                    values = other.items if isinstance(other, nodes.List | nodes.Tuple) else [other]
                    found.extend(
                        (name.name, value.value)
                        for value in values
                        if isinstance(value, nodes.Const) and isinstance(value.value, str)
                    )
            left = right
    return tuple(found)


@lru_cache(maxsize=1024)
def _compiled_condition(expression: str) -> Any:
    try:
        return _SANDBOX.compile_expression(expression, undefined_to_none=True)
    except TemplateSyntaxError as error:
        raise ExpressionError(
            f"{_quoted(expression)} does not parse: {_one_line(error.message)}"
        ) from None


def holds(expression: str, answers: Mapping[str, Any]) -> bool:
    """Evaluate a condition; an answer not given is None, and an error means 'no'.

    A condition like `'training' in helps` meets None when the step was skipped:
    treating that as false is what an author means by it.
    """
    try:
        return bool(_compiled_condition(expression)(**answers))
    except ExpressionError:
        raise
    except Exception:
        return False


@lru_cache(maxsize=1024)
def _template(source: str) -> Any:
    try:
        return _SANDBOX.from_string(source)
    except TemplateSyntaxError as error:
        raise ExpressionError(
            f"the text {_quoted(source)} does not parse: {_one_line(error.message)}"
        ) from None


@lru_cache(maxsize=256)
def _parse_template(source: str) -> nodes.Template:
    try:
        return _SANDBOX.parse(source)
    except TemplateSyntaxError as error:
        raise ExpressionError(
            f"the text {_quoted(source)} does not parse: {_one_line(error.message)}"
        ) from None
    except RecursionError:
        raise _too_deep(f"the text {_quoted(source)}") from None


def template_names(source: str) -> set[str]:
    """Names a text refers to inside `{{ }}`; raises ExpressionError if it does not parse."""
    if "{" not in source:
        return set()  # most texts: no need to parse them at all
    try:
        return set(_names(_parse_template(source)))
    except RecursionError:
        raise _too_deep(f"the text {_quoted(source)}") from None


def template_problems(source: str) -> tuple[str, ...]:
    """What a text does beyond showing answers; raises ExpressionError if it does not parse."""
    if "{" not in source:
        return ()
    try:
        return tuple(dict.fromkeys(_uses(_parse_template(source), guide_fields=True)))
    except RecursionError:
        raise _too_deep(f"the text {_quoted(source)}") from None


# Whatever a failed text still holds of template syntax, for the last-resort fallback.
_TEMPLATE_PARTS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|\{\{|\}\}|\{%|%\}|\{#|#\}", re.S)


def without_template(source: str) -> str:
    """The text with its `{{ }}`, `{% %}` and `{# #}` parts left out."""
    try:
        kept = "".join(value for _, kind, value in _SANDBOX.lex(source) if kind == "data")
    except TemplateSyntaxError:
        kept = source
    return re.sub(r" {2,}", " ", _TEMPLATE_PARTS.sub("", kept))


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render a guide text; a text without `{{` or `{%` is returned as it is."""
    if "{{" not in source and "{%" not in source and "{#" not in source:
        return source
    try:
        return str(_template(source).render(**context))
    except Exception:
        # A text that fails must not stop a conversation, nor show a participant
        # raw braces: show the author's words without the template parts.
        return without_template(source)
