"""Items and reviews as the API, the CLI and the audit trail show them."""

from __future__ import annotations

from typing import Any

from counterpoint.content.models import ContentItem, ContentReview
from counterpoint.content.workflow import (
    ApprovalTerms,
    Decision,
    Discipline,
    Signature,
    manifest_hash,
)

__all__ = [
    "audit_view",
    "current_manifest",
    "item_dict",
    "review_dict",
    "signature_of",
    "state_view",
    "terms_of",
    "terms_view",
]


def terms_of(row: ContentItem) -> ApprovalTerms | None:
    if row.job_code is None or row.valid_from is None or row.valid_until is None:
        return None
    return ApprovalTerms(
        row.job_code,
        tuple(row.approval_markets),
        tuple(row.approval_channels),
        row.valid_from,
        row.valid_until,
    )


def current_manifest(row: ContentItem) -> str | None:
    """The manifest a signature given now would bind to (None before submission)."""
    terms = terms_of(row)
    return manifest_hash(row.content_hash, terms) if terms else None


def item_dict(row: ContentItem, *, full: bool = True) -> dict[str, Any]:
    """An item as the API and CLI show it (``full``: with body and claims)."""
    out: dict[str, Any] = {
        "id": row.id,
        "code": row.code,
        "kind": row.kind,
        "asset_type": row.asset_type,
        "title": row.title,
        "brand": row.brand,
        "function": row.function,
        "therapeutic_area": row.therapeutic_area,
        "topics": list(row.topics),
        "journey_stage": row.journey_stage,
        "markets": list(row.markets),
        "languages": list(row.languages),
        "channels": list(row.channels),
        "minutes": row.minutes or None,
        "persona": row.persona,
        "parent_id": row.parent_id,
        "fragments": list(row.fragment_codes),
        "version": row.version,
        "state": row.state,
        "review_note": row.review_note,
        "author": row.author,
        "author_id": row.author_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "content_hash": row.content_hash,
        "manifest_hash": current_manifest(row),
        "approval": {
            "job_code": row.job_code,
            "markets": list(row.approval_markets),
            "channels": list(row.approval_channels),
            "valid_from": row.valid_from,
            "valid_until": row.valid_until,
            "approved_at": row.approved_at,
            "approved_hash": row.approved_hash,
            "withdrawn_at": row.withdrawn_at,
        },
        "synthetic": row.synthetic,
    }
    if full:
        out["claims"] = list(row.claims)
        out["body"] = dict(row.body)
    return out


def audit_view(row: ContentItem) -> dict[str, Any]:
    """What an audit record keeps of an item: every field, the body included, so that each
    version that was ever reviewed can be read back from the trail."""
    view = item_dict(row)
    view.pop("approval")
    view.update(
        job_code=row.job_code,
        approval_markets=list(row.approval_markets),
        approval_channels=list(row.approval_channels),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
    )
    return view


def state_view(row: ContentItem) -> dict[str, Any]:
    return {
        "state": row.state,
        "version": row.version,
        "content_hash": row.content_hash,
        "manifest_hash": current_manifest(row),
        "review_note": row.review_note,
    }


def terms_view(row: ContentItem) -> dict[str, Any]:
    return {
        "job_code": row.job_code,
        "approval_markets": list(row.approval_markets),
        "approval_channels": list(row.approval_channels),
        "valid_from": row.valid_from,
        "valid_until": row.valid_until,
    }


def signature_of(review: ContentReview) -> Signature:
    return Signature(
        Discipline(review.discipline),
        review.reviewer_id,
        Decision(review.decision),
        review.manifest_hash,
        review.signed,
    )


def review_dict(review: ContentReview, current: str | None) -> dict[str, Any]:
    return {
        "id": review.id,
        "version": review.version,
        "discipline": review.discipline,
        "decision": review.decision,
        "comments": review.comments,
        "signed": review.signed,
        "meaning": review.meaning,
        "reviewer": review.reviewer,
        "reviewer_id": review.reviewer_id,
        "at": review.at,
        "manifest_hash": review.manifest_hash,
        "binds": review.signed and review.manifest_hash == current,
        "audit_seq": review.audit_seq,
    }
