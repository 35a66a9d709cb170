"""Administration: users, API tokens, write keys, and the audit trail (read, verify, export)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from counterpoint.api.deps import Allow, Services, actor_of
from counterpoint.errors import NotFoundError
from counterpoint.policy.access import Principal, Resource, Role, Verb
from counterpoint.policy.audit import record_dict

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["administration"])

UserReader = Annotated[Principal, Depends(Allow(Resource.USER, Verb.READ))]
UserWriter = Annotated[Principal, Depends(Allow(Resource.USER, Verb.WRITE))]
TokenWriter = Annotated[Principal, Depends(Allow(Resource.TOKEN, Verb.WRITE))]
KeyWriter = Annotated[Principal, Depends(Allow(Resource.WRITE_KEY, Verb.WRITE))]
AuditReader = Annotated[Principal, Depends(Allow(Resource.AUDIT, Verb.READ))]
AuditExporter = Annotated[Principal, Depends(Allow(Resource.AUDIT, Verb.EXPORT))]


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: Role
    markets: list[str] = Field(default_factory=list, max_length=300)
    brands: list[str] = Field(default_factory=list, max_length=300)
    territories: list[str] = Field(default_factory=list, max_length=1000)


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=2000)


class NewPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: SecretStr = Field(max_length=1024, description="re-entered to sign approvals")


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(90, ge=1, le=3650)


class NewWriteKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    trusted: bool = Field(
        False, description="Server-side source: may send consent grants as events."
    )


@router.get("/users")
def list_users(container: Services, _: UserReader) -> dict[str, Any]:
    """Every user with role and scopes."""
    return {"items": container.users.list()}


@router.post("/users", status_code=201)
def create_user(
    body: NewUser, request: Request, container: Services, caller: UserWriter
) -> dict[str, Any]:
    """A user with one role; empty markets/brands mean all; field roles need territories."""
    return container.users.create(
        body.name,
        body.role.value,
        actor_of(request, caller),
        markets=body.markets,
        brands=body.brands,
        territories=body.territories,
    )


@router.post("/users/{user}/disable")
def disable_user(
    user: str, body: Reason, request: Request, container: Services, caller: UserWriter
) -> dict[str, Any]:
    """Disable a user; their tokens stop working at once."""
    return container.users.disable(user, actor_of(request, caller), body.reason)


@router.put("/users/{user}/password")
def set_password(
    user: str, body: NewPassword, request: Request, container: Services, caller: UserWriter
) -> dict[str, Any]:
    """Set the password the user re-enters to sign (e-signatures); only a hash is kept."""
    container.users.set_password(user, body.password.get_secret_value(), actor_of(request, caller))
    return {"user": user, "password_set": True}


@router.post("/users/{user}/tokens", status_code=201)
def create_token(
    user: str, body: NewToken, request: Request, container: Services, caller: TokenWriter
) -> dict[str, Any]:
    """A new API token for the user; the secret is in this response only."""
    info, secret = container.tokens.create(user, actor_of(request, caller), days=body.days)
    return {"id": info.id, "user": info.name, "expires_at": info.expires_at, "token": secret}


@router.delete("/tokens/{token_id}")
def revoke_token(
    token_id: str, request: Request, container: Services, caller: TokenWriter
) -> dict[str, Any]:
    if not container.tokens.revoke(token_id, actor_of(request, caller)):
        raise NotFoundError(
            f"no active token {token_id!r}", field="token_id", fix="give a token's id"
        )
    return {"revoked": token_id}


@router.post("/write-keys", status_code=201)
def create_write_key(
    body: NewWriteKey, request: Request, container: Services, caller: KeyWriter
) -> dict[str, Any]:
    """A write key for an event source; the secret is in this response only."""
    info, secret = container.write_keys.create(
        body.name,
        trusted=body.trusted,
        on_commit=container.audit.key_change(actor_of(request, caller), "write_key.create"),
    )
    return {"id": info.id, "name": body.name, "trusted": body.trusted, "write_key": secret}


def _day(value: dt.date | None) -> dt.datetime | None:
    return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC) if value else None


@router.get("/audit")
def list_audit(
    container: Services,
    _: AuditReader,
    object_id: str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Audit records in chain order (oldest first) with their hashes."""
    items: list[dict[str, Any]] = []
    for row in container.audit.iter_records(
        object_id=object_id, since=_day(since), until=_day(until)
    ):
        items.append(record_dict(row))
        if len(items) >= limit:
            break
    return {"items": items}


@router.get("/audit/verify")
def verify_audit(container: Services, _: AuditReader) -> dict[str, Any]:
    """Check the hash chain: intact, or where it was tampered with."""
    count, problems = container.audit.verify()
    return {
        "intact": not problems,
        "records": count,
        "problems": [{"seq": p.seq, "problem": p.problem} for p in problems],
    }


@router.get("/audit/export")
def export_audit(
    container: Services,
    _: AuditExporter,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> StreamingResponse:
    """Every record (NDJSON, one per line, with hashes) for inspectors."""

    def lines() -> Iterator[str]:
        for row in container.audit.iter_records(since=_day(since), until=_day(until)):
            yield json.dumps(record_dict(row), ensure_ascii=False) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")
