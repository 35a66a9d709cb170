"""Segments kept current as interactions arrive, and as time passes.

``SegmentConsumer`` follows the event log (checkpoint ``segments``). For every chunk it notes
the HCPs whose interactions arrived; after the chunk is committed it evaluates every stored
segment for each of them in Python (``SegmentService.evaluate_one``), which writes the
``segment_entered`` / ``segment_left`` events. A chunk that touches many HCPs (a bulk import)
is cheaper to answer in SQL for everybody at once, so above ``bulk_threshold`` HCPs every
segment is refreshed instead.

Windows slide with the clock: an HCP whose last webinar falls out of "attended within 90
days" leaves without any event of its own. ``refresh_all`` (run every few minutes beside the
workers, ``COUNTERPOINT_SEGMENT_REFRESH_S``) catches those, and anything a crash between the
checkpoint and the evaluation left behind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.errors import CounterpointError
from counterpoint.event.consumer import LogConsumer
from counterpoint.event.log import EventLog
from counterpoint.profile.models import Identity
from counterpoint.segment.models import Segment
from counterpoint.segment.service import SOURCE, SegmentService

__all__ = ["SegmentConsumer", "refresh_all"]

_log = logging.getLogger(__name__)
_IN = 500


def refresh_all(segments: SegmentService) -> int:
    """Refresh every stored segment (in SQL); returns how many HCPs entered or left."""
    moved = 0
    for item in segments.list():
        try:
            result = segments.refresh(str(item["name"]))
        except CounterpointError:  # deleted or edited meanwhile: the next round sees it
            _log.info("segment %s changed during its refresh; skipped", item["name"])
            continue
        moved += int(result["entered"]) + int(result["left"])
    return moved


class SegmentConsumer(LogConsumer):
    name = "segments"
    bulk_threshold = 1_000

    def __init__(
        self, sessions: sessionmaker[Session], log: EventLog, segments: SegmentService
    ) -> None:
        super().__init__(sessions, log)
        self._segments = segments
        self._pending: set[str] = set()

    def apply(self, session: Session, table: pa.Table) -> None:
        interactions = pc.and_(
            pc.and_(pc.is_valid(table.column("channel")), pc.is_valid(table.column("action"))),
            pc.not_equal(table.column("source"), SOURCE),
        )
        rows = table.filter(pc.fill_null(interactions, False))
        if rows.num_rows == 0:
            return
        if session.scalar(select(Segment.id).where(Segment.deleted_at.is_(None)).limit(1)) is None:
            return  # no segment to keep current
        subjects = pc.unique(rows.column("subject")).to_pylist()
        self._pending.update(self._hcps(session, subjects))

    @staticmethod
    def _hcps(session: Session, subjects: Iterable[str]) -> set[str]:
        wanted = [s for s in subjects if s]
        found: set[str] = set()
        for i in range(0, len(wanted), _IN):
            batch = wanted[i : i + _IN]
            found.update(session.scalars(select(Identity.hcp_id).where(Identity.key.in_(batch))))
        return found

    def after_catch_up(self) -> None:
        pending, self._pending = self._pending, set()
        if not pending:
            return
        if len(pending) > self.bulk_threshold:
            refresh_all(self._segments)
            return
        for hcp_id in sorted(pending):
            try:
                self._segments.evaluate_one(hcp_id)
            except CounterpointError:  # merged away or erased since: nothing to keep
                continue
