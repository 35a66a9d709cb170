"""``ValidationContext`` over the running system: content from the content catalog,
segments and consent coverage from the segment service.

``journey.validation`` asks three questions of the system (see ``ValidationContext``); this
module answers them from the live library and audience, for ``counterpoint journey
validate|publish`` and the API. Tests of the checks themselves pass plain objects instead.

Consent coverage is measured on the audience the entry selects now: the stored segment's
condition or the entry's own condition, evaluated for every HCP in bulk (``segment.bulk``),
then the consent ledger's decision for each contact channel, the journey's purpose and
brand, in each HCP's own market: the guard's decision, HCP by HCP.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from counterpoint.consent.ledger import Purpose, consent_channel
from counterpoint.content.catalog import CatalogSnapshot, ContentCatalog
from counterpoint.content.eligibility import ContentRef
from counterpoint.errors import NotFoundError
from counterpoint.event.canonical import Channel
from counterpoint.journey.definition import EntryTrigger
from counterpoint.kit.clock import Clock
from counterpoint.segment.conditions import Condition, ConsentKey
from counterpoint.segment.service import SegmentService

__all__ = ["ContentIndex", "SystemContext"]


class ContentIndex:
    """The assets of one catalog snapshot by code, with each asset's local variants."""

    def __init__(self, snapshot: CatalogSnapshot) -> None:
        self.generation = snapshot.generation
        self._by_code: dict[str, ContentRef] = {}
        self._children: defaultdict[str, list[ContentRef]] = defaultdict(list)
        for ref in snapshot.by_id.values():
            self._by_code[ref.code] = ref
            if ref.parent_id is not None:
                self._children[ref.parent_id].append(ref)

    def family(self, code: str) -> list[ContentRef]:
        """The asset with ``code`` and its local variants, in any state (variants by code)."""
        ref = self._by_code.get(code)
        if ref is None:
            return []
        return [ref, *sorted(self._children.get(ref.id, ()), key=lambda r: r.code)]


class SystemContext:
    """Answers validation's questions from the content catalog and the segment service."""

    def __init__(self, catalog: ContentCatalog, segments: SegmentService, clock: Clock) -> None:
        self._catalog = catalog
        self._segments = segments
        self._clock = clock
        self._index: ContentIndex | None = None

    def content(self, code: str) -> Sequence[ContentRef]:
        snapshot = self._catalog.refresh_if_stale()
        if self._index is None or self._index.generation != snapshot.generation:
            self._index = ContentIndex(snapshot)
        return self._index.family(code)

    def segment_exists(self, name: str) -> bool:
        try:
            self._segments.get(name)
        except NotFoundError:
            return False
        return True

    def _audience(self, entry: EntryTrigger) -> Condition | None:
        if entry.segment is not None:
            return self._segments.condition_of(entry.segment)
        return entry.condition

    def consent_coverage(
        self, entry: EntryTrigger, channels: Sequence[Channel], purpose: Purpose, brand: str
    ) -> Mapping[Channel, float] | None:
        """The share of the entry's audience now whose consent allows each channel; None for
        an event-triggered entry (no audience in advance) and for an empty audience."""
        condition = self._audience(entry)
        if condition is None:
            return None
        now = self._clock.now()
        members = self._segments.bulk.evaluate(condition, now)
        if members.num_rows == 0:
            return None
        markets = dict(
            zip(
                members.column("hcp_id").to_pylist(),
                members.column("market").to_pylist(),
                strict=True,
            )
        )
        wanted = {c: consent_channel(c) for c in channels}
        keys = sorted({ConsentKey(cc, purpose, brand) for cc in wanted.values() if cc is not None})
        allowed = self._segments.bulk.population.consent(keys, markets, now)
        shares: dict[Channel, float] = {}
        for channel, cc in wanted.items():
            if cc is None:  # no consent needed (the HCP came to us)
                shares[channel] = 1.0
                continue
            i = keys.index(ConsentKey(cc, purpose, brand))
            shares[channel] = sum(1 for held in allowed.values() if i in held) / len(markets)
        return shares
