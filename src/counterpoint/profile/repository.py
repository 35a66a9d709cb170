"""All SQL of the customer record. Services and the projector call these; they never commit."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, cast

import msgspec
from sqlalchemy import String, Text, delete, func, select, type_coerce, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from counterpoint.kit.clock import utc
from counterpoint.kit.db import fast_upsert, upsert
from counterpoint.profile.identifiers import Identifier, IdentifierType
from counterpoint.profile.identity import Observation, ProfileRank, Separation
from counterpoint.profile.merge import AttributeValue
from counterpoint.profile.models import (
    Affiliation,
    AttributeObservation,
    EngagementContent,
    EngagementDay,
    EngagementLast,
    Hco,
    Hcp,
    Identity,
    IdentityObservation,
    IdentityObservationMember,
    IdentitySeparation,
    IdentitySeparationMember,
    MergeRecord,
    ProfileOrigin,
)

__all__ = ["DERIVED_TABLES", "ProfileRepository", "ProfileRow", "to_identifier"]


class ProfileRow(Protocol):
    """The columns of an HCP that bulk readers use (a plain row, not an ORM object: bulk
    reads of thousands of profiles stay cheap)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def market(self) -> str | None: ...
    @property
    def territory(self) -> str | None: ...
    @property
    def time_zone(self) -> str | None: ...
    @property
    def preferred_language(self) -> str | None: ...
    @property
    def merged_into(self) -> str | None: ...
    @property
    def first_name(self) -> str | None: ...
    @property
    def last_name(self) -> str | None: ...
    @property
    def title(self) -> str | None: ...
    @property
    def specialty(self) -> str | None: ...
    @property
    def persona(self) -> str | None: ...
    @property
    def synthetic(self) -> bool: ...


_IN_BATCH = 500

DERIVED_TABLES = (
    EngagementContent,
    EngagementLast,
    EngagementDay,
    AttributeObservation,
    MergeRecord,
    IdentityObservationMember,
    IdentityObservation,
    Identity,
    Hcp,
)
"""Rebuilt from the event log by replay (children first). Separations and HCOs are not."""


_PROFILE_ROWS = select(
    Hcp.id, Hcp.kind, Hcp.market, Hcp.territory, Hcp.time_zone, Hcp.preferred_language,
    Hcp.merged_into, Hcp.first_name, Hcp.last_name, Hcp.title, Hcp.specialty, Hcp.persona,
    Hcp.synthetic,
)  # fmt: skip


def to_identifier(key: str) -> Identifier:
    kind, _, value = key.partition(":")
    return Identifier(IdentifierType(kind), value)


def _batches(values: Iterable[str]) -> Iterator[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), _IN_BATCH):
        yield items[start : start + _IN_BATCH]


class ProfileRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # --- identities -------------------------------------------------------------------
    def profiles_of(self, keys: Iterable[str]) -> dict[str, str]:
        """Identifier key → profile id, for the keys that are known."""
        found: dict[str, str] = {}
        for batch in _batches(keys):
            rows = self.session.execute(
                select(Identity.key, Identity.hcp_id).where(Identity.key.in_(batch))
            )
            found.update(dict(rows.all()))
        return found

    def identities_of(self, hcp_ids: Iterable[str]) -> dict[str, list[str]]:
        """Profile id → its identifier keys."""
        found: dict[str, list[str]] = {}
        for batch in _batches(hcp_ids):
            rows = self.session.execute(
                select(Identity.hcp_id, Identity.key).where(Identity.hcp_id.in_(batch))
            )
            for hcp_id, key in rows:
                found.setdefault(hcp_id, []).append(key)
        return found

    def set_identities(self, rows: Sequence[dict[str, Any]]) -> None:
        upsert(
            self.session,
            Identity.__table__,
            list(rows),
            keys=["key"],
            update={"hcp_id": lambda s: s.excluded.hcp_id},
        )

    # --- profiles ---------------------------------------------------------------------
    def insert_profiles(self, rows: Sequence[dict[str, Any]]) -> None:
        upsert(self.session, Hcp.__table__, list(rows), keys=["id"])

    def add_origins(self, rows: Sequence[tuple[str, str]], at: dt.datetime) -> None:
        """Remember (profile id, identifier it was made for); the first record stays."""
        upsert(
            self.session,
            ProfileOrigin.__table__,
            [{"hcp_id": h, "identifier": k, "created_at": at} for h, k in rows],
            keys=["hcp_id"],
        )

    def issued_for(self, keys: Iterable[str]) -> dict[str, list[tuple[dt.datetime, str]]]:
        """Identifier → the (created_at, profile id) pairs issued for it, oldest first."""
        found: dict[str, list[tuple[dt.datetime, str]]] = {}
        table = ProfileOrigin.__table__
        for batch in _batches(keys):
            rows = self.session.execute(
                select(table.c.identifier, table.c.created_at, table.c.hcp_id).where(
                    table.c.identifier.in_(batch)
                )
            )
            for key, at, hcp_id in rows:
                found.setdefault(key, []).append((at, hcp_id))
        for pairs in found.values():
            pairs.sort()
        return found

    # --- bulk resolution (the guard and other batch readers) ----------------------------
    def profiles_by_id(self, ids: Iterable[str]) -> dict[str, ProfileRow]:
        found: dict[str, ProfileRow] = {}
        for part in _batches(ids):
            for row in self.session.execute(_PROFILE_ROWS.where(Hcp.id.in_(part))):
                found[row.id] = cast(ProfileRow, row)
        return found

    def profiles_by_origin(self, ids: Iterable[str]) -> dict[str, ProfileRow]:
        """Ids issued before a rebuild → the profile now holding the identifier each was
        made for."""
        origin: dict[str, str] = {}
        for part in _batches(ids):
            origin.update(
                dict(
                    self.session.execute(
                        select(ProfileOrigin.hcp_id, ProfileOrigin.identifier).where(
                            ProfileOrigin.hcp_id.in_(part)
                        )
                    ).all()
                )
            )
        holder = self.profiles_of(origin.values())
        current = self.profiles_by_id(holder.values())
        return {
            requested: current[holder[key]]
            for requested, key in origin.items()
            if key in holder and holder[key] in current
        }

    def follow_merges(self, rows: dict[str, ProfileRow]) -> dict[str, ProfileRow]:
        """Each requested id's profile, followed along ``merged_into`` to the live one."""
        live = dict(rows)
        seen = {k: {k} for k in live}
        for _ in range(64):
            pending = {k: h.merged_into for k, h in live.items() if h.merged_into is not None}
            pending = {k: t for k, t in pending.items() if t not in seen[k]}
            if not pending:
                break
            targets = self.profiles_by_id(pending.values())
            for k, target in pending.items():
                seen[k].add(target)
                if target in targets:
                    live[k] = targets[target]
                else:
                    del live[k]
        return live

    def merged_into_many(self, live_ids: set[str]) -> dict[str, set[str]]:
        """Every profile id merged (directly or through others) into each live id."""
        root: dict[str, str] = {i: i for i in live_ids}
        out: dict[str, set[str]] = {i: set() for i in live_ids}
        frontier = set(live_ids)
        while frontier:
            found: set[str] = set()
            for part in _batches(frontier):
                for hcp_id, into in self.session.execute(
                    select(Hcp.id, Hcp.merged_into).where(Hcp.merged_into.in_(part))
                ):
                    if hcp_id in root or into is None:
                        continue
                    root[hcp_id] = root[into]
                    out[root[into]].add(hcp_id)
                    found.add(hcp_id)
            frontier = found
        return out

    def merged_into(self, hcp_id: str) -> set[str]:
        """Every profile id merged (directly or through others) into ``hcp_id``."""
        found: set[str] = set()
        frontier = {hcp_id}
        while frontier:
            rows = set(self.session.scalars(select(Hcp.id).where(Hcp.merged_into.in_(frontier))))
            frontier = rows - found - {hcp_id}
            found |= frontier
        return found

    def origin_of(self, hcp_id: str) -> str | None:
        row = self.session.get(ProfileOrigin, hcp_id)
        return row.identifier if row else None

    def revive(self, hcp_ids: Iterable[str], at: dt.datetime) -> None:
        """Profiles given back their own identifiers (an unmerge) stop pointing elsewhere."""
        for batch in _batches(hcp_ids):
            self.session.execute(
                update(Hcp).where(Hcp.id.in_(batch)).values(merged_into=None, updated_at=at)
            )

    def ranks(self, hcp_ids: Iterable[str]) -> dict[str, ProfileRank]:
        ranks: dict[str, ProfileRank] = {}
        for batch in _batches(hcp_ids):
            rows = self.session.execute(
                select(Hcp.id, Hcp.master_data, Hcp.created_at).where(Hcp.id.in_(batch))
            )
            for hcp_id, master, created in rows:
                ranks[hcp_id] = ProfileRank(bool(master), created, hcp_id)
        return ranks

    def existing_profiles(self, hcp_ids: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for batch in _batches(hcp_ids):
            found.update(self.session.scalars(select(Hcp.id).where(Hcp.id.in_(batch))))
        return found

    def mark_merged(self, pairs: Sequence[tuple[str, str]], at: dt.datetime) -> None:
        """(absorbed, survivor) pairs: each absorbed profile now points at its survivor."""
        if pairs:
            self.session.execute(
                update(Hcp),
                [{"id": a, "merged_into": s, "updated_at": at} for a, s in pairs],
            )

    def update_profiles(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.session.execute(update(Hcp), list(rows))

    def get_profile(self, hcp_id: str) -> Hcp | None:
        return self.session.get(Hcp, hcp_id)

    def record_merge(self, row: dict[str, Any]) -> None:
        self.session.add(MergeRecord(**row))

    def splits_recorded_since(self, at: dt.datetime) -> list[MergeRecord]:
        """Splits recorded in this unit of work at or after ``at`` (pending rows included)."""
        self.session.flush()
        stmt = select(MergeRecord).where(MergeRecord.kind == "split", MergeRecord.at >= at)
        return list(self.session.scalars(stmt))

    def merges_of(self, hcp_id: str) -> list[MergeRecord]:
        stmt = (
            select(MergeRecord)
            .where((MergeRecord.survivor == hcp_id) | (MergeRecord.other == hcp_id))
            .order_by(MergeRecord.id)
        )
        return list(self.session.scalars(stmt))

    # --- identity evidence ------------------------------------------------------------
    def add_observations(
        self, rows: Sequence[tuple[str, list[str], dt.datetime, int, str]]
    ) -> None:
        """Store observations (fingerprint, keys, observed_at, seq, source). The same evidence
        again (its fingerprint) keeps one row, the earliest sighting (``observed_at``, then
        ``seq``), whatever order the sightings arrive in."""
        if not rows:
            return
        fast_upsert(
            self.session,
            "identity_observation",
            ["fingerprint", "identifiers", "observed_at", "seq", "source"],
            [(f, _JSON(k).decode(), at, s, src) for f, k, at, s, src in rows],
            keys=["fingerprint"],
            set_sql="observed_at = excluded.observed_at, seq = excluded.seq",
            where_sql="(excluded.observed_at, excluded.seq) < "
            "(identity_observation.observed_at, identity_observation.seq)",
        )
        ids: dict[str, int] = {}
        for batch in _batches(r[0] for r in rows):
            found = self.session.execute(
                select(IdentityObservation.fingerprint, IdentityObservation.id).where(
                    IdentityObservation.fingerprint.in_(batch)
                )
            )
            ids.update(found.all())
        fast_upsert(
            self.session,
            "identity_observation_member",
            ["observation_id", "identifier"],
            [(ids[f], key) for f, keys, *_ in rows for key in keys],
            keys=["observation_id", "identifier"],
            set_sql=None,
        )

    def component(self, seed: Iterable[str]) -> tuple[set[str], list[Observation]]:
        """All identifiers transitively observed with ``seed``, and those observations."""
        keys: set[str] = set(seed)
        frontier = set(keys)
        observation_ids: set[int] = set()
        while frontier:
            new_obs: set[int] = set()
            for batch in _batches(frontier):
                new_obs.update(
                    self.session.scalars(
                        select(IdentityObservationMember.observation_id).where(
                            IdentityObservationMember.identifier.in_(batch)
                        )
                    )
                )
            new_obs -= observation_ids
            observation_ids |= new_obs
            frontier = set()
            for start in range(0, len(new_obs), _IN_BATCH):
                batch_ids = sorted(new_obs)[start : start + _IN_BATCH]
                frontier.update(
                    self.session.scalars(
                        select(IdentityObservationMember.identifier).where(
                            IdentityObservationMember.observation_id.in_(batch_ids)
                        )
                    )
                )
            frontier -= keys
            keys |= frontier
        observations: list[Observation] = []
        ordered = sorted(observation_ids)
        obs = IdentityObservation.__table__
        for start in range(0, len(ordered), _IN_BATCH):
            rows = self.session.execute(
                select(obs.c.identifiers, obs.c.observed_at, obs.c.seq, obs.c.source).where(
                    obs.c.id.in_(ordered[start : start + _IN_BATCH])
                )
            )
            observations.extend(
                Observation(frozenset(map(to_identifier, ids)), at, seq, source)
                for ids, at, seq, source in rows
            )
        return keys, observations

    def observation_counts(self, keys: Iterable[str]) -> Counter[str]:
        """How many stored observations name each key."""
        counts: Counter[str] = Counter()
        member = IdentityObservationMember.__table__
        for batch in _batches(keys):
            rows = self.session.execute(
                select(member.c.identifier, func.count())
                .where(member.c.identifier.in_(batch))
                .group_by(member.c.identifier)
            )
            counts.update({k: int(n) for k, n in rows})
        return counts

    def separated(self, keys: Iterable[str]) -> set[str]:
        """The keys that some separation (manual unmerge) names."""
        found: set[str] = set()
        for batch in _batches(keys):
            found.update(
                self.session.scalars(
                    select(IdentitySeparationMember.identifier).where(
                        IdentitySeparationMember.identifier.in_(batch)
                    )
                )
            )
        return found

    def separations(self, keys: Iterable[str]) -> list[Separation]:
        ids: set[int] = set()
        for batch in _batches(keys):
            ids.update(
                self.session.scalars(
                    select(IdentitySeparationMember.separation_id).where(
                        IdentitySeparationMember.identifier.in_(batch)
                    )
                )
            )
        if not ids:
            return []
        rows = self.session.scalars(
            select(IdentitySeparation).where(IdentitySeparation.id.in_(sorted(ids)))
        )
        return [
            Separation(
                frozenset(to_identifier(k) for k in r.left),
                frozenset(to_identifier(k) for k in r.right),
                r.reason,
            )
            for r in rows
        ]

    def add_separation(
        self, left: list[str], right: list[str], reason: str, by: str, at: dt.datetime
    ) -> None:
        row = IdentitySeparation(
            left=left, right=right, reason=reason, created_at=at, created_by=by
        )
        self.session.add(row)
        self.session.flush()
        self.session.add_all(
            IdentitySeparationMember(separation_id=row.id, identifier=k) for k in left + right
        )

    # --- attributes -------------------------------------------------------------------
    def add_attribute_observations(self, rows: Sequence[dict[str, Any]]) -> None:
        """Keep the latest statement per identifier, attribute and source (through the
        driver: a master-data HCP states a dozen attributes)."""
        fast_upsert(
            self.session,
            "attribute_observation",
            ["identifier", "name", "source", "value", "observed_at", "seq"],
            [
                (
                    r["identifier"],
                    r["name"],
                    r["source"],
                    _JSON(r["value"]).decode(),
                    r["observed_at"],
                    r["seq"],
                )
                for r in rows
            ],
            keys=["identifier", "name", "source"],
            set_sql="value = excluded.value, observed_at = excluded.observed_at, "
            "seq = excluded.seq",
            where_sql="excluded.seq > attribute_observation.seq",
        )

    def attribute_values(self, keys: Iterable[str]) -> dict[str, list[AttributeValue]]:
        """Every statement about ``keys``. The value is read as JSON text and the time as
        stored, and both are converted here: SQLAlchemy's per-cell converters cost more than
        the query."""
        found: dict[str, list[AttributeValue]] = {}
        t = AttributeObservation.__table__
        value = sql_cast(t.c.value, Text)  # JSON text on SQLite and PostgreSQL alike
        at = type_coerce(t.c.observed_at, String)  # SQLite: its text; PostgreSQL: datetime
        for batch in _batches(keys):
            rows = self.session.execute(
                select(t.c.identifier, t.c.name, value, at, t.c.seq, t.c.source).where(
                    t.c.identifier.in_(batch)
                )
            )
            for identifier, name, text, stored_at, seq, source in rows:
                found.setdefault(identifier, []).append(
                    AttributeValue(
                        name,
                        _JSON_DECODE(text) if text is not None else None,
                        _stored_utc(stored_at),
                        seq,
                        source,
                    )
                )
        return found

    # --- engagement -------------------------------------------------------------------
    def add_engagement(
        self,
        days: Sequence[tuple[Any, ...]],
        last: Sequence[tuple[Any, ...]],
        content: Sequence[tuple[Any, ...]],
    ) -> None:
        """Add one chunk's aggregates: (identifier, day, channel, action, function, count),
        (identifier, channel, last_at, last_action), (identifier, content_id, brand, count,
        last_at). Counts add up; "last" values only move forward in time."""
        fast_upsert(
            self.session,
            "engagement_day",
            ["identifier", "day", "channel", "action", "function", "count"],
            days,
            keys=["identifier", "day", "channel", "action", "function"],
            set_sql="count = engagement_day.count + excluded.count",
        )
        fast_upsert(
            self.session,
            "engagement_last",
            ["identifier", "channel", "last_at", "last_action"],
            last,
            keys=["identifier", "channel"],
            set_sql="last_at = excluded.last_at, last_action = excluded.last_action",
            where_sql="excluded.last_at >= engagement_last.last_at",
        )
        fast_upsert(
            self.session,
            "engagement_content",
            ["identifier", "content_id", "brand", "count", "last_at"],
            content,
            keys=["identifier", "content_id"],
            set_sql="count = engagement_content.count + excluded.count, last_at = CASE "
            "WHEN excluded.last_at > engagement_content.last_at THEN excluded.last_at "
            "ELSE engagement_content.last_at END",
        )

    def engagement_of(
        self, keys: Sequence[str], since: dt.date
    ) -> tuple[list[EngagementDay], list[EngagementLast], list[EngagementContent]]:
        days = list(
            self.session.scalars(
                select(EngagementDay).where(
                    EngagementDay.identifier.in_(keys), EngagementDay.day >= since
                )
            )
        )
        last = list(
            self.session.scalars(select(EngagementLast).where(EngagementLast.identifier.in_(keys)))
        )
        content = list(
            self.session.scalars(
                select(EngagementContent).where(EngagementContent.identifier.in_(keys))
            )
        )
        return days, last, content

    def prune_engagement(self, before: dt.date) -> None:
        self.session.execute(delete(EngagementDay).where(EngagementDay.day < before))

    # --- organisations ----------------------------------------------------------------
    def affiliations_of(self, keys: Sequence[str]) -> list[tuple[Affiliation, Hco]]:
        rows = self.session.execute(
            select(Affiliation, Hco)
            .join(Hco, Hco.id == Affiliation.hco_id)
            .where(Affiliation.identifier.in_(keys))
        )
        return [(a, h) for a, h in rows]

    def upsert_hcos(self, rows: Sequence[dict[str, Any]]) -> None:
        upsert(
            self.session,
            Hco.__table__,
            list(rows),
            keys=["id"],
            update={
                c: (lambda s, c=c: s.excluded[c])
                for c in ("name", "kind", "market", "city", "synthetic", "updated_at")
            },
        )

    def upsert_affiliations(self, rows: Sequence[dict[str, Any]]) -> None:
        upsert(
            self.session,
            Affiliation.__table__,
            list(rows),
            keys=["identifier", "hco_id"],
            update={c: (lambda s, c=c: s.excluded[c]) for c in ("role", "primary", "synthetic")},
        )

    def known_hcos(self, ids: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for batch in _batches(ids):
            found.update(self.session.scalars(select(Hco.id).where(Hco.id.in_(batch))))
        return found

    # --- erasure (privacy) --------------------------------------------------------------
    def origins_of(self, keys: Sequence[str], hcp_ids: Sequence[str]) -> set[str]:
        """Every profile id ever issued for these identifiers or ids (for erasure)."""
        rows = self.session.scalars(
            select(ProfileOrigin.hcp_id).where(
                ProfileOrigin.identifier.in_(list(keys)) | ProfileOrigin.hcp_id.in_(list(hcp_ids))
            )
        )
        return set(rows)

    def erase(self, keys: Sequence[str], hcp_ids: Sequence[str], pseudonym: str) -> dict[str, int]:
        """Remove a person from the customer record (GDPR erasure): profiles, identities,
        identity evidence and separations, attributes, affiliations, origins and merge records
        of these identifiers and profile ids are deleted; their engagement counts move to the
        identifier ``pseudonym`` (counts add up). Returns rows deleted per table."""
        keys, ids = list(keys), list(hcp_ids)
        counts: dict[str, int] = {}

        def gone(name: str, statement: Any) -> None:
            counts[name] = counts.get(name, 0) + int(self.session.execute(statement).rowcount)  # type: ignore[attr-defined]

        observations = list(
            self.session.scalars(
                select(IdentityObservationMember.observation_id).where(
                    IdentityObservationMember.identifier.in_(keys)
                )
            )
        )
        gone(
            "identity_observation_member",
            delete(IdentityObservationMember).where(
                IdentityObservationMember.observation_id.in_(observations)
            ),
        )
        gone(
            "identity_observation",
            delete(IdentityObservation).where(IdentityObservation.id.in_(observations)),
        )
        separations = list(
            self.session.scalars(
                select(IdentitySeparationMember.separation_id).where(
                    IdentitySeparationMember.identifier.in_(keys)
                )
            )
        )
        gone(
            "identity_separation_member",
            delete(IdentitySeparationMember).where(
                IdentitySeparationMember.separation_id.in_(separations)
            ),
        )
        gone(
            "identity_separation",
            delete(IdentitySeparation).where(IdentitySeparation.id.in_(separations)),
        )
        gone(
            "merge_record",
            delete(MergeRecord).where(MergeRecord.survivor.in_(ids) | MergeRecord.other.in_(ids)),
        )
        gone(
            "attribute_observation",
            delete(AttributeObservation).where(AttributeObservation.identifier.in_(keys)),
        )
        gone("affiliation", delete(Affiliation).where(Affiliation.identifier.in_(keys)))
        gone(
            "profile_origin",
            delete(ProfileOrigin).where(
                ProfileOrigin.identifier.in_(keys) | ProfileOrigin.hcp_id.in_(ids)
            ),
        )
        gone(
            "identity",
            delete(Identity).where(Identity.key.in_(keys) | Identity.hcp_id.in_(ids)),
        )
        gone("hcp", delete(Hcp).where(Hcp.id.in_(ids) | Hcp.merged_into.in_(ids)))
        self._rekey_engagement(keys, pseudonym)
        return counts

    def _rekey_engagement(self, keys: list[str], pseudonym: str) -> None:
        days: Counter[tuple[Any, ...]] = Counter()
        for d in self.session.scalars(
            select(EngagementDay).where(EngagementDay.identifier.in_(keys))
        ):
            days[(d.day, d.channel, d.action, d.function)] += d.count
        last: dict[str, tuple[dt.datetime, str]] = {}
        for x in self.session.scalars(
            select(EngagementLast).where(EngagementLast.identifier.in_(keys))
        ):
            if x.channel not in last or x.last_at > last[x.channel][0]:
                last[x.channel] = (x.last_at, x.last_action)
        content: dict[str, tuple[str | None, int, dt.datetime]] = {}
        for c in self.session.scalars(
            select(EngagementContent).where(EngagementContent.identifier.in_(keys))
        ):
            brand, count, at = content.get(c.content_id, (c.brand, 0, c.last_at))
            content[c.content_id] = (brand or c.brand, count + c.count, max(at, c.last_at))
        for model in (EngagementDay, EngagementLast, EngagementContent):
            self.session.execute(delete(model).where(model.identifier.in_(keys)))
        day_t, last_t, content_t = (
            EngagementDay.__table__,
            EngagementLast.__table__,
            EngagementContent.__table__,
        )
        if days:
            upsert(
                self.session,
                day_t,
                [
                    {
                        "identifier": pseudonym,
                        "day": d,
                        "channel": ch,
                        "action": a,
                        "function": f,
                        "count": n,
                    }
                    for (d, ch, a, f), n in days.items()
                ],
                keys=["identifier", "day", "channel", "action", "function"],
                update={"count": lambda s: day_t.c["count"] + s.excluded["count"]},
            )
        if last:
            upsert(
                self.session,
                last_t,
                [
                    {"identifier": pseudonym, "channel": ch, "last_at": at, "last_action": a}
                    for ch, (at, a) in last.items()
                ],
                keys=["identifier", "channel"],
                update={
                    "last_at": lambda s: s.excluded["last_at"],
                    "last_action": lambda s: s.excluded["last_action"],
                },
                where=lambda s: s.excluded["last_at"] >= last_t.c["last_at"],
            )
        if content:
            upsert(
                self.session,
                content_t,
                [
                    {
                        "identifier": pseudonym,
                        "content_id": cid,
                        "brand": b,
                        "count": n,
                        "last_at": at,
                    }
                    for cid, (b, n, at) in content.items()
                ],
                keys=["identifier", "content_id"],
                update={"count": lambda s: content_t.c["count"] + s.excluded["count"]},
            )

    def clear_derived(self) -> None:
        for model in DERIVED_TABLES:
            self.session.execute(delete(model))


_JSON = msgspec.json.Encoder().encode
_JSON_DECODE = msgspec.json.decode


def _stored_utc(value: str | dt.datetime) -> dt.datetime:
    """A ``UtcDateTime`` cell read without its converter: SQLite's naive UTC text, or
    PostgreSQL's aware datetime."""
    return utc(dt.datetime.fromisoformat(value) if isinstance(value, str) else value)
