"""Server-rendered pages. Jinja2 with autoescaping on: every value is escaped, and templates
never mark input as safe. Pages load nothing from elsewhere (inline CSS, no scripts)."""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

__all__ = ["PAGE_HEADERS", "render"]

PAGE_HEADERS: dict[str, str] = {
    # No scripts at all, styles only inline, forms post back here, never framed.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The URL holds a personal token: do not leak it to other sites, do not cache the page.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}


@functools.cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("counterpoint.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context`` (all values escaped)."""
    return _environment().get_template(template).render(**context)
