"""Write keys: what a source presents to send events. Stored as SHA-256 hashes only."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.errors import UnauthorizedError
from counterpoint.event.models import WriteKey
from counterpoint.kit.clock import Clock
from counterpoint.kit.ids import new_id

__all__ = ["KeyInfo", "WriteKeyUnknownError", "WriteKeys", "hash_key"]

_CACHE_SECONDS = 30.0


class WriteKeyUnknownError(UnauthorizedError):
    code = "unknown_write_key"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    name: str
    trusted: bool


class WriteKeys:
    """Creates write keys and checks presented ones (cached: a revocation applies within 30 s)."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}
        self._lock = threading.Lock()

    def create(
        self,
        name: str,
        *,
        trusted: bool = False,
        on_commit: Callable[[Session, KeyInfo], None] | None = None,
    ) -> tuple[KeyInfo, str]:
        """A new key; the secret is returned once and never stored. ``on_commit`` adds to the
        same transaction (the audit record)."""
        secret = "cpk_" + secrets.token_urlsafe(24)
        row = WriteKey(
            id=new_id("wk"),
            name=name,
            key_hash=hash_key(secret),
            trusted=trusted,
            created_at=self._clock.now(),
            revoked_at=None,
        )
        info = KeyInfo(row.id, row.name, row.trusted)
        with self._sessions.begin() as session:
            session.add(row)
            if on_commit is not None:
                on_commit(session, info)
        return info, secret

    def revoke(
        self, key_id: str, *, on_commit: Callable[[Session, KeyInfo], None] | None = None
    ) -> bool:
        with self._sessions.begin() as session:
            row = session.get(WriteKey, key_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = self._clock.now()
            if on_commit is not None:
                on_commit(session, KeyInfo(row.id, row.name, row.trusted))
        with self._lock:
            self._cache.clear()
        return True

    def authenticate(self, secret: str | None) -> KeyInfo:
        if not secret:
            raise UnauthorizedError(
                "no write key given",
                field="Authorization",
                fix="send the write key as the HTTP Basic user name (empty password)",
            )
        digest = hash_key(secret)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is None or hit[0] < now:
            info = self._lookup(digest)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now + _CACHE_SECONDS, info)
        else:
            info = hit[1]
        if info is None:
            raise WriteKeyUnknownError(
                "unknown or revoked write key",
                field="Authorization",
                fix="create one with `counterpoint keys create NAME`",
            )
        return info

    def _lookup(self, digest: str) -> KeyInfo | None:
        with self._sessions() as session:
            row = session.scalars(select(WriteKey).where(WriteKey.key_hash == digest)).first()
        if row is None or row.revoked_at is not None:
            return None
        return KeyInfo(row.id, row.name, row.trusted)
