"""`when` conditions and `{{ }}` texts, evaluated in jinja2's sandbox.

Whatever a participant typed reaches these only as a value in the context, so
it is shown literally and never evaluated. Output is plain text: channels
escape it for their own markup when they render it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

# One sandbox, configured once and never mutated: jinja environments are safe to share.
_SANDBOX = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=False)


class ExpressionError(ValueError):
    """A `when` expression or a template that does not parse."""


@lru_cache(maxsize=1024)
def _parse_condition(expression: str) -> nodes.Template:
    try:
        return _SANDBOX.parse("{{ (" + expression + ") }}")
    except TemplateSyntaxError as error:
        raise ExpressionError(f"'{expression}' does not parse: {error.message}") from None


@lru_cache(maxsize=1024)
def condition_names(expression: str) -> frozenset[str]:
    """The step ids (and other names) a condition refers to; raises ExpressionError."""
    return frozenset(meta.find_undeclared_variables(_parse_condition(expression)))


@lru_cache(maxsize=1024)
def _compiled_condition(expression: str) -> Any:
    try:
        return _SANDBOX.compile_expression(expression, undefined_to_none=True)
    except TemplateSyntaxError as error:
        raise ExpressionError(f"'{expression}' does not parse: {error.message}") from None


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
        raise ExpressionError(f"the text '{source[:60]}' does not parse: {error.message}") from None


def template_names(source: str) -> set[str]:
    """Names a text refers to inside `{{ }}`; raises ExpressionError if it does not parse."""
    try:
        return set(meta.find_undeclared_variables(_SANDBOX.parse(source)))
    except TemplateSyntaxError as error:
        raise ExpressionError(f"the text '{source[:60]}' does not parse: {error.message}") from None


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render a guide text; a text without `{{` or `{%` is returned as it is."""
    if "{{" not in source and "{%" not in source:
        return source
    try:
        return str(_template(source).render(**context))
    except ExpressionError:
        raise
    except Exception:
        # A runtime error in a guide's template must not stop a conversation:
        # show the author's text without the failed parts rather than nothing.
        return source
