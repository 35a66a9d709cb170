"""What a condition may read about one HCP, loaded through the services (the one-HCP side of
segment evaluation; ``bulk`` is the other).

Attributes come from the HCP 360, consent from the HCP's ledger records decided by the guard's
own function (``consent.ledger.decide``), and events from the log: every event of every
identifier the HCP holds, back to the condition's longest window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from counterpoint.consent.ledger import decide
from counterpoint.consent.service import ConsentService
from counterpoint.event.log import EventLog, StoredEvent, TimelineQuery
from counterpoint.profile.service import HcpRef, ProfileService
from counterpoint.segment.conditions import (
    ATTRIBUTES,
    Condition,
    ConsentKey,
    EventFact,
    HcpFacts,
    consent_keys,
    max_window_days,
    window_start,
)

__all__ = ["PAGE", "SegmentFacts"]

PAGE = 10_000
"""Events read from the log per page (newest first)."""


def _fact(item: StoredEvent) -> EventFact:
    e = item.event
    return EventFact(
        occurred_at=e.occurred_at,
        channel=e.channel.value if e.channel is not None else None,
        action=e.action.value if e.action is not None else None,
        brand=e.brand,
        content_id=e.content_id,
        function=e.function.value if e.function is not None else None,
    )


class SegmentFacts:
    """Loads ``HcpFacts`` for one HCP: what ``conditions.evaluate`` needs, nothing more."""

    def __init__(self, profiles: ProfileService, consents: ConsentService, log: EventLog) -> None:
        self._profiles = profiles
        self._consents = consents
        self._log = log

    def facts_for(self, hcp_id: str, condition: Condition, now: dt.datetime) -> HcpFacts:
        """The facts ``condition`` reads about the HCP (following merges) at ``now``."""
        ref = self._profiles.resolve(hcp_id)
        return self.facts_of(ref, consent_keys(condition), max_window_days(condition), now)

    def facts_of(
        self, ref: HcpRef, keys: Iterable[ConsentKey], window_days: int, now: dt.datetime
    ) -> HcpFacts:
        """Facts of a resolved HCP: attributes, the ``keys`` its ledger allows now, and its
        events of the last ``window_days`` (none when 0)."""
        profile = self._profiles.get_hcp(ref.id)
        attributes = {name.value: profile.get(name.value) for name in ATTRIBUTES}
        return HcpFacts(
            hcp_id=ref.id,
            attributes=attributes,
            consent=self._consent(ref, keys, now),
            events=self._events(ref, window_days, now) if window_days else (),
        )

    def _consent(
        self, ref: HcpRef, keys: Iterable[ConsentKey], now: dt.datetime
    ) -> frozenset[ConsentKey]:
        wanted = list(keys)
        if not wanted or ref.market is None:  # no market: no consent (as the guard decides)
            return frozenset()
        records = self._consents.records(ref)
        return frozenset(
            key
            for key in wanted
            if decide(
                records,
                channel=key.channel,
                purpose=key.purpose,
                market=ref.market,
                brand=key.brand,
                content_type=None,
                at=now,
            ).allowed
        )

    def _events(self, ref: HcpRef, window_days: int, now: dt.datetime) -> tuple[EventFact, ...]:
        """Every event of the HCP's identifiers after the window's start, a page at a time."""
        if not ref.identifiers:
            return ()
        since = window_start(now, window_days)
        found: list[EventFact] = []
        before: tuple[dt.datetime, int] | None = None
        while True:
            page = self._log.timeline(
                TimelineQuery(ref.identifiers, before=before, limit=PAGE, since=since)
            )
            found.extend(_fact(item) for item in page)
            if len(page) < PAGE:
                return tuple(found)
            last = page[-1]
            before = (last.event.occurred_at, last.seq)
