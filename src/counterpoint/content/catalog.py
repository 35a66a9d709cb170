"""An in-memory index of the content library's assets, kept exact by the generation counter.

The guard checks the content of every send, and the eligible-content query filters thousands
of items per call: neither can afford to read the library each time. ``ContentCatalog`` keeps
the light metadata of every asset (``ContentRef``, never bodies), keyed by id and by (market,
channel). Before each use it reads ``content_generation`` (one tiny query); the library bumps
that counter in every transaction that changes what may be sent (approval, withdrawal, edits),
so the index is reloaded exactly when it may be stale. Expiry needs no bump: validity windows
are compared with the time of each check.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.content.eligibility import (
    APPROVED,
    ContentRef,
    content_refusals,
    eligible,
    language_of,
    sort_key,
)
from counterpoint.content.models import ContentGeneration, ContentItem
from counterpoint.event.canonical import Channel
from counterpoint.kit.clock import Clock
from counterpoint.policy.access import Principal, Role
from counterpoint.policy.guard import Candidate, HcpFacts, Refusal
from counterpoint.profile.service import HcpRef

__all__ = ["CatalogSnapshot", "ContentCatalog", "acting_role", "build_snapshot"]

_ITEM = ContentItem.__table__
_GENERATION = select(func.max(ContentGeneration.value))
_ASSETS = select(
    _ITEM.c.id,
    _ITEM.c.code,
    _ITEM.c.kind,
    _ITEM.c.asset_type,
    _ITEM.c.title,
    _ITEM.c.brand,
    _ITEM.c.function,
    _ITEM.c.languages,
    _ITEM.c.approval_channels,
    _ITEM.c.approval_markets,
    _ITEM.c.persona,
    _ITEM.c.parent_id,
    _ITEM.c.state,
    _ITEM.c.job_code,
    _ITEM.c.valid_from,
    _ITEM.c.valid_until,
    _ITEM.c.minutes,
    _ITEM.c.journey_stage,
    _ITEM.c.approved_at,
).where(_ITEM.c.kind == "asset")

Key = tuple[str, str]  # (market, channel)


def acting_role(principal: Principal | None, *, automated: bool = False) -> Role | None:
    """The role a contact is initiated as: the caller's, or None for automated orchestration
    (no caller, or a caller acting as the system)."""
    return None if principal is None or automated else principal.role


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    """The index at one generation; never changed once built (readers share it freely)."""

    generation: int
    by_id: dict[str, ContentRef] = field(default_factory=dict)
    approved: dict[Key, tuple[ContentRef, ...]] = field(default_factory=dict)
    """Assets in state approved, by every (approval market, approval channel), newest first."""
    offered: dict[Key, tuple[ContentRef, ...]] = field(default_factory=dict)
    """Assets in any state whose approval terms name the (market, channel)."""


def _ref(r: Any) -> ContentRef:
    """A row of ``_ASSETS`` as a ``ContentRef`` (languages and markets normalised)."""
    languages = (language_of(code) for code in (r.languages or []))
    return ContentRef(
        id=r.id,
        code=r.code,
        kind=r.kind,
        asset_type=r.asset_type,
        title=r.title,
        brand=r.brand,
        function=r.function,
        languages=frozenset(code for code in languages if code),
        channels=frozenset(r.approval_channels or []),
        markets=frozenset(m.upper() for m in r.approval_markets or []),
        persona=r.persona,
        parent_id=r.parent_id,
        state=r.state,
        job_code=r.job_code,
        valid_from=r.valid_from,
        valid_until=r.valid_until,
        minutes=float(r.minutes),
        journey_stage=r.journey_stage,
        approved_at=r.approved_at,
    )


def build_snapshot(generation: int, refs: Iterable[ContentRef]) -> CatalogSnapshot:
    by_id: dict[str, ContentRef] = {}
    approved: defaultdict[Key, list[ContentRef]] = defaultdict(list)
    offered: defaultdict[Key, list[ContentRef]] = defaultdict(list)
    for ref in refs:
        by_id[ref.id] = ref
        for market in ref.markets:
            for channel in ref.channels:
                offered[(market, channel)].append(ref)
                if ref.state == APPROVED:
                    approved[(market, channel)].append(ref)
    return CatalogSnapshot(
        generation,
        by_id,
        {k: tuple(sorted(v, key=sort_key)) for k, v in approved.items()},
        {k: tuple(sorted(v, key=sort_key)) for k, v in offered.items()},
    )


class ContentCatalog:
    """The assets' metadata in memory, reloaded when the library's generation moves.

    Thread-safe: a reload builds a new snapshot under a lock and swaps it in; readers keep
    using the snapshot they took."""

    def __init__(self, source: Engine | sessionmaker[Session], clock: Clock) -> None:
        self._engine: Engine = source if isinstance(source, Engine) else source.kw["bind"]
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: CatalogSnapshot | None = None
        self.loads = 0
        """How many times the index was (re)loaded: a cheap staleness probe for tests."""
        self._pinned = threading.local()

    # --- freshness ----------------------------------------------------------------------
    def refresh_if_stale(self, connection: Connection | None = None) -> CatalogSnapshot:
        """The current snapshot: one query for the generation, a reload only if it moved."""
        if connection is None:
            with self._engine.connect() as own:
                return self._refresh(own)
        return self._refresh(connection)

    def _refresh(self, connection: Connection) -> CatalogSnapshot:
        generation = int(connection.execute(_GENERATION).scalar() or 0)
        current = self._snapshot
        if current is not None and current.generation == generation:
            return current
        with self._lock:
            current = self._snapshot
            if current is not None and current.generation == generation:
                return current
            # The rows are read after the generation: they are at least that new. If the
            # library moved meanwhile, the next call sees a newer generation and reloads.
            rows = connection.execute(_ASSETS).all()
            fresh = build_snapshot(generation, (_ref(row) for row in rows))
            self._snapshot = fresh
            self.loads += 1
        return fresh

    @contextmanager
    def pinned(self) -> Iterator[CatalogSnapshot]:
        """One fresh look for a whole batch of checks (``GuardService.check_many``): checks in
        this thread inside the block read the snapshot taken on entry, not one query each."""
        snapshot = self.refresh_if_stale()
        previous = getattr(self._pinned, "snapshot", None)
        self._pinned.snapshot = snapshot
        try:
            yield snapshot
        finally:
            self._pinned.snapshot = previous

    def _current(self) -> CatalogSnapshot:
        pinned: CatalogSnapshot | None = getattr(self._pinned, "snapshot", None)
        return pinned if pinned is not None else self.refresh_if_stale()

    # --- lookups ------------------------------------------------------------------------
    def find(self, content_id: str) -> ContentRef | None:
        return self.refresh_if_stale().by_id.get(content_id)

    def offered(self, market: str | None, channel: Channel) -> Sequence[ContentRef]:
        """Assets (any state) whose approval terms name ``market`` and ``channel``."""
        if market is None:
            return ()
        return self.refresh_if_stale().offered.get((market, channel.value), ())

    # --- the guard's content check ------------------------------------------------------
    def check(self, candidate: Candidate, facts: HcpFacts) -> Sequence[Refusal]:
        """``guard.ContentCheck``: nothing to judge without a content id; otherwise every
        content reason, read against the library as it is now."""
        if candidate.content_id is None:
            return ()
        ref = self._current().by_id.get(candidate.content_id)
        return content_refusals(ref, candidate, facts)

    # --- eligible content ---------------------------------------------------------------
    def eligible_for(
        self,
        hcp: HcpRef,
        channel: Channel,
        principal: Principal | None,
        at: dt.datetime | None = None,
        *,
        automated: bool = False,
    ) -> list[ContentRef]:
        """Approved assets that may go to ``hcp`` on ``channel`` at ``at`` as far as content
        goes: its market and language, the date, the caller's brands and the acting role's
        purposes (``automated``: the caller acts as the system). HCP-level rules (consent,
        caps, quiet hours) are the guard's: see ``EligibleContent``."""
        if hcp.market is None:
            return []
        snapshot = self.refresh_if_stale()
        return eligible(
            snapshot.approved.get((hcp.market, channel.value), ()),
            market=hcp.market,
            language=hcp.language,
            channel=channel,
            at=at or self._clock.now(),
            brands=principal.brands if principal is not None else (),
            role=acting_role(principal, automated=automated),
        )
