"""Use cases of the content library: create and edit items, submit them for MLR review, review
and sign, withdraw, expire; and the reads (one item, a filtered page, upcoming expiries, the
review history with whether each signature still binds).

Every change runs in one transaction that first moves the library's generation (readers of
approved content reload on it), then writes the audit record with the change. Editing an item
gives it a new version and content hash; items built from it (assets including a fragment,
local variants of a global parent) get their hashes recomputed and go back to review. See
docs/content.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from counterpoint.content import repository as repo
from counterpoint.content.checks import (
    Document,
    apply_document,
    clean_terms,
    clear_terms,
    digest,
    document_problems,
    parent_code,
    plain_document,
    plain_row,
    problem_fields,
    rehash,
    require_fragments,
    same_identity,
    unsubscribe_problems,
)
from counterpoint.content.errors import (
    ContentForbiddenError,
    ContentIncompleteError,
    FragmentNotApprovedError,
    ReauthenticationFailedError,
    ReviewRefusedError,
    SignatureMeaningError,
    StaleContentError,
)
from counterpoint.content.models import ContentItem, ContentReview
from counterpoint.content.schemas import (
    AssetDocument,
    ContentDocumentError,
    DocumentProblem,
    FragmentDocument,
)
from counterpoint.content.views import (
    audit_view,
    current_manifest,
    item_dict,
    review_dict,
    signature_of,
    state_view,
    terms_view,
)
from counterpoint.content.workflow import (
    FINAL_STATES,
    ApprovalTerms,
    ContentState,
    Decision,
    Discipline,
    WorkflowEvent,
    advance,
    approval_complete,
    expected_meaning,
    required_metadata_problems,
    review_problems,
)
from counterpoint.errors import NotFoundError, ValidationFailedError
from counterpoint.kit.clock import Clock, utc
from counterpoint.kit.ids import new_id
from counterpoint.policy.access import Principal, Resource, Verb, is_allowed, within_brands
from counterpoint.policy.audit import Actor, AuditTrail, require_reason
from counterpoint.policy.tokens import Users

__all__ = [
    "ContentForbiddenError",
    "ContentIncompleteError",
    "ContentService",
    "FragmentNotApprovedError",
    "ReauthenticationFailedError",
    "ReviewRefusedError",
    "SignatureMeaningError",
    "StaleContentError",
    "item_dict",
]

_COMMENTS_MAX = 5000
_IN_REVIEW = frozenset({ContentState.SUBMITTED, ContentState.IN_REVIEW})


class ContentService:
    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, audit: AuditTrail, users: Users
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._audit = audit
        self._users = users

    # --- access ---------------------------------------------------------------------------
    @staticmethod
    def _require(principal: Principal, resource: Resource, verb: Verb) -> None:
        if not is_allowed(principal.role, resource, verb):
            raise ContentForbiddenError(
                f"the role {principal.role.value} may not {verb.value} {resource.value}",
                field="user",
                fix="act as a user whose role holds this permission (docs/access.md)",
                extra={"resource": resource.value, "verb": verb.value},
            )

    @staticmethod
    def _require_brand(principal: Principal, brand: str | None, where: str = "") -> None:
        if not within_brands(principal, brand):
            raise ContentForbiddenError(
                f"{where}the brand {brand} is outside your brands",
                field="brand",
                fix="act only for your brands: " + ", ".join(sorted(principal.brands)),
            )

    @staticmethod
    def _row(session: Session, id_or_code: str, principal: Principal | None) -> ContentItem:
        row = repo.find_item(session, id_or_code)
        if row is None or (principal is not None and not within_brands(principal, row.brand)):
            raise NotFoundError(
                f"no content item {id_or_code[:100]!r}",
                field="id",
                fix="give an item's id or code (counterpoint content list)",
            )
        return row

    # --- create and edit ------------------------------------------------------------------
    def create(self, document: Document, principal: Principal, actor: Actor) -> dict[str, Any]:
        """A new item in draft, authored by ``principal``."""
        return self.create_many([document], principal, actor)[0]

    def create_many(
        self, documents: Sequence[Document], principal: Principal, actor: Actor
    ) -> list[dict[str, Any]]:
        """Every document, or none: all problems of all documents are reported together."""
        self._require(principal, Resource.CONTENT, Verb.WRITE)
        for index, document in enumerate(documents):
            where = f"document {index} ({document.code}): " if len(documents) > 1 else ""
            self._require_brand(principal, document.brand, where)
        now = self._clock.now()
        with self._sessions.begin() as session:
            repo.bump_generation(session)
            used = self._check_new(session, documents)
            order = sorted(
                range(len(documents)),
                key=lambda i: (documents[i].kind == "asset", parent_code(documents[i]) is not None),
            )
            rows: dict[int, ContentItem] = {}
            for i in order:
                rows[i] = self._insert(session, documents[i], used[i], principal, actor, now)
            return [item_dict(rows[i]) for i in range(len(documents))]

    def _check_new(self, session: Session, documents: Sequence[Document]) -> list[frozenset[str]]:
        problems: list[DocumentProblem] = []
        existing = repo.items_by_codes(session, [d.code for d in documents])
        first: dict[str, int] = {}
        for index, document in enumerate(documents):
            if document.code in first:
                problems.append(
                    DocumentProblem(
                        index,
                        document.code,
                        "code",
                        f"the code is also used by document {first[document.code]}",
                        "give every document its own code",
                    )
                )
            first.setdefault(document.code, index)
            if document.code in existing:
                problems.append(
                    DocumentProblem(
                        index,
                        document.code,
                        "code",
                        "an item with this code exists",
                        "choose a new code, or edit the existing item (PUT /api/v1/content/ID)",
                    )
                )
        known = repo.fragment_codes(session) | {
            d.code for d in documents if isinstance(d, FragmentDocument)
        }
        batch = {d.code: d for d in documents if isinstance(d, AssetDocument)}
        used: list[frozenset[str]] = []
        for index, document in enumerate(documents):
            found, fragments = document_problems(
                session, document, index=index, known_fragments=known, batch_assets=batch
            )
            problems.extend(found)
            used.append(fragments)
        if problems:
            raise ContentDocumentError(problems)
        return used

    def _insert(
        self,
        session: Session,
        document: Document,
        fragments: frozenset[str],
        principal: Principal,
        actor: Actor,
        now: dt.datetime,
    ) -> ContentItem:
        plain = plain_document(document)
        parent = parent_code(document)
        parent_row = repo.find_item(session, parent) if parent else None
        row = ContentItem(
            id=new_id("cnt"),
            code=document.code,
            version=1,
            state=ContentState.DRAFT.value,
            author_id=principal.user_id,
            author=principal.name,
            created_at=now,
            approval_markets=[],
            approval_channels=[],
        )
        apply_document(row, plain, fragments, parent_row, now)
        row.content_hash = digest(session, plain, fragments, parent)
        session.add(row)
        session.flush()
        self._audit.record(
            session, actor, "content.create", "content", row.id, after=audit_view(row)
        )
        return row

    def update(
        self, item_id: str, document: Document, principal: Principal, actor: Actor
    ) -> dict[str, Any]:
        """Edit an item: a new version and content hash, back to draft (signatures stop
        binding), and every item built from it is flagged. Unchanged content: no new version."""
        self._require(principal, Resource.CONTENT, Verb.WRITE)
        self._require_brand(principal, document.brand)
        now = self._clock.now()
        with self._sessions.begin() as session:
            repo.bump_generation(session)
            row = self._row(session, item_id, principal)
            same_identity(row, document)
            known = repo.fragment_codes(session)
            problems, fragments = document_problems(
                session, document, index=None, known_fragments=known, batch_assets={}
            )
            if problems:
                raise ContentDocumentError(problems)
            plain = plain_document(document)
            new_hash = digest(session, plain, fragments, parent_code(document))
            if new_hash == row.content_hash and row.synthetic == document.synthetic:
                return {**item_dict(row), "changed": False}
            state = advance(ContentState(row.state), WorkflowEvent.EDIT)
            before = audit_view(row)
            parent_row = repo.items_by_codes(session, [plain["parent"]]).get(plain["parent"])
            apply_document(row, plain, fragments, parent_row, now)
            clear_terms(row)
            row.version += 1
            row.content_hash = new_hash
            row.state = state.value
            row.review_note = None
            self._audit.record(
                session,
                actor,
                "content.edit",
                "content",
                row.id,
                before=before,
                after=audit_view(row),
            )
            self._propagate(session, row, "changed", actor, now)
            return {**item_dict(row), "changed": True}

    def _propagate(
        self, session: Session, source: ContentItem, what: str, actor: Actor, now: dt.datetime
    ) -> None:
        """Items built from ``source`` get their hashes recomputed; those in review or
        approved go back to review (``dependency_changed``), with a note naming why."""
        queue: list[tuple[ContentItem, str]] = [(source, what)]
        seen = {source.id}
        while queue:
            changed, how = queue.pop(0)
            for row in repo.dependants(session, changed):
                if row.id in seen or ContentState(row.state) in FINAL_STATES:
                    continue
                seen.add(row.id)
                note = (
                    f"global parent {changed.code} {how}"
                    if row.parent_id == changed.id
                    else f"fragment {changed.code} {how}"
                )
                fresh = rehash(session, row)
                rehashed = fresh != row.content_hash
                state = ContentState(row.state)
                if not rehashed and state not in _IN_REVIEW | {ContentState.APPROVED}:
                    continue
                before = state_view(row)
                target = advance(state, WorkflowEvent.DEPENDENCY_CHANGED)
                if rehashed:
                    row.version += 1
                    row.content_hash = fresh
                if state is ContentState.APPROVED:
                    row.approved_at = None
                    row.approved_hash = None
                row.state = target.value
                row.review_note = note
                row.updated_at = now
                self._audit.record(
                    session,
                    actor,
                    "content.dependency_changed",
                    "content",
                    row.id,
                    before=before,
                    after=state_view(row),
                    reason=note,
                )
                if rehashed:
                    queue.append((row, "changed"))

    # --- submit ---------------------------------------------------------------------------
    def submit(
        self, item_id: str, terms: ApprovalTerms, principal: Principal, actor: Actor
    ) -> dict[str, Any]:
        """Send an item to MLR review with the approval terms the reviewers will sign."""
        now = self._clock.now()
        with self._sessions.begin() as session:
            repo.bump_generation(session)
            row = self._row(session, item_id, principal)
            if principal.user_id != row.author_id:
                self._require(principal, Resource.CONTENT, Verb.WRITE)
            state = advance(ContentState(row.state), WorkflowEvent.SUBMIT)
            problems = required_metadata_problems(plain_row(session, row))
            problems += unsubscribe_problems(session, row)
            if problems:
                raise ContentIncompleteError(
                    f"the item cannot be submitted: {problem_fields(problems)}",
                    field=problems[0][0],
                    fix=problems[0][2],
                    extra={
                        "problems": [{"field": f, "reason": r, "fix": x} for f, r, x in problems]
                    },
                )
            require_fragments(session, row, check_scope=True)
            clean = clean_terms(row, terms, now)
            before = state_view(row)
            row.job_code = clean.job_code
            row.approval_markets = list(clean.markets)
            row.approval_channels = list(clean.channels)
            row.valid_from, row.valid_until = clean.valid_from, clean.valid_until
            row.state = state.value
            row.review_note = None
            row.updated_at = now
            self._audit.record(
                session,
                actor,
                "content.submit",
                "content",
                row.id,
                before=before,
                after={**state_view(row), **terms_view(row)},
            )
            return item_dict(row)

    # --- review and sign ------------------------------------------------------------------
    def review(
        self,
        item_id: str,
        discipline: str,
        decision: str,
        comments: str | None,
        principal: Principal,
        actor: Actor,
        *,
        password: str | None,
        meaning: str | None,
        manifest_hash: str,
    ) -> dict[str, Any]:
        """One reviewer's decision for one discipline. An approval is an electronic
        signature: the reviewer re-enters their password, states the meaning, and the
        signature binds to ``manifest_hash``, which must be the item's current one."""
        chosen = _enum(Discipline, discipline, "discipline")
        verdict = _enum(Decision, decision, "decision")
        note = (comments or "").strip() or None
        if note is not None and len(note) > _COMMENTS_MAX:
            raise ValidationFailedError(
                f"comments are longer than {_COMMENTS_MAX} characters",
                field="comments",
                fix="shorten the comments",
            )
        if verdict is not Decision.APPROVED and (note is None or len(note) < 3):
            raise ValidationFailedError(
                f"a decision of {verdict.value} needs comments",
                field="comments",
                fix="say what must change, or why it is rejected",
            )
        with self._sessions() as session:
            row = self._row(session, item_id, principal)
            self._check_review(session, row, principal, chosen, verdict, manifest_hash)
            row_id = row.id
        if verdict is Decision.APPROVED:
            expected = expected_meaning(chosen)
            if (meaning or "").strip() != expected:
                raise SignatureMeaningError(
                    f"the signature's meaning must be exactly {expected!r}",
                    field="meaning",
                    fix=f'state the meaning of your signature: "{expected}"',
                )
            if not self._users.verify_password(principal.user_id, password or "", actor=actor):
                raise ReauthenticationFailedError(
                    "re-authentication failed: the password is not the signer's",
                    field="password",
                    fix="enter your own password (counterpoint users set-password NAME)",
                )
        return self._record_review(row_id, chosen, verdict, note, principal, actor, manifest_hash)

    def _check_review(
        self,
        session: Session,
        row: ContentItem,
        principal: Principal,
        discipline: Discipline,
        decision: Decision,
        manifest: str,
    ) -> None:
        advance(ContentState(row.state), WorkflowEvent.REVIEW_STARTED)
        if manifest != current_manifest(row):
            raise StaleContentError(
                "the content changed since you opened it: the manifest hash you review is "
                "not the item's current one",
                field="manifest_hash",
                fix="open the item again, review its current content and terms, then sign",
            )
        problems = review_problems(
            author_id=row.author_id,
            reviewer_id=principal.user_id,
            reviewer_role=principal.role.value,
            discipline=discipline,
            manifest_hash=manifest,
            signatures=[signature_of(r) for r in repo.reviews_of(session, row.id)],
        )
        if problems:
            first = problems[0]
            raise ReviewRefusedError(
                first.reason,
                field=first.field,
                fix=first.fix,
                extra={"rule": first.code, "rules": [p.code for p in problems]},
            )
        if decision is Decision.APPROVED:
            require_fragments(session, row)

    def _record_review(
        self,
        item_id: str,
        discipline: Discipline,
        decision: Decision,
        comments: str | None,
        principal: Principal,
        actor: Actor,
        manifest: str,
    ) -> dict[str, Any]:
        now = self._clock.now()
        with self._sessions.begin() as session:
            repo.bump_generation(session)
            row = repo.lock_item(session, item_id)
            assert row is not None  # items are never deleted
            self._check_review(session, row, principal, discipline, decision, manifest)
            before = state_view(row)
            state = advance(ContentState(row.state), WorkflowEvent.REVIEW_STARTED)
            signed = decision is Decision.APPROVED
            review = ContentReview(
                id=new_id("rev"),
                item_id=row.id,
                version=row.version,
                manifest_hash=manifest,
                discipline=discipline.value,
                decision=decision.value,
                comments=comments,
                meaning=expected_meaning(discipline) if signed else None,
                signed=signed,
                reviewer_id=principal.user_id,
                reviewer=principal.name,
                at=now,
            )
            review.audit_seq = self._audit.record(
                session,
                actor,
                "content.sign" if signed else "content.review",
                "content",
                row.id,
                after={
                    "review_id": review.id,
                    "discipline": discipline.value,
                    "decision": decision.value,
                    "meaning": review.meaning,
                    "manifest_hash": manifest,
                    "version": row.version,
                    "reviewer_id": principal.user_id,
                },
                reason=comments,
            )
            session.add(review)
            if signed:
                signatures = [signature_of(r) for r in repo.reviews_of(session, row.id)]
                if approval_complete(signatures, row.function, manifest):
                    state = advance(state, WorkflowEvent.APPROVE)
                    row.approved_at, row.approved_hash = now, manifest
            elif decision is Decision.CHANGES_REQUESTED:
                state = advance(state, WorkflowEvent.REQUEST_CHANGES)
                row.review_note = f"{discipline.value} review: {comments}"
            else:
                state = advance(state, WorkflowEvent.REJECT)
                row.review_note = f"rejected in {discipline.value} review: {comments}"
            row.state = state.value
            row.updated_at = now
            if row.state != before["state"]:
                self._audit.record(
                    session,
                    actor,
                    f"content.{row.state}",
                    "content",
                    row.id,
                    before=before,
                    after={**state_view(row), **terms_view(row)},
                )
            return {"item": item_dict(row, full=False), "review": review_dict(review, manifest)}

    # --- withdraw and expire --------------------------------------------------------------
    def withdraw(
        self, item_id: str, reason: str, principal: Principal, actor: Actor
    ) -> dict[str, Any]:
        """Withdraw an approved item at once; items built from it go back to review."""
        self._require(principal, Resource.CONTENT_REVIEW, Verb.WRITE)
        why = require_reason(reason, "a withdrawal")
        now = self._clock.now()
        with self._sessions.begin() as session:
            repo.bump_generation(session)
            row = self._row(session, item_id, principal)
            state = advance(ContentState(row.state), WorkflowEvent.WITHDRAW)
            before = state_view(row)
            row.state, row.withdrawn_at, row.updated_at = state.value, now, now
            row.review_note = f"withdrawn: {why}"
            self._audit.record(
                session,
                actor,
                "content.withdraw",
                "content",
                row.id,
                before=before,
                after=state_view(row),
                reason=why,
            )
            self._propagate(session, row, "withdrawn", actor, now)
            return item_dict(row)

    def expire_due(self, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Approved items whose validity has ended become expired (returned). The guard
        refuses them from valid-until on regardless; this keeps states and lists honest."""
        at = utc(now) if now else self._clock.now()
        with self._sessions() as session:
            if not repo.past_valid_until(session, at):
                return []
        actor = Actor.system("content-expiry")
        with self._sessions.begin() as session:
            repo.bump_generation(session)
            rows = repo.past_valid_until(session, at)
            for row in rows:
                before = state_view(row)
                row.state = advance(ContentState(row.state), WorkflowEvent.EXPIRE).value
                row.updated_at = at
                self._audit.record(
                    session,
                    actor,
                    "content.expire",
                    "content",
                    row.id,
                    before=before,
                    after=state_view(row),
                    reason=f"valid until {row.valid_until:%Y-%m-%d %H:%M} UTC",
                )
                self._propagate(session, row, "expired", actor, at)
            return [item_dict(r, full=False) for r in rows]

    # --- reading --------------------------------------------------------------------------
    def get(self, id_or_code: str, principal: Principal | None = None) -> dict[str, Any]:
        with self._sessions() as session:
            row = self._row(session, id_or_code, principal)
            parent = session.get(ContentItem, row.parent_id) if row.parent_id else None
            return {**item_dict(row), "parent": parent.code if parent else None}

    def expiring(
        self, days: int, now: dt.datetime | None = None, principal: Principal | None = None
    ) -> list[dict[str, Any]]:
        """Approved items whose validity ends within ``days``, soonest first."""
        if not 1 <= days <= 3650:
            raise ValidationFailedError(
                f"days must be 1 to 3650, not {days}", field="days", fix="e.g. --days 30"
            )
        at = utc(now) if now else self._clock.now()
        brands = principal.brands if principal else frozenset()
        with self._sessions() as session:
            rows = repo.expiring(session, at, at + dt.timedelta(days=days), brands)
            return [item_dict(r, full=False) for r in rows]

    def history(self, id_or_code: str, principal: Principal | None = None) -> dict[str, Any]:
        """Every review of the item, each signature marked with whether it still binds to
        the current manifest."""
        with self._sessions() as session:
            row = self._row(session, id_or_code, principal)
            current = current_manifest(row)
            reviews = [review_dict(r, current) for r in repo.reviews_of(session, row.id)]
            return {
                "item": item_dict(row, full=False),
                "manifest_hash": current,
                "reviews": reviews,
            }

    def list(
        self,
        where: repo.ItemFilter,
        *,
        principal: Principal | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        """A page of items (without bodies), by code; ``next_offset`` when more follow."""
        if principal is not None and principal.brands:
            where = repo.ItemFilter(**{**_filter_dict(where), "brands": principal.brands})
        with self._sessions() as session:
            rows, total = repo.search(session, where, limit=limit, offset=offset)
            items = [item_dict(r, full=False) for r in rows]
        more = offset + len(items) < total
        return {
            "items": items,
            "total": total,
            "limit": limit,
            "offset": offset,
            "next_offset": offset + len(items) if more else None,
        }


# --- helpers -----------------------------------------------------------------------------------


_E = TypeVar("_E", Discipline, Decision)


def _enum(kind: type[_E], value: str, field: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise ValidationFailedError(
            f"{value[:40]!r} is not a {field}",
            field=field,
            fix="use one of: " + ", ".join(m.value for m in kind),
        ) from None


def _filter_dict(where: repo.ItemFilter) -> dict[str, Any]:
    return {name: getattr(where, name) for name in repo.ItemFilter.__dataclass_fields__}
