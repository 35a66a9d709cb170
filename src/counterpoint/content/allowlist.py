"""The allow-list of message templates: which tokens exist and which Jinja2 constructs a
template may use, checked by walking the parsed template (no rendering, no I/O).

``content.render`` is the public face (``check_template``, ``render``); this module holds the
rules. Everything not accepted here raises ``RefusedError`` with the line and a fix.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from jinja2 import Environment, nodes
from jinja2.exceptions import TemplateSyntaxError

__all__ = [
    "FILTERS_ALLOWED",
    "LEXER_OPTIONS",
    "MAX_TEMPLATE_CHARS",
    "TOKENS",
    "Analysis",
    "RefusedError",
    "analyse",
]

TOKENS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "hcp": frozenset(
            {"salutation", "title", "first_name", "last_name", "full_name", "specialty"}
        ),
        "rep": frozenset({"name", "email", "phone", "signature"}),
        "event": frozenset({"title", "starts_at", "location", "join_url", "register_url"}),
        "links": frozenset({"unsubscribe", "preferences"}),
    }
)
"""The only values a template can reach: namespace → token names."""

FILTERS_ALLOWED: frozenset[str] = frozenset(
    {"upper", "lower", "title", "capitalize", "trim", "default"}
)
MAX_TEMPLATE_CHARS = 200_000

_NAMESPACES = ", ".join(TOKENS)
_FIX_TOKENS = "use only tokens such as {{ hcp.last_name }}, {% if %} on tokens, {% include %}"

LEXER_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {"trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True}
)
"""Whitespace handling, the same for checking and rendering."""

_PARSER = Environment(autoescape=True, **LEXER_OPTIONS)  # only parses: nothing runs with it


class RefusedError(Exception):
    """A template outside the allow-list: the line, what is wrong, how to fix it."""

    def __init__(self, line: int, detail: str, fix: str = _FIX_TOKENS) -> None:
        super().__init__(detail)
        self.line, self.detail, self.fix = line, detail, fix


_CONSTRUCTS = {
    "For": "{% for %} loops",
    "Assign": "{% set %}",
    "AssignBlock": "{% set %} blocks",
    "Macro": "{% macro %}",
    "CallBlock": "{% call %} blocks",
    "FilterBlock": "{% filter %} blocks",
    "With": "{% with %}",
    "Block": "{% block %}",
    "Extends": "{% extends %}",
    "Import": "{% import %}",
    "FromImport": "{% from … import %}",
    "ScopedEvalContextModifier": "{% autoescape %}",
    "EvalContextModifier": "{% autoescape %}",
    "ExprStmt": "{% do %}",
    "Continue": "{% continue %}",
    "Break": "{% break %}",
    "Call": "function and method calls",
    "Getitem": "subscripts (write hcp.last_name, not hcp['last_name'])",
    "Slice": "slices",
    "Test": "tests with 'is'",
    "CondExpr": "inline if-expressions (use {% if %})",
    "Compare": "comparisons",
    "Concat": "~ concatenation",
    "Const": "literal values in output",
    "List": "lists",
    "Tuple": "tuples",
    "Dict": "dicts",
}


def _what(node: nodes.Node) -> str:
    if isinstance(node, nodes.Scope) and node.body:  # {% autoescape %} wraps its modifier
        return _what(node.body[0])
    name = type(node).__name__
    return _CONSTRUCTS.get(name, f"the construct {name}")


def _line(node: nodes.Node) -> int:
    """A node's line (wrapper nodes have none: the first line inside them)."""
    if node.lineno:
        return int(node.lineno)
    return next((int(n.lineno) for n in node.find_all(nodes.Node) if n.lineno), 1)


@dataclass(frozen=True, slots=True)
class Analysis:
    """What a template uses."""

    tokens: frozenset[str]
    fragments: Mapping[str, int]  # code → first line


class _Walker:
    """Accepts exactly the allow-list; raises RefusedError at the first other construct."""

    def __init__(self, allow_include: bool) -> None:
        self.allow_include = allow_include
        self.tokens: set[str] = set()
        self.fragments: dict[str, int] = {}

    def statements(self, body: list[nodes.Node]) -> None:
        for node in body:
            if isinstance(node, nodes.Output):
                for child in node.nodes:
                    if not isinstance(child, nodes.TemplateData):
                        self.value(child)
            elif isinstance(node, nodes.If):
                for branch in (node, *node.elif_):
                    self.test(branch.test)
                    self.statements(branch.body)
                self.statements(node.else_)
            elif isinstance(node, nodes.Include):
                self.include(node)
            else:
                raise RefusedError(_line(node), f"not allowed in messages: {_what(node)}")

    def test(self, expr: nodes.Node) -> None:
        if isinstance(expr, nodes.Not):
            self.test(expr.node)
        elif isinstance(expr, nodes.And | nodes.Or):
            self.test(expr.left)
            self.test(expr.right)
        else:
            self.value(expr)

    def value(self, expr: nodes.Node) -> None:
        if isinstance(expr, nodes.Filter):
            self.filter(expr)
        else:
            self.token(expr)

    def filter(self, expr: nodes.Filter) -> None:
        line, name = _line(expr), expr.name
        if name not in FILTERS_ALLOWED:
            raise RefusedError(
                line,
                f"the filter |{name} is not allowed",
                f"use one of the filters {', '.join(sorted(FILTERS_ALLOWED))}",
            )
        if expr.kwargs or expr.dyn_args is not None or expr.dyn_kwargs is not None:
            raise RefusedError(line, f"|{name} takes no keyword or * arguments here")
        if name == "default":
            self.default_args(line, expr.args)
        elif expr.args:
            raise RefusedError(
                line, f"|{name} takes no arguments", f"write {{{{ hcp.title|{name} }}}}"
            )
        if expr.node is None:  # only in {% filter %} blocks, which statements() refuses
            raise RefusedError(line, "a filter needs a token")
        self.value(expr.node)

    def default_args(self, line: int, args: list[nodes.Expr]) -> None:
        fix = 'write {{ rep.name|default("our team") }}'
        if len(args) > 2:
            raise RefusedError(line, "|default takes a text and, optionally, true", fix)
        if args:
            first = args[0]
            if isinstance(first, nodes.Const):
                if not isinstance(first.value, str):
                    raise RefusedError(line, "|default needs a text in quotes or a token", fix)
            else:
                self.value(first)
        if len(args) == 2 and not (
            isinstance(args[1], nodes.Const) and isinstance(args[1].value, bool)
        ):
            raise RefusedError(line, "the second argument of |default must be true or false", fix)

    def token(self, expr: nodes.Node) -> None:
        line = _line(expr)
        if isinstance(expr, nodes.Getattr):
            if not isinstance(expr.node, nodes.Name):
                raise RefusedError(
                    line, "attribute chains deeper than namespace.token are not allowed"
                )
            ns, attr = expr.node.name, expr.attr
            if ns not in TOKENS:
                raise RefusedError(line, f"unknown namespace {ns!r}: use {_NAMESPACES}")
            if attr.startswith("_"):
                raise RefusedError(line, f"{ns}.{attr} reaches into Python internals, not a token")
            if attr not in TOKENS[ns]:
                known = ", ".join(f"{ns}.{t}" for t in sorted(TOKENS[ns]))
                raise RefusedError(line, f"unknown token {ns}.{attr}", f"use one of {known}")
            self.tokens.add(f"{ns}.{attr}")
        elif isinstance(expr, nodes.Name):
            if expr.name in TOKENS:
                example = f"{expr.name}.{min(TOKENS[expr.name])}"
                raise RefusedError(
                    line, f"{expr.name} alone is not a token", f"write a token such as {example}"
                )
            raise RefusedError(
                line, f"unknown name {expr.name!r}: only tokens ({_NAMESPACES}) exist"
            )
        else:
            raise RefusedError(line, f"not allowed in messages: {_what(expr)}")

    def include(self, node: nodes.Include) -> None:
        fix = 'write {% include "fragment-code" %}'
        if not self.allow_include:
            raise RefusedError(
                node.lineno,
                "a fragment may not include another fragment (one level only)",
                "put the other fragment's text in this one, or include both in the message",
            )
        target = node.template
        if not isinstance(target, nodes.Const) or not isinstance(target.value, str):
            raise RefusedError(node.lineno, "include takes one fragment code in quotes", fix)
        if node.ignore_missing or not node.with_context:
            raise RefusedError(node.lineno, "include takes no 'ignore missing'/'with context'", fix)
        code = target.value.strip()
        if not code:
            raise RefusedError(node.lineno, "include names an empty fragment code", fix)
        self.fragments.setdefault(code, node.lineno)


@functools.lru_cache(maxsize=4096)
def analyse(source: str, allow_include: bool) -> Analysis:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise RefusedError(1, f"the template is longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        tree = _PARSER.parse(source)
    except TemplateSyntaxError as exc:
        raise RefusedError(
            exc.lineno or 1,
            f"syntax error: {exc.message}",
            "close every {{ }} and {% %}, and end every {% if %} with {% endif %}",
        ) from None
    walker = _Walker(allow_include)
    walker.statements(tree.body)
    return Analysis(frozenset(walker.tokens), MappingProxyType(walker.fragments))
