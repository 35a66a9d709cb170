"""SQL of the content library: items, reviews and the generation counter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import String, cast, func, or_, select, update
from sqlalchemy.orm import Session

from counterpoint.content.models import ContentGeneration, ContentItem, ContentReview
from counterpoint.kit.db import upsert

__all__ = [
    "ItemFilter",
    "bump_generation",
    "dependants",
    "expiring",
    "find_item",
    "fragment_codes",
    "items_by_codes",
    "lock_item",
    "past_valid_until",
    "reviews_of",
    "search",
]

_GENERATION_ID = 1


def bump_generation(session: Session) -> None:
    """Move the library's generation by one (creating the counter the first time).

    Every change calls this first: the row update takes the write lock (row lock on
    PostgreSQL, the database lock on SQLite), so concurrent changes to the library run one
    after another and each reads what the previous one wrote."""
    bump = (
        update(ContentGeneration)
        .where(ContentGeneration.id == _GENERATION_ID)
        .values(value=ContentGeneration.value + 1)
    )
    if session.execute(bump).rowcount == 0:  # type: ignore[attr-defined]
        upsert(
            session,
            ContentGeneration.__table__,
            [{"id": _GENERATION_ID, "value": 0}],
            keys=["id"],
        )
        session.execute(bump)


def find_item(session: Session, id_or_code: str) -> ContentItem | None:
    return (
        session.get(ContentItem, id_or_code)
        or session.scalars(select(ContentItem).where(ContentItem.code == id_or_code)).first()
    )


def lock_item(session: Session, item_id: str) -> ContentItem | None:
    """The item, locked for this transaction (FOR UPDATE where the database has it)."""
    return session.scalars(
        select(ContentItem)
        .where(ContentItem.id == item_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def items_by_codes(session: Session, codes: Collection[str]) -> dict[str, ContentItem]:
    if not codes:
        return {}
    rows = session.scalars(select(ContentItem).where(ContentItem.code.in_(list(codes))))
    return {row.code: row for row in rows}


def fragment_codes(session: Session) -> set[str]:
    return set(session.scalars(select(ContentItem.code).where(ContentItem.kind == "fragment")))


def dependants(session: Session, item: ContentItem) -> list[ContentItem]:
    """Items built from ``item``: assets including it (a fragment), local variants (a
    global parent)."""
    found: dict[str, ContentItem] = {}
    if item.kind == "fragment":
        # JSON text prefilter, then the exact test on the decoded list.
        query = select(ContentItem).where(
            ContentItem.kind == "asset",
            cast(ContentItem.fragment_codes, String).contains(f'"{item.code}"', autoescape=True),
        )
        for row in session.scalars(query):
            if item.code in row.fragment_codes:
                found[row.id] = row
    for row in session.scalars(select(ContentItem).where(ContentItem.parent_id == item.id)):
        found[row.id] = row
    return sorted(found.values(), key=lambda r: r.code)


def reviews_of(session: Session, item_id: str) -> list[ContentReview]:
    return list(
        session.scalars(
            select(ContentReview)
            .where(ContentReview.item_id == item_id)
            .order_by(ContentReview.at, ContentReview.id)
        )
    )


@dataclass(frozen=True, slots=True)
class ItemFilter:
    kind: str | None = None
    asset_type: str | None = None
    brand: str | None = None
    brands: frozenset[str] = frozenset()  # the caller's brand scope (empty: all)
    state: str | None = None
    market: str | None = None
    channel: str | None = None
    text: str | None = None


def search(
    session: Session, where: ItemFilter, *, limit: int, offset: int
) -> tuple[Sequence[ContentItem], int]:
    """A page of items (by code) and how many match in all."""
    conditions = []
    if where.kind:
        conditions.append(ContentItem.kind == where.kind)
    if where.asset_type:
        conditions.append(ContentItem.asset_type == where.asset_type)
    if where.brand:
        conditions.append(ContentItem.brand == where.brand)
    if where.brands:
        conditions.append(
            or_(ContentItem.brand.is_(None), ContentItem.brand.in_(sorted(where.brands)))
        )
    if where.state:
        conditions.append(ContentItem.state == where.state)
    if where.market:
        markets = cast(ContentItem.markets, String)
        conditions.append(markets.contains(f'"{where.market}"', autoescape=True))
    if where.channel:
        channels = cast(ContentItem.channels, String)
        conditions.append(channels.contains(f'"{where.channel}"', autoescape=True))
    if where.text:
        pattern = where.text.lower()
        conditions.append(
            or_(
                func.lower(ContentItem.title).contains(pattern, autoescape=True),
                func.lower(ContentItem.code).contains(pattern, autoescape=True),
            )
        )
    total = session.scalar(select(func.count()).select_from(ContentItem).where(*conditions))
    rows = session.scalars(
        select(ContentItem)
        .where(*conditions)
        .order_by(ContentItem.code)
        .limit(limit)
        .offset(offset)
    ).all()
    return rows, int(total or 0)


def past_valid_until(session: Session, now: dt.datetime) -> list[ContentItem]:
    """Approved items whose validity has ended."""
    return list(
        session.scalars(
            select(ContentItem)
            .where(ContentItem.state == "approved", ContentItem.valid_until <= now)
            .order_by(ContentItem.valid_until, ContentItem.code)
        )
    )


def expiring(
    session: Session, now: dt.datetime, until: dt.datetime, brands: frozenset[str] = frozenset()
) -> list[ContentItem]:
    """Approved items whose validity ends after ``now`` and by ``until``, soonest first."""
    query = select(ContentItem).where(
        ContentItem.state == "approved",
        ContentItem.valid_until > now,
        ContentItem.valid_until <= until,
    )
    if brands:
        query = query.where(or_(ContentItem.brand.is_(None), ContentItem.brand.in_(sorted(brands))))
    return list(session.scalars(query.order_by(ContentItem.valid_until, ContentItem.code)))
