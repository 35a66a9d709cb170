"""Sandboxed message rendering: the token allow-list, refusal of everything else (with the
part and line named), escaping, fragments, missing values, and tracked links."""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import Environment
from jinja2.exceptions import TemplateError as JinjaError
from markupsafe import Markup, escape

from counterpoint.content.render import (
    TOKENS,
    Fragment,
    RenderContext,
    TemplateError,
    TemplateInfo,
    check_fragment,
    check_template,
    render,
)

HCP = {
    "salutation": "Dear Dr.",
    "title": "Dr.",
    "first_name": "Jane",
    "last_name": "Doe",
    "full_name": "Dr. Jane Doe",
    "specialty": "cardiology",
}
REP = {"name": "Max Rep", "email": "max@pharma.example", "phone": "+49 30 1234", "signature": "Max"}
LINKS = {
    "unsubscribe": "https://cp.example/consent/unsubscribe?token=abc&x=1",
    "preferences": "https://cp.example/consent/preferences?token=def",
}
CONTEXT = RenderContext(hcp=HCP, rep=REP, links=LINKS)


class RecordingTracker:
    """A LinkTracker that records the URLs it was asked to track."""

    def __init__(self) -> None:
        self.clicked: list[str] = []

    def click(self, url: str) -> str:
        self.clicked.append(url)
        return f"https://t.example/c/{len(self.clicked)}"

    def open_pixel(self) -> str:
        return "https://t.example/o/pixel.gif?a=1&b=2"


def _html(
    source: str, tracker: RecordingTracker | None = None, *, hcp: Mapping[str, str] = HCP
) -> str:
    context = RenderContext(hcp=hcp, rep=REP, links=LINKS)
    out = render(subject=None, text="", html=source, context=context, tracker=tracker).html
    assert out is not None
    return out


# --- the allow-list -----------------------------------------------------------------------


def test_check_reports_the_tokens_and_fragments_used() -> None:
    source = (
        "{{ hcp.salutation }} {{ hcp.last_name|upper }}\n"
        "{% if rep.signature %}{{ rep.signature }}{% elif rep.name %}{{ rep.name|trim }}"
        "{% else %}Team{% endif %}\n"
        '{% include "isi-brx" %}{{ event.title|default("our event") }}'
        "{% if not links.unsubscribe and (hcp.title or hcp.specialty) %}x{% endif %}"
        '{% include "footer-de" %}{{ event.location|default(event.join_url, true) }}'
    )
    info = check_template(source, field="html", fragments={"isi-brx", "footer-de"})
    assert info == TemplateInfo(
        tokens=frozenset(
            {
                "hcp.salutation",
                "hcp.last_name",
                "rep.signature",
                "rep.name",
                "event.title",
                "links.unsubscribe",
                "hcp.title",
                "hcp.specialty",
                "event.location",
                "event.join_url",
            }
        ),
        fragments=frozenset({"isi-brx", "footer-de"}),
    )


def test_every_token_of_the_list_is_accepted_and_rendered() -> None:
    values = {ns: {t: f"<{ns}-{t}>" for t in tokens} for ns, tokens in TOKENS.items()}
    source = " ".join(f"{{{{ {ns}.{t} }}}}" for ns, tokens in TOKENS.items() for t in tokens)
    info = check_template(source, field="text")
    assert info.tokens == {f"{ns}.{t}" for ns, tokens in TOKENS.items() for t in tokens}
    out = render(
        subject=None,
        text=source,
        html=None,
        context=RenderContext(
            hcp=values["hcp"], rep=values["rep"], event=values["event"], links=values["links"]
        ),
    )
    assert out.text.split(" ") == [f"<{ns}-{t}>" for ns, tokens in TOKENS.items() for t in tokens]


def test_no_token_name_is_an_attribute_of_the_mappings_that_hold_them() -> None:
    for tokens in TOKENS.values():
        for token in tokens:
            assert not hasattr({}, token), token


@settings(max_examples=300, deadline=None)
@given(
    ns=st.sampled_from([*TOKENS, "self", "cycler", "range", "loop", "config", "x"]),
    attr=st.one_of(
        st.sampled_from(sorted({t for tokens in TOKENS.values() for t in tokens})),
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
    ),
    part=st.sampled_from(["subject", "text", "html"]),
)
def test_a_token_is_accepted_exactly_when_it_is_on_the_list(ns: str, attr: str, part: str) -> None:
    source = f"Hello {{{{ {ns}.{attr} }}}}!"
    if ns in TOKENS and attr in TOKENS[ns]:
        assert check_template(source, field=part).tokens == {f"{ns}.{attr}"}
    else:
        with pytest.raises(TemplateError) as caught:
            check_template(source, field=part)
        assert caught.value.field == part


ESCAPES = [
    ("{{ hcp.__class__ }}", "Python internals"),
    ("{{ hcp.__class__.__mro__ }}", "deeper than namespace.token"),
    ("{{ ''.__class__ }}", "deeper than namespace.token"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "calls"),
    ("{{ cycler.__init__.__globals__ }}", "deeper than namespace.token"),
    ("{{ cycler.__init__ }}", "unknown namespace 'cycler'"),
    ("{{ lipsum }}", "unknown name 'lipsum'"),
    ("{{ range(10) }}", "calls"),
    ("{{ self }}", "unknown name 'self'"),
    ("{{ self._TemplateReference__context }}", "unknown namespace 'self'"),
    ("{{ loop.index }}", "unknown namespace 'loop'"),
    ("{{ namespace() }}", "calls"),
    ("{{ config }}", "unknown name 'config'"),
    ("{{ hcp }}", "hcp alone is not a token"),
    ("{{ hcp.nickname }}", "unknown token hcp.nickname"),
    ("{{ rep.password }}", "unknown token rep.password"),
    ("{{ hcp.last_name.upper() }}", "calls"),
    ("{{ hcp.last_name.__class__ }}", "deeper than namespace.token"),
    ("{{ hcp['last_name'] }}", "subscripts"),
    ("{{ hcp.last_name[0] }}", "subscripts"),
    ("{{ hcp.last_name|attr('__class__') }}", "|attr is not allowed"),
    ("{{ hcp.last_name|safe }}", "|safe is not allowed"),
    ("{{ hcp.last_name|format('%s') }}", "|format is not allowed"),
    ("{{ hcp.last_name|upper(1) }}", "|upper takes no arguments"),
    ("{{ hcp.last_name|default(x='a') }}", "keyword"),
    ("{{ hcp.last_name|default(range(3)) }}", "calls"),
    ("{{ hcp.last_name|default(1) }}", "text in quotes"),
    ("{{ hcp.last_name|default('a', 'b') }}", "true or false"),
    ("{{ hcp.last_name|default('a', true, 1) }}", "|default takes"),
    ("{{ hcp.last_name if hcp.title }}", "inline if"),
    ("{{ hcp.last_name ~ 'x' }}", "concatenation"),
    ("{{ 'literal' }}", "literal values"),
    ("{{ [hcp.title] }}", "lists"),
    ("{% if hcp.title == 'Dr.' %}x{% endif %}", "comparisons"),
    ("{% if hcp.title is defined %}x{% endif %}", "tests with 'is'"),
    ("{% for x in hcp %}{{ x }}{% endfor %}", "{% for %}"),
    ("{% set x = hcp %}", "{% set %}"),
    ("{% set x %}a{% endset %}", "{% set %} blocks"),
    ("{% macro m() %}x{% endmacro %}", "{% macro %}"),
    ("{% call m() %}x{% endcall %}", "{% call %}"),
    ("{% import 'x' as y %}", "{% import %}"),
    ("{% from 'x' import y %}", "{% from … import %}"),
    ("{% extends 'base' %}", "{% extends %}"),
    ("{% block b %}x{% endblock %}", "{% block %}"),
    ("{% filter upper %}x{% endfilter %}", "{% filter %}"),
    ("{% with a = hcp %}{% endwith %}", "{% with %}"),
    ("{% autoescape false %}{{ hcp.title }}{% endautoescape %}", "{% autoescape %}"),
    ("{% include hcp.last_name %}", "fragment code in quotes"),
    ("{% include ['a', 'b'] %}", "fragment code in quotes"),
    ("{% include 'a' ignore missing %}", "ignore missing"),
    ("{% include 'a' without context %}", "with context"),
    ("{% include '  ' %}", "empty fragment code"),
    ("{% do hcp.title %}", "syntax error"),
    ("{{ hcp.last_name", "syntax error"),
    ("{% if hcp.title %}x", "syntax error"),
    ("{{ hcp.last_name }}}{% endif %}", "syntax error"),
]


@pytest.mark.parametrize(("attempt", "named"), ESCAPES)
@pytest.mark.parametrize("part", ["subject", "text", "html"])
def test_anything_outside_the_allow_list_is_refused_naming_part_and_line(
    part: str, attempt: str, named: str
) -> None:
    source = f"Hello {{{{ hcp.last_name }}}},\n{attempt}\n"
    with pytest.raises(TemplateError) as caught:
        check_template(source, field=part)
    error = caught.value
    assert error.code == "template_invalid"
    assert error.status == 400
    assert error.field == part
    assert error.detail.startswith("line 2: "), error.detail
    assert named in error.detail or named in (error.fix or ""), error.detail
    assert error.fix
    problem = error.to_problem()
    assert (problem["field"], problem["line"], problem["code"]) == (part, 2, "template_invalid")


@pytest.mark.parametrize(("attempt", "named"), ESCAPES)
def test_render_checks_again_before_rendering(attempt: str, named: str) -> None:
    """Defence in depth: render refuses what check_template refuses, before any output."""
    with pytest.raises(TemplateError) as caught:
        render(subject=None, text=f"x\n{attempt}", html=None, context=CONTEXT)
    assert caught.value.field == "text"
    assert caught.value.detail.startswith("line 2: ")


@pytest.mark.parametrize(
    "attempt",
    [
        "{{ hcp.__class__ }}",
        "{{ text.__class__.__mro__ }}",
        "{{ text.format.__globals__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ range(3) }}",
        "{{ lipsum() }}",
        "{{ text|attr('__class__') }}",
        "{% for x in range(3) %}{{ x }}{% endfor %}",
    ],
)
def test_the_sandbox_still_holds_when_the_check_is_bypassed(attempt: str) -> None:
    """A template that reached rendering without the check still cannot reach Python."""
    from counterpoint.content import render as module

    with pytest.raises(JinjaError):  # at compile time (no such filter) or at render time
        module._compiled(attempt, "html", True, ()).render(
            {"hcp": module._Namespace("hcp", HCP), "text": "a string"}
        )


def test_an_unknown_token_names_the_alternatives() -> None:
    with pytest.raises(TemplateError) as caught:
        check_template("{{ event.date }}", field="subject")
    assert caught.value.detail == "line 1: unknown token event.date"
    assert caught.value.fix is not None
    assert "event.starts_at" in caught.value.fix


def test_a_fragment_outside_the_library_is_refused_with_its_line() -> None:
    source = 'a\nb\n{% include "isi-brx" %}\n{% include "footer-xx" %}'
    with pytest.raises(TemplateError) as caught:
        check_template(source, field="html", fragments=["isi-brx"])
    assert caught.value.field == "html"
    assert caught.value.detail == "line 4: the fragment 'footer-xx' does not exist"
    # without a library to check against, the codes are reported, not refused
    assert check_template(source, field="html").fragments == {"isi-brx", "footer-xx"}


def test_fragments_may_not_include_fragments() -> None:
    assert check_fragment("{{ hcp.last_name }}", field="fragment").tokens == {"hcp.last_name"}
    with pytest.raises(TemplateError, match="one level only") as caught:
        check_fragment('x\n{% include "other" %}', field="fragments.isi.text")
    assert caught.value.field == "fragments.isi.text"
    nested = {"outer": Fragment('see {% include "inner" %}'), "inner": Fragment("x")}
    with pytest.raises(TemplateError, match="one level only") as caught:
        render(
            subject=None,
            text='{% include "outer" %}',
            html=None,
            context=CONTEXT,
            fragments=nested,
        )
    assert caught.value.field == "fragments.outer.text"


def test_a_broken_fragment_is_named() -> None:
    with pytest.raises(TemplateError) as caught:
        render(
            subject=None,
            text="t",
            html='<p>{% include "isi" %}</p>',
            context=CONTEXT,
            fragments={"isi": Fragment(text="ok", html="<p>\n{{ hcp.__class__ }}</p>")},
        )
    assert caught.value.field == "fragments.isi.html"
    assert caught.value.detail.startswith("line 2: ")


def test_unknown_fragment_at_render_time() -> None:
    with pytest.raises(TemplateError, match="'missing' does not exist"):
        render(subject=None, text='{% include "missing" %}', html=None, context=CONTEXT)


def test_an_oversized_template_is_refused() -> None:
    with pytest.raises(TemplateError, match="longer than"):
        check_template("x" * 200_001, field="html")


# --- values: escaping, missing tokens -----------------------------------------------------


def test_data_is_escaped_in_html_and_verbatim_in_text() -> None:
    evil = '<script>alert("x")</script>&'
    out = render(
        subject="{{ hcp.last_name }}",
        text="{{ hcp.last_name }}",
        html="<p>{{ hcp.last_name }}</p>",
        context=RenderContext(hcp={"last_name": evil}),
    )
    assert out.html == "<p>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;</p>"
    assert out.text == evil
    assert out.subject == evil


def test_values_marked_safe_are_escaped_all_the_same() -> None:
    out = _html("{{ hcp.last_name }}", hcp={"last_name": Markup("<b>bold</b>")})
    assert "<b>" not in out
    assert "&lt;b&gt;bold" in out


def test_the_subject_is_one_line() -> None:
    """No header injection: line breaks from data or source become spaces."""
    out = render(
        subject="Hello {{ hcp.last_name }}\n  and more",
        text="",
        html=None,
        context=RenderContext(hcp={"last_name": "Doe\r\nBcc: victim@example.org"}),
    )
    assert out.subject == "Hello Doe Bcc: victim@example.org and more"


def test_a_missing_token_is_an_error_naming_it() -> None:
    with pytest.raises(TemplateError) as caught:
        render(
            subject=None,
            text="Hello\n\nBest, {{ rep.name }}",
            html=None,
            context=RenderContext(hcp=HCP),
        )
    error = caught.value
    assert error.field == "text"
    assert error.detail == "line 3: the token rep.name has no value"
    assert error.extra["line"] == 3


def test_a_missing_token_inside_a_fragment_names_the_fragment() -> None:
    with pytest.raises(TemplateError) as caught:
        render(
            subject=None,
            text='a\n{% include "sig" %}',
            html=None,
            context=RenderContext(hcp=HCP),
            fragments={"sig": Fragment("--\n{{ rep.signature }}")},
        )
    assert caught.value.field == "fragments.sig.text"
    assert caught.value.detail == "line 2: the token rep.signature has no value"


def test_missing_tokens_are_false_in_if_and_replaced_by_default() -> None:
    source = (
        "{% if rep.signature %}{{ rep.signature }}{% else %}The team{% endif %}"
        '|{{ rep.name|default("our team") }}|{{ hcp.title|default("Dr.", true) }}'
        "|{% if not event.title %}no event{% endif %}"
    )
    out = render(
        subject=None,
        text=source,
        html=None,
        context=RenderContext(hcp={"title": "", "last_name": "Doe"}),
    )
    assert out.text == "The team|our team|Dr.|no event"
    out = render(subject=None, text=source, html=None, context=CONTEXT)
    assert out.text == "Max|Max Rep|Dr.|no event"


def test_a_none_value_counts_as_missing() -> None:
    with pytest.raises(TemplateError, match=r"hcp\.title has no value"):
        render(
            subject=None,
            text="{{ hcp.title }}",
            html=None,
            context=RenderContext(hcp={"title": None}),  # type: ignore[dict-item]  # bad input on purpose
        )


def test_allowed_filters() -> None:
    out = render(
        subject=None,
        text="{{ hcp.last_name|upper }} {{ hcp.last_name|lower }} {{ hcp.specialty|title }} "
        "{{ hcp.specialty|capitalize }} [{{ hcp.salutation|trim }}]",
        html=None,
        context=RenderContext(hcp={**HCP, "salutation": "  Dear  "}),
    )
    assert out.text == "DOE doe Cardiology Cardiology [Dear]"


PIXEL = '<img src="https://t.example/o/pixel.gif?a=1&amp;b=2" width="1" height="1" alt="">'
ESCAPE_HTML = '<p title="{{ hcp.first_name }}">{{ hcp.last_name }}</p>'


def _data_stays_data(rendered: str, first: str, last: str) -> bool:
    """The HTML part is exactly the template with each value escaped: no markup from data."""
    return rendered == f'<p title="{escape(first)}">{escape(last)}</p>' + PIXEL


@settings(max_examples=300, deadline=None)
@given(first=st.text(max_size=40), last=st.text(max_size=40))
def test_no_value_ever_breaks_out_of_escaping(first: str, last: str) -> None:
    tracker = RecordingTracker()
    out = render(
        subject=None,
        text="{{ hcp.first_name }}|{{ hcp.last_name|default('x') }}",
        html=ESCAPE_HTML,
        context=RenderContext(hcp={"first_name": first, "last_name": last}),
        tracker=tracker,
    )
    assert out.html is not None
    assert _data_stays_data(out.html, first, last)
    assert out.text == f"{first}|{last}"
    assert tracker.clicked == []  # links written in data are text, never tracked


def test_the_escaping_property_has_a_negative_control() -> None:
    """The harness above fails for a renderer without escaping."""
    naive = Environment(autoescape=False).from_string(ESCAPE_HTML)
    first, last = '"><a href="https://evil.example">', "<script>x</script>"
    unescaped = naive.render(hcp={"first_name": first, "last_name": last}) + PIXEL
    assert not _data_stays_data(unescaped, first, last)
    assert _data_stays_data(
        _html(ESCAPE_HTML, RecordingTracker(), hcp={"first_name": first, "last_name": last}),
        first,
        last,
    )


# --- fragments --------------------------------------------------------------------------


FRAGMENTS = {
    "isi-brx": Fragment(text="Important safety information: dose < 5 mg, {{ hcp.title }}"),
    "footer-de": Fragment(
        text="Pharma GmbH, Berlin. Unsubscribe: {{ links.unsubscribe }}",
        html='<footer>Pharma GmbH &amp; Co. <a href="{{ links.unsubscribe }}">Abmelden</a>'
        "</footer>",
    ),
}


def test_fragments_use_text_in_text_and_html_in_html() -> None:
    out = render(
        subject='Info {% include "isi-brx" %}',
        text='Hello\n{% include "isi-brx" %}\n{% include "footer-de" %}\nEnd',
        html='<body>{% include "isi-brx" %}{% include "footer-de" %}</body>',
        context=CONTEXT,
        fragments=FRAGMENTS,
    )
    assert out.subject == "Info Important safety information: dose < 5 mg, Dr."
    assert out.text == (
        "Hello\nImportant safety information: dose < 5 mg, Dr.\n"
        f"Pharma GmbH, Berlin. Unsubscribe: {LINKS['unsubscribe']}\nEnd"
    )
    assert "<" not in out.text.replace("dose < 5", "")  # no markup in the text part
    assert out.html == (
        "<body><p>Important safety information: dose &lt; 5 mg, Dr.</p>"
        "<footer>Pharma GmbH &amp; Co. "
        '<a href="https://cp.example/consent/unsubscribe?token=abc&amp;x=1">Abmelden</a>'
        "</footer></body>"
    )


def test_a_text_fragment_in_html_escapes_its_own_text_and_values() -> None:
    out = render(
        subject=None,
        text="",
        html='{% include "f" %}',
        context=RenderContext(hcp={"last_name": "<b>"}),
        fragments={"f": Fragment(text="a <i>literal</i> & {{ hcp.last_name }}")},
    )
    assert out.html == "<p>a &lt;i&gt;literal&lt;/i&gt; &amp; &lt;b&gt;</p>"


def test_a_fragment_change_is_seen_by_the_next_render() -> None:
    """Compiled templates are cached by source and fragments: no stale fragment."""
    text = '{% include "f" %}'
    first = render(
        subject=None, text=text, html=None, context=CONTEXT, fragments={"f": Fragment("one")}
    )
    second = render(
        subject=None, text=text, html=None, context=CONTEXT, fragments={"f": Fragment("two")}
    )
    assert (first.text, second.text) == ("one\n", "two\n")


# --- tracked links ------------------------------------------------------------------------


def test_outgoing_links_are_tracked_and_others_left_alone() -> None:
    tracker = RecordingTracker()
    source = (
        "<html><body>"
        '<a class="btn" target=_blank href="https://brand.example/study?a=1&amp;b=2">one</a>'
        "<a href='http://brand.example/two'>two</a>"
        "<A TITLE=x HREF=https://brand.example/three>three</A>"
        '<a href="  https://brand.example/four  " data-x="1">four</a>'
        '<a href="mailto:info@brand.example">mail</a>'
        '<a href="/relative/path">rel</a><a href="#top">top</a><a name="anchor">n</a>'
        '<a href="javascript:alert(1)">js</a><a href="tel:+4930">tel</a>'
        '<a href="//brand.example/proto-relative">pr</a>'
        '<a href="{{ links.unsubscribe }}">unsubscribe</a>'
        "<a href='{{ links.preferences }}'>preferences</a>"
        '<a data-href="https://brand.example/data" title="href=https://brand.example/t">d</a>'
        '<img src="https://brand.example/logo.png" alt="<a href=https://x.example>">'
        '<!-- <a href="https://brand.example/commented">c</a> -->'
        '<a href="https://brand.example/first" href="https://brand.example/second">dup</a>'
        "</body></html>"
    )
    out = _html(source, tracker)
    assert tracker.clicked == [
        "https://brand.example/study?a=1&b=2",
        "http://brand.example/two",
        "https://brand.example/three",
        "https://brand.example/four",
        "https://brand.example/first",
    ]
    assert '<a class="btn" target=_blank href="https://t.example/c/1">one</a>' in out
    assert '<a href="https://t.example/c/2">two</a>' in out
    assert '<A TITLE=x HREF="https://t.example/c/3">three</A>' in out
    assert '<a href="https://t.example/c/4" data-x="1">four</a>' in out
    assert 'href="https://t.example/c/5" href="https://brand.example/second"' in out
    for untouched in (
        '<a href="mailto:info@brand.example">',
        '<a href="/relative/path">',
        '<a href="#top">',
        '<a href="javascript:alert(1)">',
        '<a href="//brand.example/proto-relative">',
        '<a href="https://cp.example/consent/unsubscribe?token=abc&amp;x=1">',
        "<a href='https://cp.example/consent/preferences?token=def'>",
        'data-href="https://brand.example/data" title="href=https://brand.example/t"',
        '<!-- <a href="https://brand.example/commented">c</a> -->',
        'alt="<a href=https://x.example>"',
    ):
        assert untouched in out, untouched
    assert out.endswith(
        '<img src="https://t.example/o/pixel.gif?a=1&amp;b=2" width="1" height="1" alt="">'
        "</body></html>"
    )


def test_the_pixel_goes_at_the_end_without_a_body_and_nothing_changes_without_tracker() -> None:
    out = _html("<p>Hi</p>", RecordingTracker())
    assert out == "<p>Hi</p>" + PIXEL
    source = '<p><a href="https://brand.example/">x</a></p></BODY>'
    assert _html(source) == source
    assert _html(source, RecordingTracker()).endswith('alt=""></BODY>')


def test_links_in_the_text_part_are_not_rewritten() -> None:
    tracker = RecordingTracker()
    out = render(
        subject=None,
        text="See https://brand.example/study",
        html=None,
        context=CONTEXT,
        tracker=tracker,
    )
    assert out.text == "See https://brand.example/study"
    assert tracker.clicked == []


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v is not None][:1]


_url = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}.example/{path}",
    st.sampled_from(["http", "https", "HTTPS"]),
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    st.text(alphabet="abc/?=&%._-<>\"' ", max_size=12),
)
_attr = st.tuples(st.sampled_from(["class", "title", "id", "data-href"]), st.text(max_size=8))


@settings(max_examples=200, deadline=None)
@given(
    links=st.lists(
        st.tuples(
            _url, st.lists(_attr, max_size=2), st.sampled_from(['"', "'"]), st.text(max_size=8)
        ),
        max_size=5,
    )
)
def test_every_link_the_html_parser_sees_is_tracked(
    links: list[tuple[str, list[tuple[str, str]], str, str]],
) -> None:
    """Agreement with the standard library's HTML parser on well-formed markup."""
    parts = []
    for url, attrs, quote, label in links:
        extra = " ".join(f'{k}="{html.escape(v)}"' for k, v in attrs)
        value = html.escape(url, quote=True)
        parts.append(f"<a {extra} href={quote}{value}{quote}>{html.escape(label)}</a><br>")
    source = "<div>" + "".join(parts) + "</div>"
    parser = _Hrefs()
    parser.feed(source)
    tracker = RecordingTracker()
    out = render(subject=None, text="", html=source, context=CONTEXT, tracker=tracker).html
    assert tracker.clicked == [h.strip() for h in parser.hrefs]
    after = _Hrefs()
    after.feed(out or "")
    assert after.hrefs == [f"https://t.example/c/{i + 1}" for i in range(len(links))]


# --- speed ------------------------------------------------------------------------------


def test_a_typical_email_renders_in_well_under_a_millisecond() -> None:
    subject = "{{ hcp.salutation }} {{ hcp.last_name }}, your invitation"
    text = (
        "{{ hcp.salutation }} {{ hcp.last_name }},\n\nJoin us: {{ event.title }} on "
        '{{ event.starts_at }}.\n{% include "isi-brx" %}\n{% if rep.signature %}'
        '{{ rep.signature }}{% endif %}\n{% include "footer-de" %}'
    )
    html_source = (
        "<html><body><p>{{ hcp.salutation }} {{ hcp.last_name }},</p>"
        + "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>" * 40
        + '<p><a href="{{ event.register_url }}">Register</a> '
        '<a href="https://brand.example/study">Study</a></p>'
        '{% include "isi-brx" %}{% include "footer-de" %}</body></html>'
    )
    context = RenderContext(
        hcp=HCP,
        rep=REP,
        event={
            "title": "Cardio Update",
            "starts_at": "2026-12-01 18:00",
            "register_url": "https://brand.example/register",
        },
        links=LINKS,
    )

    def once() -> None:
        render(
            subject=subject,
            text=text,
            html=html_source,
            context=context,
            fragments=FRAGMENTS,
            tracker=RecordingTracker(),
        )

    for _ in range(20):
        once()
    rounds = 300
    start = time.perf_counter()
    for _ in range(rounds):
        once()
    per_render = (time.perf_counter() - start) / rounds
    # about 0.1 ms on a laptop; the bound leaves room for a loaded test machine
    assert per_render < 0.002, f"{per_render * 1000:.3f} ms per render"
