"""API tokens: created once (the secret is shown once), hashed at rest, expiring, revocable."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.errors import UnauthorizedError
from counterpoint.kit.clock import Clock
from counterpoint.kit.ids import new_id
from counterpoint.policy.models import ApiToken

__all__ = ["ApiTokens", "TokenInfo"]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    name: str
    expires_at: dt.datetime | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiTokens:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def create(self, name: str, *, days: int | None = 90) -> tuple[TokenInfo, str]:
        secret = "cpt_" + secrets.token_urlsafe(32)
        now = self._clock.now()
        expires = now + dt.timedelta(days=days) if days else None
        row = ApiToken(
            id=new_id("tok"),
            name=name,
            token_hash=_hash(secret),
            created_at=now,
            expires_at=expires,
            revoked_at=None,
        )
        with self._sessions.begin() as session:
            session.add(row)
        return TokenInfo(row.id, name, expires), secret

    def revoke(self, token_id: str) -> bool:
        with self._sessions.begin() as session:
            row = session.get(ApiToken, token_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = self._clock.now()
            return True

    def authenticate(self, authorization: str | None) -> TokenInfo:
        scheme, _, secret = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise UnauthorizedError(
                "a bearer token is required",
                field="Authorization",
                fix="send Authorization: Bearer <token> (counterpoint tokens create NAME)",
            )
        with self._sessions() as session:
            row = session.scalars(
                select(ApiToken).where(ApiToken.token_hash == _hash(secret.strip()))
            ).first()
        now = self._clock.now()
        if row is None or row.revoked_at is not None or (row.expires_at and row.expires_at <= now):
            raise UnauthorizedError(
                "unknown, expired or revoked token",
                field="Authorization",
                fix="create a new token: counterpoint tokens create NAME",
            )
        return TokenInfo(row.id, row.name, row.expires_at)
