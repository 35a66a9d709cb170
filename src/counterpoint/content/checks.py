"""Checks and row updates the content service runs inside its transactions: documents
against the library (templates, fragments, parents), hashes from stored rows, what a
submission needs (fragments approved and covering the item, an unsubscribe link, sound
approval terms)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from counterpoint.content import repository as repo
from counterpoint.content.errors import FragmentNotApprovedError
from counterpoint.content.models import ContentItem
from counterpoint.content.schemas import (
    AssetDocument,
    DocumentProblem,
    FragmentDocument,
    body_of,
    check_templates,
    metadata_of,
)
from counterpoint.content.workflow import (
    FINAL_STATES,
    HASHED_FIELDS,
    ApprovalTerms,
    ContentState,
    content_hash,
)
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Channel
from counterpoint.kit.clock import utc
from counterpoint.profile.validation import normalise_market

__all__ = [
    "Document",
    "apply_document",
    "clean_terms",
    "clear_terms",
    "digest",
    "document_problems",
    "metadata_fields",
    "parent_code",
    "plain_document",
    "plain_row",
    "problem_fields",
    "rehash",
    "require_fragments",
    "same_identity",
    "unsubscribe_problems",
]

Document = AssetDocument | FragmentDocument
_JOB_CODE = re.compile(r"^[A-Za-z0-9][\w.\-/]{0,99}$")
_UNSUBSCRIBE = "links.unsubscribe"
_EMAILS = frozenset({"campaign_email", "rep_email_template", "event_invitation"})


def plain_document(document: Document) -> dict[str, Any]:
    return {**metadata_of(document), "body": body_of(document)}


def problem_fields(problems: Sequence[tuple[str, str, str]]) -> str:
    return "; ".join(f"{field} {reason}" for field, reason, _ in problems)


_NOT_METADATA = frozenset({"minutes", "parent", "body"})


def metadata_fields() -> tuple[str, ...]:
    """Columns that hold the document's metadata under the same name: the hashed fields but
    the body, the minutes and the parent (stored as ``body``, ``minutes``, ``parent_id``)."""
    return tuple(f for f in HASHED_FIELDS if f not in _NOT_METADATA)


def parent_code(document: Document) -> str | None:
    return document.parent if isinstance(document, AssetDocument) else None


def apply_document(
    row: ContentItem,
    plain: dict[str, Any],
    fragments: frozenset[str],
    parent: ContentItem | None,
    now: dt.datetime,
) -> None:
    for name in metadata_fields():
        setattr(row, name, plain.get(name))
    row.topics = list(plain.get("topics") or [])
    row.markets = list(plain.get("markets") or [])
    row.languages = list(plain.get("languages") or [])
    row.channels = list(plain.get("channels") or [])
    row.claims = list(plain.get("claims") or [])
    row.minutes = float(plain.get("minutes") or 0.0)  # 0: not given yet (minutes are > 0)
    row.parent_id = parent.id if parent else None
    row.body = dict(plain.get("body") or {})
    row.fragment_codes = sorted(fragments)
    row.synthetic = bool(plain.get("synthetic"))
    row.updated_at = now


def same_identity(row: ContentItem, document: Document) -> None:
    asset_type = document.asset_type.value if isinstance(document, AssetDocument) else None
    for field, was, now in (
        ("kind", row.kind, document.kind),
        ("code", row.code, document.code),
        ("asset_type", row.asset_type, asset_type),
    ):
        if was != now:
            raise ValidationFailedError(
                f"an edit cannot change the {field} ({was} → {now})",
                field=field,
                fix=f"keep {field}: {was}, or create a new item",
            )


def clear_terms(row: ContentItem) -> None:
    """Back to draft: the proposed terms go (the next submission proposes them again)."""
    row.job_code = None
    row.approval_markets = []
    row.approval_channels = []
    row.valid_from = row.valid_until = None
    row.approved_at = row.approved_hash = None


def clean_terms(row: ContentItem, terms: ApprovalTerms, now: dt.datetime) -> ApprovalTerms:
    """The terms normalised, each problem named: markets and channels within the item's,
    a job code, and a validity window that has not ended."""
    if not _JOB_CODE.fullmatch(terms.job_code.strip()):
        raise ValidationFailedError(
            f"{terms.job_code[:40]!r} is not a job code",
            field="job_code",
            fix="give the approval code, e.g. CMX-DE-0042 (letters, digits, . _ - /)",
        )
    markets: list[str] = []
    for raw in terms.markets:
        code = normalise_market(raw)
        if code is None or code not in row.markets:
            raise ValidationFailedError(
                f"{raw[:20]!r} is not one of the item's markets ({', '.join(row.markets)})",
                field="markets",
                fix="approve for markets the item is made for",
            )
        markets.append(code)
    channels: list[str] = []
    for raw in terms.channels:
        if raw not in {c.value for c in Channel} or raw not in row.channels:
            raise ValidationFailedError(
                f"{raw[:40]!r} is not one of the item's channels "
                f"({', '.join(row.channels) or 'none: a fragment has no channels'})",
                field="channels",
                fix="approve for channels the item is made for",
            )
        channels.append(raw)
    if not markets:
        raise ValidationFailedError(
            "an approval needs at least one market", field="markets", fix="give --market DE"
        )
    if row.kind == "asset" and not channels:
        raise ValidationFailedError(
            "an approval needs at least one channel",
            field="channels",
            fix="give a channel of the item, e.g. --channel campaign_email",
        )
    start = utc(terms.valid_from).replace(microsecond=0)
    end = utc(terms.valid_until).replace(microsecond=0)
    if start >= end:
        raise ValidationFailedError(
            "valid_from must be before valid_until",
            field="valid_until",
            fix="give a validity window that ends after it starts",
        )
    if end <= now:
        raise ValidationFailedError(
            f"valid_until {end:%Y-%m-%d %H:%M} UTC has passed",
            field="valid_until",
            fix="give a validity window that ends in the future",
        )
    return ApprovalTerms(
        terms.job_code.strip(),
        tuple(dict.fromkeys(markets)),
        tuple(dict.fromkeys(channels)),
        start,
        end,
    )


def digest(
    session: Session, plain: dict[str, Any], fragments: Iterable[str], parent: str | None
) -> str:
    found = repo.items_by_codes(session, list(fragments))
    parent_row = repo.find_item(session, parent) if parent else None
    return content_hash(
        plain,
        fragment_hashes={code: row.content_hash for code, row in found.items()},
        parent_hash=parent_row.content_hash if parent_row else None,
    )


def plain_row(session: Session, row: ContentItem) -> dict[str, Any]:
    parent = session.get(ContentItem, row.parent_id) if row.parent_id else None
    plain = {name: getattr(row, name) for name in metadata_fields()}
    plain.update(
        minutes=row.minutes or None,
        parent=parent.code if parent else None,
        body=dict(row.body),
    )
    return plain


def rehash(session: Session, row: ContentItem) -> str:
    parent = session.get(ContentItem, row.parent_id) if row.parent_id else None
    return digest(
        session,
        plain_row(session, row),
        row.fragment_codes,
        parent.code if parent else None,
    )


def document_problems(
    session: Session,
    document: Document,
    *,
    index: int | None,
    known_fragments: set[str],
    batch_assets: dict[str, AssetDocument],
) -> tuple[list[DocumentProblem], frozenset[str]]:
    templates = check_templates(document, known_fragments, index=index)
    problems = list(templates.problems)
    if isinstance(document, AssetDocument) and document.parent:
        reason = parent_problem(session, document, batch_assets)
        if reason:
            problems.append(
                DocumentProblem(
                    index,
                    document.code,
                    "parent",
                    reason,
                    "name a global asset (one without a parent) of the same brand",
                )
            )
    return problems, templates.fragments


def parent_problem(
    session: Session, document: AssetDocument, batch: dict[str, AssetDocument]
) -> str | None:
    code = document.parent or ""
    row = repo.items_by_codes(session, [code]).get(code)
    if row is not None:
        kind, parent_of, brand, state = row.kind, row.parent_id, row.brand, row.state
    elif code in batch:
        kind, parent_of, brand = "asset", batch[code].parent, batch[code].brand
        state = ContentState.DRAFT.value
    else:
        return f"no asset has the code {code}"
    if kind != "asset":
        return f"{code} is a fragment, not an asset"
    if parent_of is not None:
        return f"{code} is itself a local variant; a variant's parent is a global asset"
    if brand != document.brand:
        return f"the variant's brand {document.brand} differs from its parent's {brand}"
    if ContentState(state) in FINAL_STATES:
        return f"the global parent {code} is {state}"
    return None


def require_fragments(session: Session, row: ContentItem, *, check_scope: bool = False) -> None:
    found = repo.items_by_codes(session, row.fragment_codes)
    for code in row.fragment_codes:
        fragment = found.get(code)
        state = fragment.state if fragment else "missing"
        if state != ContentState.APPROVED.value:
            raise FragmentNotApprovedError(
                f"the included fragment {code} is {state}, not approved",
                field="fragments",
                fix=f"have the fragment {code} approved first, or stop including it",
                extra={"fragment": code, "fragment_state": state},
            )
        assert fragment is not None
        uncovered = [m for m in row.markets if m not in fragment.markets]
        uncovered += [lang for lang in row.languages if lang not in fragment.languages]
        if check_scope and uncovered:
            raise FragmentNotApprovedError(
                f"the included fragment {code} does not cover {', '.join(uncovered)}",
                field="fragments",
                fix=f"include a fragment made for {', '.join(uncovered)}, "
                "or narrow the item's markets and languages",
                extra={"fragment": code},
            )


def unsubscribe_problems(session: Session, row: ContentItem) -> list[tuple[str, str, str]]:
    """A promotional e-mail carries an unsubscribe link in each part, directly or
    through a fragment."""
    if row.function != "promotional" or row.asset_type not in _EMAILS:
        return []
    from counterpoint.content.render import TemplateError, check_fragment, check_template

    fragments = repo.items_by_codes(session, row.fragment_codes)
    problems: list[tuple[str, str, str]] = []
    for part in ("text", "html"):
        source = row.body.get(part)
        if not source:
            continue
        try:
            info = check_template(source, field=f"body.{part}", fragments=fragments.keys())
        except TemplateError:
            continue  # reported when the document was stored
        tokens = set(info.tokens)
        for code in info.fragments:
            body = fragments[code].body
            text = body.get(part) or body.get("text") or ""
            try:
                tokens |= check_fragment(text, field=part).tokens
            except TemplateError:
                continue
        if _UNSUBSCRIBE not in tokens:
            problems.append(
                (
                    f"body.{part}",
                    "a promotional e-mail needs an unsubscribe link",
                    "add {{ links.unsubscribe }}, or include a footer fragment that has it",
                )
            )
    return problems
