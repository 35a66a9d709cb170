"""The demo's content: the synthetic Cardiomax library, approved by synthetic MLR reviewers
through the real workflow (submission, three e-signatures), and a first campaign send.

Everything here is synthetic and labelled so: the users are ``demo-*``, their passwords are
random and printed once, the library is ``examples/content/library.yaml``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from counterpoint.container import Container
from counterpoint.content.schemas import parse_documents
from counterpoint.content.workflow import ApprovalTerms, Discipline, expected_meaning
from counterpoint.delivery.service import SendRequest
from counterpoint.errors import NotFoundError
from counterpoint.event.canonical import Channel
from counterpoint.policy.access import Role
from counterpoint.policy.audit import Actor
from counterpoint.profile.service import SegmentFilter

__all__ = ["LIBRARY", "DemoContent", "prepare_content"]

LIBRARY = Path(__file__).resolve().parents[3] / "examples" / "content" / "library.yaml"
AUTHOR = "demo-brand-manager"
REVIEWERS = {d: f"demo-{d.value}-reviewer" for d in Discipline}
FIRST_SEND = "CMX-DE-EM-001"


@dataclass
class DemoContent:
    approved: list[str] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)
    queued: int = 0
    refused: int = 0
    deferred: int = 0  # queued, waiting for quiet hours (or another timing rule) to pass
    skipped: str | None = None


def _exists(built: Container, name: str) -> bool:
    with built.sessions() as session:
        try:
            built.users.get(session, name)
        except NotFoundError:
            return False
    return True


def prepare_content(built: Container) -> DemoContent:
    """Load, approve and send once; a second run finds the library and changes nothing."""
    out = DemoContent()
    if not LIBRARY.exists():
        out.skipped = f"{LIBRARY} not found (run from a checkout)"
        return out
    actor = Actor.cli()
    try:
        built.content.get(FIRST_SEND)
        out.skipped = "the demo library is already loaded"
        return out
    except NotFoundError:
        pass
    if not _exists(built, AUTHOR):
        built.users.create(AUTHOR, Role.BRAND_MANAGER.value, actor)
    for name in REVIEWERS.values():
        if not _exists(built, name):
            built.users.create(name, Role.MLR_REVIEWER.value, actor)
        out.passwords[name] = secrets.token_urlsafe(12)
        built.users.set_password(name, out.passwords[name], actor)
    author = built.users.principal(AUTHOR)
    documents = parse_documents(yaml.safe_load(LIBRARY.read_text(encoding="utf-8")))
    created = built.content.create_many(documents, author, Actor.of(author, "demo"))
    now = built.clock.now()
    # fragments first, then global assets, then their local variants
    order = sorted(created, key=lambda c: (c["kind"] != "fragment", c.get("parent_id") is not None))
    for item in order:
        terms = ApprovalTerms(
            job_code=f"DEMO-{item['code']}",
            markets=tuple(item["markets"]),
            channels=tuple(item.get("channels") or ()),
            valid_from=now - dt.timedelta(days=1),
            valid_until=now + dt.timedelta(days=365),
        )
        submitted = built.content.submit(item["id"], terms, author, Actor.of(author, "demo"))
        for discipline, name in REVIEWERS.items():
            reviewer = built.users.principal(name)
            current = built.content.get(item["id"])
            built.content.review(
                item["id"],
                discipline.value,
                "approved",
                "synthetic demo approval",
                reviewer,
                Actor.of(reviewer, "demo"),
                password=out.passwords[name],
                meaning=expected_meaning(discipline),
                manifest_hash=current["manifest_hash"] or submitted["manifest_hash"],
            )
        out.approved.append(item["code"])
    report = built.delivery.send(
        SendRequest(
            content=FIRST_SEND,
            channel=Channel.CAMPAIGN_EMAIL,
            segment=SegmentFilter(market="DE", limit=20),
            request_key="demo-first-send",
        ),
        principal=None,
        actor=actor,
    )
    out.queued, out.refused = len(report.queued), len(report.refused)
    out.deferred = len(report.deferred)
    return out
