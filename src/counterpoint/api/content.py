"""The content library over HTTP: assets and fragments, submission, MLR reviews with
electronic signatures, withdrawal, and upcoming expiries. See docs/content.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr

from counterpoint.api.deps import Allow, Services, actor_of
from counterpoint.content.repository import ItemFilter
from counterpoint.content.schemas import AssetType, parse_document
from counterpoint.content.workflow import ApprovalTerms, ContentState, Decision, Discipline
from counterpoint.event.canonical import Channel
from counterpoint.policy.access import Principal, Resource, Verb

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/content", tags=["content"])

Reader = Annotated[Principal, Depends(Allow(Resource.CONTENT, Verb.READ))]
Writer = Annotated[Principal, Depends(Allow(Resource.CONTENT, Verb.WRITE))]
ReviewReader = Annotated[Principal, Depends(Allow(Resource.CONTENT_REVIEW, Verb.READ))]
ReviewWriter = Annotated[Principal, Depends(Allow(Resource.CONTENT_REVIEW, Verb.WRITE))]

_DOCUMENT = Body(
    description="A content document: an asset (kind: asset, the default) or a fragment "
    "(kind: fragment); the format is in docs/content.md.",
    examples=[
        {
            "kind": "fragment",
            "code": "footer-de",
            "title": "Footer (DE)",
            "function": "promotional",
            "markets": ["DE"],
            "languages": ["de"],
            "body": {"text": "Abmelden: {{ links.unsubscribe }}"},
        }
    ],
)
Document = Annotated[dict[str, Any], _DOCUMENT]


class SubmitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_code: str = Field(min_length=1, max_length=100, description="the approval (job) code")
    markets: list[str] = Field(min_length=1, max_length=250, description="within the item's")
    channels: list[str] = Field(
        default_factory=list, max_length=len(Channel), description="within the item's"
    )
    valid_from: AwareDatetime
    valid_until: AwareDatetime


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    discipline: Discipline
    decision: Decision
    comments: str | None = Field(None, max_length=5000, description="required unless approved")
    password: SecretStr | None = Field(
        None, max_length=1024, description="approvals: the signer's password (never stored)"
    )
    meaning: str | None = Field(
        None, max_length=200, description='approvals: exactly "approved as <discipline> reviewer"'
    )
    manifest_hash: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="the manifest_hash of the item as you reviewed it"
    )


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=2000)


@router.post("", status_code=201)
def create(
    document: Document, request: Request, container: Services, caller: Writer
) -> dict[str, Any]:
    """Create an asset or a fragment in draft; the caller is its author."""
    parsed = parse_document(document)
    return container.content.create(parsed, caller, actor_of(request, caller))


@router.get("")
def list_items(
    container: Services,
    caller: Reader,
    kind: Annotated[str | None, Query(pattern="^(asset|fragment)$")] = None,
    asset_type: AssetType | None = None,
    brand: Annotated[str | None, Query(max_length=100)] = None,
    state: ContentState | None = None,
    market: Annotated[str | None, Query(pattern="^[A-Za-z]{2}$")] = None,
    channel: Channel | None = None,
    q: Annotated[str | None, Query(max_length=100, description="in title or code")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Items by code (without bodies), filtered, a page at a time (``next_offset``)."""
    where = ItemFilter(
        kind=kind,
        asset_type=asset_type.value if asset_type else None,
        brand=brand,
        state=state.value if state else None,
        market=market.upper() if market else None,
        channel=channel.value if channel else None,
        text=q,
    )
    return container.content.list(where, principal=caller, limit=limit, offset=offset)


@router.get("/expiring")
def expiring(
    container: Services, caller: Reader, days: Annotated[int, Query(ge=1, le=3650)] = 30
) -> dict[str, Any]:
    """Approved items whose validity ends within ``days``, soonest first."""
    return {"days": days, "items": container.content.expiring(days, principal=caller)}


@router.get("/{item_id}")
def get(item_id: str, container: Services, caller: Reader) -> dict[str, Any]:
    """One item (by id or code) with its body, state, hashes and approval terms."""
    return container.content.get(item_id, caller)


@router.put("/{item_id}")
def edit(
    item_id: str, document: Document, request: Request, container: Services, caller: Writer
) -> dict[str, Any]:
    """Edit an item: a new version in draft; items built from it go back to review."""
    parsed = parse_document(document)
    return container.content.update(item_id, parsed, caller, actor_of(request, caller))


@router.post("/{item_id}/submit")
def submit(
    item_id: str, body: SubmitIn, request: Request, container: Services, caller: Writer
) -> dict[str, Any]:
    """Submit for MLR review with the approval terms the reviewers will sign."""
    terms = ApprovalTerms(
        body.job_code,
        tuple(body.markets),
        tuple(body.channels),
        body.valid_from,
        body.valid_until,
    )
    return container.content.submit(item_id, terms, caller, actor_of(request, caller))


@router.post("/{item_id}/reviews", status_code=201)
def review(
    item_id: str, body: ReviewIn, request: Request, container: Services, caller: ReviewWriter
) -> dict[str, Any]:
    """One discipline's review; an approval is an e-signature (password, meaning, and the
    manifest hash of the content reviewed)."""
    return container.content.review(
        item_id,
        body.discipline.value,
        body.decision.value,
        body.comments,
        caller,
        actor_of(request, caller),
        password=body.password.get_secret_value() if body.password else None,
        meaning=body.meaning,
        manifest_hash=body.manifest_hash,
    )


@router.get("/{item_id}/reviews")
def reviews(item_id: str, container: Services, caller: ReviewReader) -> dict[str, Any]:
    """Every review and signature, each with whether it binds to the current content."""
    return container.content.history(item_id, caller)


@router.post("/{item_id}/withdraw")
def withdraw(
    item_id: str, body: WithdrawIn, request: Request, container: Services, caller: ReviewWriter
) -> dict[str, Any]:
    """Withdraw approved content at once: the guard refuses every send not yet delivered."""
    return container.content.withdraw(item_id, body.reason, caller, actor_of(request, caller))
