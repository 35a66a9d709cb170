"""The MLR approval workflow: states, the transition table, review rules and the hashes that
signatures bind to. Pure: no I/O.

An item moves ``draft → submitted → in_review → approved | changes_requested | rejected``;
an approved item ``→ expired`` (at valid-until) or ``→ withdrawn``. ``TRANSITIONS`` is the
whole table: a (state, event) pair missing from it is refused.

Decisions (see docs/content.md):

- ``rejected``, ``expired`` and ``withdrawn`` are final. A final item is the record of what
  was decided; new work on the same material is a new item (a new code, e.g. ``…-v2``).
- An ``edit`` from any other state lands in ``draft``: the content hash changes, so every
  signature given so far stops binding, and the item must be submitted again.
- ``dependency_changed`` (an included fragment or the global parent changed, or stopped
  being approved) sends ``submitted``, ``in_review`` and ``approved`` items to
  ``submitted``: the author changed nothing, the reviewers must sign the new content. Draft
  and changes-requested items stay where they are (their hash is recomputed all the same).
- ``changes_requested`` goes back only through an ``edit``: the changes are made, then the
  item is submitted again.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from counterpoint.errors import ConflictError
from counterpoint.kit.clock import utc

__all__ = [
    "FINAL_STATES",
    "HASHED_FIELDS",
    "REQUIRED_DISCIPLINES",
    "TRANSITIONS",
    "ApprovalTerms",
    "ContentState",
    "Decision",
    "Discipline",
    "InvalidTransitionError",
    "MetadataProblem",
    "ReviewProblem",
    "Signature",
    "WorkflowEvent",
    "advance",
    "allowed_events",
    "approval_complete",
    "canonical_json",
    "content_hash",
    "expected_meaning",
    "manifest_hash",
    "required_metadata_problems",
    "review_problems",
]


class ContentState(enum.StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    REJECTED = "rejected"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


class WorkflowEvent(enum.StrEnum):
    SUBMIT = "submit"
    REVIEW_STARTED = "review_started"
    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    REJECT = "reject"
    EDIT = "edit"
    EXPIRE = "expire"
    WITHDRAW = "withdraw"
    DEPENDENCY_CHANGED = "dependency_changed"


class Discipline(enum.StrEnum):
    MEDICAL = "medical"
    LEGAL = "legal"
    REGULATORY = "regulatory"


class Decision(enum.StrEnum):
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    REJECTED = "rejected"


S, E = ContentState, WorkflowEvent

TRANSITIONS: Mapping[tuple[ContentState, WorkflowEvent], ContentState] = {
    (S.DRAFT, E.SUBMIT): S.SUBMITTED,
    (S.DRAFT, E.EDIT): S.DRAFT,
    (S.DRAFT, E.DEPENDENCY_CHANGED): S.DRAFT,
    (S.SUBMITTED, E.REVIEW_STARTED): S.IN_REVIEW,
    (S.SUBMITTED, E.EDIT): S.DRAFT,
    (S.SUBMITTED, E.DEPENDENCY_CHANGED): S.SUBMITTED,
    (S.IN_REVIEW, E.REVIEW_STARTED): S.IN_REVIEW,  # another discipline's review
    (S.IN_REVIEW, E.APPROVE): S.APPROVED,  # every required discipline signed
    (S.IN_REVIEW, E.REQUEST_CHANGES): S.CHANGES_REQUESTED,
    (S.IN_REVIEW, E.REJECT): S.REJECTED,
    (S.IN_REVIEW, E.EDIT): S.DRAFT,
    (S.IN_REVIEW, E.DEPENDENCY_CHANGED): S.SUBMITTED,
    (S.APPROVED, E.EXPIRE): S.EXPIRED,
    (S.APPROVED, E.WITHDRAW): S.WITHDRAWN,
    (S.APPROVED, E.EDIT): S.DRAFT,
    (S.APPROVED, E.DEPENDENCY_CHANGED): S.SUBMITTED,
    (S.CHANGES_REQUESTED, E.EDIT): S.DRAFT,
    (S.CHANGES_REQUESTED, E.DEPENDENCY_CHANGED): S.CHANGES_REQUESTED,
}
"""Every allowed (state, event) and the state it leads to. Anything absent is refused."""

FINAL_STATES: frozenset[ContentState] = frozenset(
    state for state in ContentState if not any(s is state for s, _ in TRANSITIONS)
)
"""States nothing leaves: rejected, expired, withdrawn."""

REQUIRED_DISCIPLINES: Mapping[str, frozenset[Discipline]] = {
    "promotional": frozenset(Discipline),
    "medical": frozenset(Discipline),
    "educational": frozenset(Discipline),
}
"""Disciplines whose signed approval an item of each function needs. All three for every
function: medical and educational material also makes claims (medical), carries legal
exposure (legal) and falls under the codes of practice (regulatory)."""


class InvalidTransitionError(ConflictError):
    code = "invalid_transition"


def allowed_events(state: ContentState) -> list[WorkflowEvent]:
    """The events ``state`` accepts, in table order."""
    return [event for (s, event) in TRANSITIONS if s is state]


def advance(state: ContentState, event: WorkflowEvent) -> ContentState:
    """The state after ``event``; ``InvalidTransitionError`` when the table has no entry."""
    target = TRANSITIONS.get((state, event))
    if target is None:
        allowed = ", ".join(e.value for e in allowed_events(state)) or "none (a final state)"
        raise InvalidTransitionError(
            f"an item in state {state.value} does not accept {event.value}; "
            f"allowed from {state.value}: {allowed}",
            field="state",
            fix=(
                "a final item cannot change: create a new item (a new code) for new work"
                if state in FINAL_STATES
                else f"from {state.value}, do one of: {allowed}"
            ),
            extra={"state": state.value, "event": event.value},
        )
    return target


# --- reviews and signatures ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signature:
    """One recorded review decision (``signed`` for an approval given as an e-signature)."""

    discipline: Discipline
    reviewer_id: str
    decision: Decision
    manifest_hash: str
    signed: bool


@dataclass(frozen=True, slots=True)
class ReviewProblem:
    code: str
    field: str
    reason: str
    fix: str


def expected_meaning(discipline: Discipline) -> str:
    """The exact words a reviewer states when signing an approval."""
    return f"approved as {discipline.value} reviewer"


def review_problems(
    *,
    author_id: str,
    reviewer_id: str,
    reviewer_role: str,
    discipline: Discipline,
    manifest_hash: str,
    signatures: Iterable[Signature],
) -> list[ReviewProblem]:
    """Why this reviewer may not review this version for ``discipline`` (empty: may)."""
    problems: list[ReviewProblem] = []
    if reviewer_role != "mlr_reviewer":
        problems.append(
            ReviewProblem(
                "not_a_reviewer",
                "reviewer",
                f"the role {reviewer_role} is not an MLR reviewer",
                "ask a user with the mlr_reviewer role to review",
            )
        )
    if reviewer_id == author_id:
        problems.append(
            ReviewProblem(
                "own_content",
                "reviewer",
                "the author may not review their own content",
                "ask another MLR reviewer to review it",
            )
        )
    current = [s for s in signatures if s.manifest_hash == manifest_hash]
    other = sorted(
        {s.discipline.value for s in current if s.reviewer_id == reviewer_id} - {discipline}
    )
    if other:
        problems.append(
            ReviewProblem(
                "second_discipline",
                "discipline",
                f"you already reviewed this version as the {', '.join(other)} reviewer; one "
                "person reviews for one discipline per version",
                f"ask another MLR reviewer to review as {discipline.value}",
            )
        )
    if any(s.signed and s.discipline is discipline for s in current):
        problems.append(
            ReviewProblem(
                "already_signed",
                "discipline",
                f"the {discipline.value} approval of this version is already signed",
                "review for a discipline that has not signed yet",
            )
        )
    return problems


def approval_complete(signatures: Iterable[Signature], function: str, manifest_hash: str) -> bool:
    """Every discipline ``function`` requires holds a signed approval of ``manifest_hash``."""
    required = REQUIRED_DISCIPLINES.get(function, frozenset(Discipline))
    signed = {
        s.discipline
        for s in signatures
        if s.signed and s.decision is Decision.APPROVED and s.manifest_hash == manifest_hash
    }
    return required <= signed


# --- hashes ----------------------------------------------------------------------------------


HASHED_FIELDS: tuple[str, ...] = (
    "kind",
    "asset_type",
    "code",
    "title",
    "brand",
    "therapeutic_area",
    "topics",
    "journey_stage",
    "function",
    "markets",
    "languages",
    "channels",
    "claims",
    "minutes",
    "persona",
    "parent",
    "body",
)
"""What a content hash covers besides the included fragments' and the parent's hashes."""


def canonical_json(value: Any) -> str:
    """One spelling of a JSON value: sorted keys, no spaces, UTF-8 text."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _sha256(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def content_hash(
    item: Mapping[str, Any],
    *,
    fragment_hashes: Mapping[str, str],
    parent_hash: str | None,
) -> str:
    """SHA-256 over the canonical JSON of the body, the metadata, the content hash of every
    included fragment (by code) and the global parent's content hash."""
    plain = {name: item.get(name) for name in HASHED_FIELDS}
    if plain["minutes"] is not None:
        plain["minutes"] = float(plain["minutes"])  # 5 and 5.0 are the same content
    plain["fragments"] = dict(sorted(fragment_hashes.items()))
    plain["parent_hash"] = parent_hash
    return _sha256(plain)


@dataclass(frozen=True, slots=True)
class ApprovalTerms:
    """What an approval grants: a job code, markets, channels and a validity window."""

    job_code: str
    markets: tuple[str, ...]
    channels: tuple[str, ...]
    valid_from: dt.datetime
    valid_until: dt.datetime


def _instant(value: dt.datetime) -> str:
    return utc(value).replace(microsecond=0).isoformat()


def manifest_hash(content: str, terms: ApprovalTerms) -> str:
    """What a signature binds to: the content hash and the approval terms."""
    return _sha256(
        {
            "content_hash": content,
            "job_code": terms.job_code,
            "markets": sorted(terms.markets),
            "channels": sorted(terms.channels),
            "valid_from": _instant(terms.valid_from),
            "valid_until": _instant(terms.valid_until),
        }
    )


# --- required metadata -----------------------------------------------------------------------

MetadataProblem = tuple[str, str, str]
"""(field, reason, fix)."""

_ASSET_FIELDS: tuple[tuple[str, str], ...] = (
    ("title", "a title"),
    ("brand", "the brand, e.g. brand: Cardiomax"),
    ("therapeutic_area", "the therapeutic area, e.g. therapeutic_area: cardiology"),
    ("topics", "at least one topic"),
    ("journey_stage", "the journey stage: awareness, consideration, adoption or advocacy"),
    ("function", "the function: promotional, medical or educational"),
    ("markets", "at least one market (ISO 3166-1 alpha-2, e.g. DE)"),
    ("languages", "at least one language (ISO 639-1, e.g. de)"),
    ("channels", "at least one channel the asset type suits (docs/content.md)"),
    ("minutes", "the estimated HCP minutes to consume it (more than 0)"),
)
_FRAGMENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("title", "a title"),
    ("function", "the function: promotional, medical or educational"),
    ("markets", "at least one market (ISO 3166-1 alpha-2, e.g. DE)"),
    ("languages", "at least one language (ISO 639-1, e.g. de)"),
)
_EMAIL = (("subject", "the subject line"), ("text", "the plain-text part"))
_BODY_FIELDS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "campaign_email": _EMAIL,
    "rep_email_template": _EMAIL,
    "event_invitation": _EMAIL,
    "sms_text": (("text", "the message text (at most 612 characters)"),),
    "clm_deck": (("slides", "at least one slide with its title and key message"),),
    "web_page": (("html", "the page's HTML"),),
    "direct_mail": (("text", "the printed text"),),
    "survey": (("questions", "at least one question"),),
    "fragment": (("text", "the fragment's text"),),
}


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str | list | tuple | dict | set | frozenset):
        return not value
    return False


def required_metadata_problems(asset: Mapping[str, Any]) -> list[MetadataProblem]:
    """Every field an item must carry before it is submitted, and is missing.

    ``asset`` is the item as plain data (``kind``, ``asset_type``, metadata, ``body``)."""
    fragment = asset.get("kind") == "fragment"
    problems: list[MetadataProblem] = []
    for name, what in _FRAGMENT_FIELDS if fragment else _ASSET_FIELDS:
        value = asset.get(name)
        if name == "minutes" and isinstance(value, int | float) and value <= 0:
            problems.append((name, "must be more than 0", f"give {what}"))
        elif _missing(value):
            problems.append((name, "is required before submission", f"give {what}"))
    body = asset.get("body") or {}
    kind = "fragment" if fragment else str(asset.get("asset_type"))
    if kind == "leaflet":
        has_file = all(not _missing(body.get(k)) for k in ("file_name", "sha256", "media_type"))
        if not has_file and _missing(body.get("url")):
            problems.append(
                (
                    "body.file_name",
                    "a leaflet needs its file (file_name, sha256, media_type) or a url",
                    "give body.file_name, body.sha256 and body.media_type, or body.url",
                )
            )
    for name, what in _BODY_FIELDS.get(kind, ()):
        if _missing(body.get(name)):
            problems.append((f"body.{name}", "is required before submission", f"give {what}"))
    return problems
