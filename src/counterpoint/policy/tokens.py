"""Users and their API tokens: a token is shown once, hashed at rest, expiring and revocable.

Authentication turns a bearer token into a ``Principal`` (the user's role and scopes); a
disabled user's tokens stop working at once. Every change is written to the audit trail.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.errors import (
    ConflictError,
    NotFoundError,
    UnauthorizedError,
    ValidationFailedError,
)
from counterpoint.kit.clock import Clock
from counterpoint.kit.ids import new_id
from counterpoint.policy.access import Principal, Role
from counterpoint.policy.audit import Actor, AuditTrail, require_reason
from counterpoint.policy.models import ApiToken, User
from counterpoint.profile.validation import country_codes, normalise_market

__all__ = [
    "ApiTokens",
    "TokenInfo",
    "Users",
    "hash_password",
    "password_matches",
    "user_dict",
]

_NAME = re.compile(r"^[\w.@\- ]{1,200}$")
_SCOPE = re.compile(r"^[\w.\-]{1,64}$")
_MAX_DAYS = 3650
_PASSWORD_MIN = 12
_PASSWORD_MAX = 1024
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # 16 MiB, tens of milliseconds per try
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "="


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    name: str
    user_id: str
    expires_at: dt.datetime | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    """A self-describing scrypt hash: ``scrypt$n$r$p$salt$key`` (salt and key in base64)."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    params = f"{_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}"
    return f"scrypt${params}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def password_matches(stored: str, password: str) -> bool:
    """Whether ``password`` hashes to ``stored`` (compared in constant time)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key, validate=True)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def user_dict(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "name": user.name,
        "role": user.role,
        "markets": list(user.markets),
        "brands": list(user.brands),
        "territories": list(user.territories),
        "created_at": user.created_at,
        "disabled_at": user.disabled_at,
    }


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValidationFailedError(
            f"unknown role {value!r}",
            field="role",
            fix="use one of: " + ", ".join(r.value for r in Role),
        ) from None


def _name(value: str) -> str:
    text = value.strip()
    if not _NAME.fullmatch(text):
        raise ValidationFailedError(
            f"the user name {value[:60]!r} is not allowed",
            field="name",
            fix="use 1-200 letters, digits, spaces and . @ _ -",
        )
    return text


def _scopes(values: Iterable[str], field: str) -> list[str]:
    out: list[str] = []
    for raw in values:
        text = raw.strip()
        if field == "markets":
            code = normalise_market(text)
            if code is None or code not in country_codes():
                raise ValidationFailedError(
                    f"{text[:20]!r} is not an ISO 3166-1 alpha-2 country code",
                    field=field,
                    fix="write two-letter codes such as DE, US, FR",
                )
            text = code
        elif not _SCOPE.fullmatch(text):
            raise ValidationFailedError(
                f"{text[:40]!r} is not a valid {field[:-1]} code",
                field=field,
                fix="use 1-64 letters, digits, . _ -",
            )
        if text not in out:
            out.append(text)
    return out


class Users:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, audit: AuditTrail) -> None:
        self._sessions = sessions
        self._clock = clock
        self._audit = audit

    def create(
        self,
        name: str,
        role: str,
        actor: Actor,
        *,
        markets: Iterable[str] = (),
        brands: Iterable[str] = (),
        territories: Iterable[str] = (),
    ) -> dict[str, object]:
        user = User(
            id=new_id("usr"),
            name=_name(name),
            role=_role(role).value,
            markets=_scopes(markets, "markets"),
            brands=_scopes(brands, "brands"),
            territories=_scopes(territories, "territories"),
            created_at=self._clock.now(),
            disabled_at=None,
        )
        with self._sessions.begin() as session:
            if session.scalars(select(User).where(User.name == user.name)).first():
                raise ConflictError(
                    f"a user named {user.name!r} exists",
                    field="name",
                    fix="choose another name, or create a token for the existing user",
                )
            session.add(user)
            self._audit.record(
                session, actor, "user.create", "user", user.id, after=user_dict(user)
            )
        return user_dict(user)

    def list(self) -> list[dict[str, object]]:
        with self._sessions() as session:
            return [user_dict(u) for u in session.scalars(select(User).order_by(User.name))]

    def get(self, session: Session, name_or_id: str) -> User:
        user = (
            session.get(User, name_or_id)
            or session.scalars(select(User).where(User.name == name_or_id)).first()
        )
        if user is None:
            raise NotFoundError(
                f"no user {name_or_id!r}",
                field="user",
                fix="create one: counterpoint users create NAME --role ROLE",
            )
        return user

    def principal(self, name_or_id: str) -> Principal:
        """The user as a caller (the CLI's ``--as USER``); a disabled user is refused."""
        with self._sessions() as session:
            user = self.get(session, name_or_id)
        if user.disabled_at is not None:
            raise UnauthorizedError(
                f"the user {user.name!r} is disabled", field="user", fix="ask an administrator"
            )
        return _principal(user)

    def set_password(self, name_or_id: str, password: str, actor: Actor) -> dict[str, object]:
        """Set the password a user re-enters to sign (e-signatures). Only a salted scrypt
        hash is stored; the audit record says that it changed, never what it is."""
        if not _PASSWORD_MIN <= len(password) <= _PASSWORD_MAX or not password.strip():
            raise ValidationFailedError(
                f"a password has {_PASSWORD_MIN} to {_PASSWORD_MAX} characters",
                field="password",
                fix=f"choose a password of at least {_PASSWORD_MIN} characters "
                "(a few unrelated words are easy to type and hard to guess)",
            )
        hashed = hash_password(password)
        with self._sessions.begin() as session:
            user = self.get(session, name_or_id)
            if user.disabled_at is not None:
                raise ConflictError(
                    f"the user {user.name!r} is disabled",
                    field="user",
                    fix="passwords can be set only for enabled users",
                )
            had = user.password_hash is not None
            user.password_hash = hashed
            self._audit.record(
                session,
                actor,
                "user.set_password",
                "user",
                user.id,
                before={"password_set": had},
                after={"password_set": True},
            )
            return user_dict(user)

    def verify_password(self, user_id: str, password: str, *, actor: Actor | None = None) -> bool:
        """Re-authentication before a signature: the user's password, checked in constant
        time. A disabled user, or one without a password, fails. Every failure is audited
        as ``signature.reauth_failed`` (in its own transaction: it stays recorded)."""
        with self._sessions() as session:
            user = session.get(User, user_id)
        stored = user.password_hash if user is not None else None
        matches = password_matches(stored or _DUMMY_HASH, password) and stored is not None
        if user is not None and matches and user.disabled_at is None:
            return True
        why = (
            "unknown user"
            if user is None
            else "user disabled"
            if user.disabled_at is not None
            else "no password set"
            if stored is None
            else "wrong password"
        )
        who = actor or Actor(
            user.name if user else user_id, user.role if user else None, "reauthentication"
        )
        with self._sessions.begin() as session:
            self._audit.record(
                session, who, "signature.reauth_failed", "user", user_id, after={"reason": why}
            )
        return False

    def disable(self, name_or_id: str, actor: Actor, reason: str) -> dict[str, object]:
        reason = require_reason(reason, "disabling a user")
        with self._sessions.begin() as session:
            user = self.get(session, name_or_id)
            before = user_dict(user)
            if user.disabled_at is None:
                user.disabled_at = self._clock.now()
            self._audit.record(
                session,
                actor,
                "user.disable",
                "user",
                user.id,
                before=before,
                after=user_dict(user),
                reason=reason,
            )
            return user_dict(user)


class ApiTokens:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, audit: AuditTrail) -> None:
        self._sessions = sessions
        self._clock = clock
        self._audit = audit
        self._users = Users(sessions, clock, audit)

    def create(self, user: str, actor: Actor, *, days: int | None = 90) -> tuple[TokenInfo, str]:
        """A new token for ``user`` (name or id). The secret is returned once, never stored."""
        if days is not None and not 1 <= days <= _MAX_DAYS:
            raise ValidationFailedError(
                f"a token lives 1 to {_MAX_DAYS} days, not {days}",
                field="days",
                fix=f"choose a number of days between 1 and {_MAX_DAYS}",
            )
        secret = "cpt_" + secrets.token_urlsafe(32)
        now = self._clock.now()
        expires = now + dt.timedelta(days=days) if days else None
        with self._sessions.begin() as session:
            owner = self._users.get(session, user)
            if owner.disabled_at is not None:
                raise ConflictError(
                    f"the user {owner.name!r} is disabled",
                    field="user",
                    fix="tokens can be issued only to enabled users",
                )
            row = ApiToken(
                id=new_id("tok"),
                name=owner.name,
                user_id=owner.id,
                token_hash=_hash(secret),
                created_at=now,
                expires_at=expires,
                revoked_at=None,
            )
            session.add(row)
            self._audit.record(
                session,
                actor,
                "token.create",
                "token",
                row.id,
                after={"user_id": owner.id, "expires_at": expires},
            )
        return TokenInfo(row.id, owner.name, owner.id, expires), secret

    def revoke(self, token_id: str, actor: Actor) -> bool:
        with self._sessions.begin() as session:
            row = session.get(ApiToken, token_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = self._clock.now()
            self._audit.record(
                session,
                actor,
                "token.revoke",
                "token",
                row.id,
                after={"revoked_at": row.revoked_at},
            )
            return True

    def authenticate(self, authorization: str | None) -> Principal:
        scheme, _, secret = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise UnauthorizedError(
                "a bearer token is required",
                field="Authorization",
                fix="send Authorization: Bearer <token> (counterpoint tokens create USER)",
            )
        with self._sessions() as session:
            found = session.execute(
                select(ApiToken, User)
                .join(User, User.id == ApiToken.user_id)
                .where(ApiToken.token_hash == _hash(secret.strip()))
            ).first()
        now = self._clock.now()
        if found is None:
            raise UnauthorizedError(
                "unknown token",
                field="Authorization",
                fix="create a new token: counterpoint tokens create USER",
            )
        token, user = found
        if token.revoked_at is not None or (token.expires_at and token.expires_at <= now):
            raise UnauthorizedError(
                "expired or revoked token",
                field="Authorization",
                fix="create a new token: counterpoint tokens create USER",
            )
        if user.disabled_at is not None:
            raise UnauthorizedError(
                "the token's user is disabled",
                field="Authorization",
                fix="ask an administrator",
            )
        return _principal(user)


def _principal(user: User) -> Principal:
    return Principal(
        user_id=user.id,
        name=user.name,
        role=Role(user.role),
        markets=frozenset(user.markets),
        brands=frozenset(user.brands),
        territories=frozenset(user.territories),
    )
