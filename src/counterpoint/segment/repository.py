"""SQL over the segment tables (the caller's session and transaction; nothing commits here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.orm import Session

from counterpoint.profile.models import Hcp
from counterpoint.segment.models import Segment, SegmentMember, SegmentPendingEvent

__all__ = ["SegmentRepository"]

_IN_BATCH = 500


def _batches(values: Iterable[str]) -> Iterator[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), _IN_BATCH):
        yield items[start : start + _IN_BATCH]


class SegmentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # --- definitions ----------------------------------------------------------------------
    def find(self, name: str, *, deleted: bool = False) -> Segment | None:
        """The segment named ``name`` (live only, unless ``deleted``: tombstones too)."""
        query = select(Segment).where(Segment.name == name)
        if not deleted:
            query = query.where(Segment.deleted_at.is_(None))
        return self.session.scalars(query).one_or_none()

    def live(self) -> list[Segment]:
        return list(
            self.session.scalars(
                select(Segment).where(Segment.deleted_at.is_(None)).order_by(Segment.name)
            )
        )

    def add(self, segment: Segment) -> None:
        self.session.add(segment)
        self.session.flush()

    def next_generation(self, segment_id: str, version: int, now: dt.datetime) -> int | None:
        """Count one more membership change of the segment, if it still has ``version``
        (else None: it was edited meanwhile). The write comes first, so the transaction holds
        the segment (a row lock on PostgreSQL, the write lock on SQLite) before it reads
        members: two changes of one segment never interleave."""
        found = self.session.execute(
            update(Segment)
            .where(
                Segment.id == segment_id,
                Segment.version == version,
                Segment.deleted_at.is_(None),
            )
            .values(generation=Segment.generation + 1, refreshed_at=now)
            .returning(Segment.generation)
        ).scalar_one_or_none()
        return int(found) if found is not None else None

    # --- members --------------------------------------------------------------------------
    def members(self, segment_id: str) -> set[str]:
        return set(
            self.session.scalars(
                select(SegmentMember.hcp_id).where(SegmentMember.segment_id == segment_id)
            )
        )

    def member_counts(self) -> dict[str, int]:
        rows = self.session.execute(
            select(SegmentMember.segment_id, func.count()).group_by(SegmentMember.segment_id)
        ).all()
        return {segment_id: int(n) for segment_id, n in rows}

    def memberships_of(self, hcp_id: str) -> set[str]:
        """Ids of the segments the HCP is in."""
        return set(
            self.session.scalars(
                select(SegmentMember.segment_id).where(SegmentMember.hcp_id == hcp_id)
            )
        )

    def is_member(self, segment_id: str, hcp_id: str) -> bool:
        found = self.session.scalar(
            select(SegmentMember.hcp_id).where(
                SegmentMember.segment_id == segment_id, SegmentMember.hcp_id == hcp_id
            )
        )
        return found is not None

    def add_members(self, segment_id: str, hcp_ids: Iterable[str], since: dt.datetime) -> None:
        rows = [{"segment_id": segment_id, "hcp_id": h, "since": since} for h in hcp_ids]
        for start in range(0, len(rows), 10_000):
            self.session.execute(insert(SegmentMember), rows[start : start + 10_000])

    def remove_members(self, segment_id: str, hcp_ids: Iterable[str]) -> None:
        for part in _batches(hcp_ids):
            self.session.execute(
                delete(SegmentMember).where(
                    SegmentMember.segment_id == segment_id, SegmentMember.hcp_id.in_(part)
                )
            )

    # --- pending membership events ----------------------------------------------------------
    def add_pending(self, rows: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(rows), 10_000):
            self.session.execute(insert(SegmentPendingEvent), rows[start : start + 10_000])

    def pending(self, limit: int) -> list[Row[Any]]:
        """The oldest pending events, as plain rows (no ORM objects: a refresh can leave
        tens of thousands)."""
        table = SegmentPendingEvent.__table__
        return list(
            self.session.execute(
                select(table).order_by(table.c.occurred_at, table.c.message_id).limit(limit)
            ).all()
        )

    def drop_pending(self, message_ids: Iterable[str]) -> None:
        for part in _batches(message_ids):
            self.session.execute(
                delete(SegmentPendingEvent).where(SegmentPendingEvent.message_id.in_(part))
            )

    # --- what membership events carry about an HCP --------------------------------------------
    def synthetic_among(self, hcp_ids: Iterable[str]) -> set[str]:
        """The ids among ``hcp_ids`` of synthetic (generated) profiles."""
        found: set[str] = set()
        for part in _batches(hcp_ids):
            found.update(
                self.session.scalars(select(Hcp.id).where(Hcp.id.in_(part), Hcp.synthetic))
            )
        return found
