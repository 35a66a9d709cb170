"""Personalised messages: a sandboxed template language with an allow-list of tokens.

Templates are Jinja2 source, but only a small part of the language is accepted: output of
a token written ``namespace.token`` (``{{ hcp.last_name }}``), ``{% if %}``/``{% elif %}``/
``{% else %}`` on tokens (with ``not``, ``and``, ``or``), ``{% include "fragment-code" %}``
and the filters ``upper``, ``lower``, ``title``, ``capitalize``, ``trim`` and ``default``.
``check_template`` walks the parsed template and refuses everything else with an error naming
the part and the line; ``render`` checks again before rendering, in Jinja2's immutable
sandbox with no globals, no tests and only the allowed filters. Values are escaped in the
HTML part; a token without a value is an error, except in ``{% if %}`` tests and
``|default``. With a ``LinkTracker`` the HTML part's outgoing links are rewritten to tracked
links and an open pixel is added. Pure: no I/O. See docs/rendering.md.
"""

from __future__ import annotations

import functools
import html as html_lib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

from jinja2 import StrictUndefined, Template, nodes
from jinja2.exceptions import TemplateError as JinjaError
from jinja2.exceptions import UndefinedError
from jinja2.filters import FILTERS
from jinja2.sandbox import ImmutableSandboxedEnvironment

from counterpoint.content.allowlist import (
    FILTERS_ALLOWED,
    LEXER_OPTIONS,
    MAX_TEMPLATE_CHARS,
    TOKENS,
    Analysis,
    RefusedError,
    analyse,
)
from counterpoint.errors import ValidationFailedError

__all__ = [
    "FILTERS_ALLOWED",
    "MAX_TEMPLATE_CHARS",
    "TOKENS",
    "Fragment",
    "LinkTracker",
    "RenderContext",
    "Rendered",
    "TemplateError",
    "TemplateInfo",
    "check_fragment",
    "check_template",
    "render",
]


class TemplateError(ValidationFailedError):
    """A template (or fragment) that cannot be accepted or rendered; ``field`` names the part,
    the detail names the line."""

    code = "template_invalid"


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    tokens: frozenset[str]
    """Tokens used, e.g. ``{"hcp.last_name", "links.unsubscribe"}``."""
    fragments: frozenset[str]
    """Fragment codes included, e.g. ``{"isi-brx", "footer-de"}``."""


@dataclass(frozen=True, slots=True)
class Fragment:
    """A reusable block (safety information, footer); ``html`` None: its text in a <p>."""

    text: str
    html: str | None = None


@dataclass(frozen=True, slots=True)
class RenderContext:
    hcp: Mapping[str, str]
    rep: Mapping[str, str] | None = None
    event: Mapping[str, str] | None = None
    links: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None
    text: str
    html: str | None


class LinkTracker(Protocol):
    def click(self, url: str) -> str:
        """The tracked URL for an outgoing link."""
        ...

    def open_pixel(self) -> str:
        """The URL of the open-tracking pixel."""
        ...


def _checked(source: str, where: str, *, allow_include: bool) -> Analysis:
    try:
        return analyse(source, allow_include)
    except RefusedError as exc:
        raise TemplateError(
            f"line {exc.line}: {exc.detail}", field=where, fix=exc.fix, extra={"line": exc.line}
        ) from None


def _unknown_fragment(where: str, code: str, line: int) -> TemplateError:
    return TemplateError(
        f"line {line}: the fragment {code!r} does not exist",
        field=where,
        fix="include a fragment code from the content library",
        extra={"line": line},
    )


def check_template(
    source: str, *, field: str, fragments: Collection[str] | None = None
) -> TemplateInfo:
    """The tokens and fragments a template uses; TemplateError (naming ``field`` and the
    line) for a syntax error, an unknown token or fragment, or any construct outside the
    allow-list."""
    found = _checked(source, field, allow_include=True)
    if fragments is not None:
        for code, line in found.fragments.items():
            if code not in fragments:
                raise _unknown_fragment(field, code, line)
    return TemplateInfo(found.tokens, frozenset(found.fragments))


def check_fragment(source: str, *, field: str) -> TemplateInfo:
    """``check_template`` for a fragment's text or HTML: it may not include fragments."""
    found = _checked(source, field, allow_include=False)
    return TemplateInfo(found.tokens, frozenset())


# --- rendering --------------------------------------------------------------------------
class _Namespace(dict[str, str]):
    __slots__ = ("name",)

    def __init__(self, name: str, values: Mapping[str, str] | None) -> None:
        allowed = TOKENS[name]
        # str.__str__ drops str subclasses (such as Markup): every value is escaped as data
        super().__init__(
            (k, str.__str__(v) if isinstance(v, str) else str(v))
            for k, v in (values or {}).items()
            if k in allowed and v is not None
        )
        self.name = name


class _MissingToken(StrictUndefined):
    """Fails when printed; false in ``{% if %}``; replaced by ``|default``."""

    __slots__ = ()

    def __bool__(self) -> bool:  # type: ignore[override]  # the base class always fails
        return False

    @property
    def _undefined_message(self) -> str:
        if isinstance(self._undefined_obj, _Namespace):
            return f"the token {self._undefined_obj.name}.{self._undefined_name} has no value"
        return str(super()._undefined_message)


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox with nothing in it: no globals, no tests, the allowed filters only, and
    ``{% include %}`` resolved to this message's fragments."""

    def __init__(self, html: bool) -> None:
        super().__init__(
            autoescape=html,
            undefined=_MissingToken,
            auto_reload=False,
            cache_size=0,
            **LEXER_OPTIONS,
        )
        self.globals.clear()
        self.tests.clear()
        self.filters = {name: FILTERS[name] for name in FILTERS_ALLOWED}
        self.fragments: dict[str, Template] = {}

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is _Namespace:
            value = obj.get(attribute)
            return self.undefined(obj=obj, name=attribute) if value is None else value
        return super().getattr(obj, attribute)

    def get_template(
        self, name: str | Template, parent: str | None = None, globals: Any = None
    ) -> Template:
        if isinstance(name, str) and name.strip() in self.fragments:
            return self.fragments[name.strip()]
        raise UndefinedError(f"the fragment {name!r} is not available")

    def build(self, source: str | nodes.Template, filename: str) -> Template:
        code = self.compile(source, filename, filename)
        return self.template_class.from_code(self, code, self.make_globals(None), None)


def _paragraph(env: _Environment, source: str, filename: str) -> nodes.Template:
    """A text fragment as HTML: its literal text escaped, inside <p>…</p>."""
    tree = env.parse(source, filename, filename)
    for data in tree.find_all(nodes.TemplateData):
        data.data = html_lib.escape(data.data)
    tree.body = [
        nodes.Output([nodes.TemplateData("<p>")], lineno=1),
        *tree.body,
        nodes.Output([nodes.TemplateData("</p>")], lineno=1),
    ]
    return tree


_FragmentKey = tuple[tuple[str, str, str, bool], ...]  # code, source, filename, as paragraph


@functools.lru_cache(maxsize=1024)
def _compiled(source: str, part: str, html: bool, fragments: _FragmentKey) -> Template:
    env = _Environment(html)
    for code, text, filename, paragraph in fragments:
        env.fragments[code] = env.build(
            _paragraph(env, text, filename) if paragraph else text, filename
        )
    return env.build(source, part)


def _fragment_key(
    found: Analysis, part: str, html: bool, library: Mapping[str, Fragment]
) -> _FragmentKey:
    key: list[tuple[str, str, str, bool]] = []
    for code in sorted(found.fragments):
        fragment = library.get(code)
        if fragment is None:
            raise _unknown_fragment(part, code, found.fragments[code])
        use_html = html and fragment.html is not None
        source = fragment.html if use_html and fragment.html is not None else fragment.text
        filename = f"fragments.{code}.{'html' if use_html else 'text'}"
        _checked(source, filename, allow_include=False)
        if not html and not source.endswith("\n"):
            source += "\n"  # a fragment is a block: in text it ends its line
        key.append((code, source, filename, html and not use_html))
    return tuple(key)


def _line_of(tb: TracebackType | None, names: Collection[str]) -> tuple[str | None, int | None]:
    """The innermost template frame of a rendering error (Jinja maps it to the line)."""
    where: tuple[str | None, int | None] = (None, None)
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in names:
            where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return where


def _render_part(
    source: str,
    part: str,
    html: bool,
    library: Mapping[str, Fragment],
    variables: Mapping[str, _Namespace],
) -> str:
    found = _checked(source, part, allow_include=True)
    key = _fragment_key(found, part, html, library)
    template = _compiled(source, part, html, key)
    try:
        return template.render(variables)
    except JinjaError as exc:
        where, line = _line_of(exc.__traceback__, {part, *(k[2] for k in key)})
        at = f"line {line}: " if line else ""
        raise TemplateError(
            f"{at}{exc.message or 'the template cannot be rendered'}",
            field=where or part,
            fix="give the message the missing value (e.g. a rep), or guard the token: "
            '{% if rep.name %}…{% endif %} or {{ rep.name|default("") }}',
            extra={"line": line} if line else None,
        ) from None


def render(
    *,
    subject: str | None,
    text: str,
    html: str | None,
    context: RenderContext,
    fragments: Mapping[str, Fragment] | None = None,
    tracker: LinkTracker | None = None,
) -> Rendered:
    """Render a message's parts for one recipient (see the module docstring)."""
    library = fragments or {}
    variables = {
        "hcp": _Namespace("hcp", context.hcp),
        "rep": _Namespace("rep", context.rep),
        "event": _Namespace("event", context.event),
        "links": _Namespace("links", context.links),
    }
    subject_out = None
    if subject is not None:
        subject_out = " ".join(_render_part(subject, "subject", False, library, variables).split())
    text_out = _render_part(text, "text", False, library, variables)
    html_out = None
    if html is not None:
        html_out = _render_part(html, "html", True, library, variables)
        if tracker is not None:
            html_out = _track(html_out, tracker, frozenset(variables["links"].values()))
    return Rendered(subject_out, text_out, html_out)


# --- link tracking ----------------------------------------------------------------------
_MARKUP = re.compile(
    r"<(?:!--.*?(?:-->|\Z)"  # comments (to the end when unterminated)
    r"|(script|style|textarea|title)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>.*?(?:</\1\s*>|\Z)"
    r"|([a-z][^\s/>]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>)",  # a start tag and its attributes
    re.IGNORECASE | re.DOTALL,
)
_ATTRIBUTE = re.compile(r"([^\s\"'>/=]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+))?")


def _trackable(url: str) -> bool:
    if not url.lower().startswith(("http://", "https://")):
        return False
    try:
        return bool(urlsplit(url).netloc)
    except ValueError:
        return False


def _href(attributes: str) -> re.Match[str] | None:
    """The first href attribute with a value (browsers use the first)."""
    for found in _ATTRIBUTE.finditer(attributes):
        if found.group(1).lower() == "href":
            return found if found.group(2) is not None else None
    return None


def _track(markup: str, tracker: LinkTracker, direct: frozenset[str]) -> str:
    """Outgoing http(s) links of <a> tags → tracked links (``direct`` URLs and other
    schemes stay), and the open pixel before </body>."""
    pieces: list[str] = []
    done = 0
    for tag in _MARKUP.finditer(markup):
        if tag.group(2) is None or tag.group(2).lower() != "a":
            continue
        href = _href(tag.group(3))
        if href is None:
            continue
        raw = href.group(2)
        if raw[:1] in ("'", '"'):
            raw = raw[1:-1]
        url = html_lib.unescape(raw).strip()
        if not _trackable(url) or url in direct:
            continue
        start = tag.start(3) + href.start(2)
        pieces += [markup[done:start], '"', html_lib.escape(tracker.click(url)), '"']
        done = tag.start(3) + href.end(2)
    pieces.append(markup[done:])
    out = "".join(pieces)
    pixel = f'<img src="{html_lib.escape(tracker.open_pixel())}" width="1" height="1" alt="">'
    body_end = out.lower().rfind("</body")
    if body_end < 0:
        return out + pixel
    return out[:body_end] + pixel + out[body_end:]
