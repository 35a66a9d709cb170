"""Use cases of the customer record: HCP 360 reads, master-data imports."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.errors import CounterpointError, NotFoundError, ValidationFailedError
from counterpoint.event.canonical import EventKind, Function, LogEvent
from counterpoint.event.log import EventLog, StoredEvent, TimelineQuery
from counterpoint.kit.clock import Clock
from counterpoint.kit.db import Reader, connection_of
from counterpoint.kit.files import file_sha256, read_chunks, write_rejects
from counterpoint.policy.access import Principal, can_see_hcp, reads_medical_content
from counterpoint.policy.audit import Actor, AuditTrail, require_reason
from counterpoint.profile.features import ContentCount, DayCount, LastEvent, engagement_features
from counterpoint.profile.identifiers import parse_user_id
from counterpoint.profile.models import Hcp, Identity
from counterpoint.profile.projector import ProfileProjector
from counterpoint.profile.records import AffiliationRecord, HcoRecord, HcpRecord, RowError
from counterpoint.profile.repository import ProfileRepository
from counterpoint.profile.validation import (
    check_columns,
    validate_affiliation_row,
    validate_hco_row,
    validate_hcp_row,
)

__all__ = [
    "ErasedError",
    "HcpRef",
    "MasterDataReport",
    "ProfileService",
    "Recipient",
    "SegmentFilter",
    "no_such_hcp",
    "redact_medical",
]


class ErasedError(CounterpointError):
    """The person was erased at their request (GDPR): nothing is held about them."""

    status = 410
    code = "erased"


_HCP = Hcp.__table__
_IDENTITY = Identity.__table__
_MERGED = _HCP.alias("merged")
_HCP_WITH_KEYS = (
    select(
        _HCP.c.id,
        _HCP.c.kind,
        _HCP.c.market,
        _HCP.c.territory,
        _HCP.c.time_zone,
        _HCP.c.preferred_language,
        _HCP.c.merged_into,
        _IDENTITY.c.key,
        _MERGED.c.id.label("alias"),
    )
    .select_from(
        _HCP.outerjoin(_IDENTITY, _IDENTITY.c.hcp_id == _HCP.c.id).outerjoin(
            _MERGED, _MERGED.c.merged_into == _HCP.c.id
        )
    )
    .where(_HCP.c.id == bindparam("id"))
)
"""The HCP, its identifiers and the ids merged directly into it, in one round trip."""
_MERGED_INTO = select(_HCP.c.id).where(_HCP.c.merged_into.in_(bindparam("ids", expanding=True)))
"""Prebuilt statements of ``resolve_in`` (compiled once, then cached)."""


@dataclass(frozen=True, slots=True)
class HcpRef:
    """What other domains need of an HCP: ids (incl. ids merged into it), identifiers, and
    the attributes rules depend on (market, territory, time zone)."""

    id: str
    aliases: tuple[str, ...]
    identifiers: tuple[str, ...]
    market: str | None
    territory: str | None
    time_zone: str | None
    kind: str
    language: str | None = None  # preferred language (ISO 639-1)

    @property
    def subject(self) -> str | None:
        """The identifier events about this HCP are written under (its NPI when it has one,
        else its strongest identifier), or None when it has none left (erased)."""
        if not self.identifiers:
            return None
        return next((k for k in self.identifiers if k.startswith("npi:")), self.identifiers[0])


@dataclass(frozen=True, slots=True)
class Recipient:
    """What a message to an HCP needs: who it is (for personalisation) and where it goes."""

    ref: HcpRef
    first_name: str | None
    last_name: str | None
    title: str | None
    specialty: str | None
    persona: str | None
    synthetic: bool
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    organisation: str | None  # the primary affiliation's name (postal block), if any
    city: str | None


@dataclass(frozen=True, slots=True)
class SegmentFilter:
    """A set of HCPs by their attributes (every given condition must hold)."""

    market: str | None = None
    territory: str | None = None
    specialty: str | None = None
    segment: str | None = None  # one of the HCP's segments
    persona: str | None = None
    min_decile: int | None = None
    limit: int = 100_000

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def no_such_hcp(hcp_id: str) -> NotFoundError:
    """The one answer for an id that does not exist and for one outside the caller's scope,
    so that the answer never tells which."""
    return NotFoundError(
        f"no HCP {hcp_id[:100]!r} in your scope",
        field="hcp_id",
        fix="look it up by identifier (?identifier=npi:…); HCPs outside your markets or "
        "territories are not shown",
    )


def redact_medical(item: StoredEvent) -> StoredEvent:
    """A medical interaction as a commercial role may see it: that it happened, not what."""
    e = item.event
    if e.function != Function.MEDICAL:
        return item
    hidden = dataclasses.replace(
        e, event_name=None, content_id=None, slide=None, payload={"redacted": True}
    )
    return dataclasses.replace(item, event=hidden)


Kind = Literal["hcps", "hcos", "affiliations"]


@dataclass
class MasterDataReport:
    file: str
    kind: Kind
    rows: int = 0
    imported: int = 0
    unchanged: int = 0
    rejected: list[RowError] = field(default_factory=list)
    reject_file: Path | None = None


def _hcp_event(record: HcpRecord, source: str, now: dt.datetime) -> LogEvent:
    """A master-data row becomes an ``identify`` event: the log stays the only truth."""
    traits: dict[str, Any] = {
        "first_name": record.first_name,
        "last_name": record.last_name,
        "title": record.title,
        "specialty": record.specialty,
        "market": record.market,
        "territory": record.territory,
        "potential_decile": record.potential_decile,
        "segments": list(record.segments),
        "persona": record.persona,
        "adoption_stage": dict(record.adoption_stage),
        "preferred_language": record.preferred_language,
        "time_zone": record.time_zone,
    }
    names = {"npi": "npi", "national": "national_id", "vendor": "vendor_id", "crm": "crm_id"}
    for identifier in record.identifiers:
        traits[names.get(identifier.type.value, identifier.type.value)] = identifier.value
    payload = {"traits": traits, "master_data": True}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :32
    ]
    return LogEvent(
        message_id=f"md-{digest}",
        kind=EventKind.IDENTIFY,
        subject=record.identifiers[0].key,
        occurred_at=now,
        received_at=now,
        source=source,
        market=record.market,
        payload=payload,
        synthetic=record.synthetic,
    )


class ProfileService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        log: EventLog,
        projector: ProfileProjector,
        clock: Clock,
        *,
        specialties: frozenset[str],
        audit: AuditTrail,
        medical_visible_to_commercial: bool = True,
    ) -> None:
        self._audit = audit
        self._medical_visible = medical_visible_to_commercial
        self._sessions = sessions
        self._log = log
        self._projector = projector
        self._clock = clock
        self._specialties = specialties
        self._erased: Callable[[str], bool] | None = None

    def set_erasure_check(self, erased: Callable[[str], bool]) -> None:
        """Privacy hook: ``erased(key)`` says whether an identifier key (or ``hcp:<id>``)
        belongs to an erased person; lookups then answer 410 and imports refuse the row."""
        self._erased = erased

    def _refuse_erased(self, key: str, what: str, field_name: str) -> None:
        if self._erased is not None and self._erased(key):
            raise ErasedError(
                f"{what} belongs to a person erased at their request",
                field=field_name,
                fix="none: the person asked to be forgotten",
            )

    # --- reads ----------------------------------------------------------------------
    def find_by_identifier(self, text: str) -> str | None:
        key = parse_user_id(text, field="identifier").key
        with self._sessions() as session:
            found = ProfileRepository(session).profiles_of([key]).get(key)
        if found is None:
            self._refuse_erased(key, "the identifier", "identifier")
        return found

    def get_by_identifier(self, text: str, *, viewer: Principal | None = None) -> dict[str, Any]:
        hcp_id = self.find_by_identifier(text)
        if hcp_id is None:
            raise NotFoundError(
                f"no HCP has the identifier {text!r}",
                field="identifier",
                fix="check the type and value, e.g. npi:1234567893",
            )
        return self.get_hcp(hcp_id, viewer=viewer)

    def resolve(self, hcp_id: str, *, viewer: Principal | None = None) -> HcpRef:
        """The live HCP for an id (following merges), in the viewer's scope, or 404."""
        with self._sessions() as session:
            repo = ProfileRepository(session)
            profile = self._live(repo, hcp_id)
            self._check_scope(profile, hcp_id, viewer)
            keys = repo.identities_of([profile.id]).get(profile.id, [])
            aliases = repo.merged_into(profile.id)
        return HcpRef(
            id=profile.id,
            aliases=tuple(sorted({profile.id, hcp_id, *aliases})),
            identifiers=tuple(sorted(keys)),
            market=profile.market,
            territory=profile.territory,
            time_zone=profile.time_zone,
            kind=profile.kind,
            language=profile.preferred_language,
        )

    def resolve_in(
        self, session: Reader, hcp_id: str, *, viewer: Principal | None = None
    ) -> HcpRef:
        """``resolve`` inside the caller's session, for hot paths (one guard check): a live,
        unmerged id costs one prebuilt query (two with merges); anything else (ids merged away or
        issued before a rebuild, erased or unknown ids) takes the full ``resolve``."""
        connection = connection_of(session)
        rows = connection.execute(_HCP_WITH_KEYS, {"id": hcp_id}).all()
        row = rows[0] if rows else None
        if row is None or row.merged_into is not None:
            return self.resolve(hcp_id, viewer=viewer)
        if viewer is not None and not can_see_hcp(viewer, row.market, [row.territory]):
            raise no_such_hcp(hcp_id)
        keys = sorted({r.key for r in rows if r.key is not None})
        aliases = {r.alias for r in rows if r.alias is not None}
        frontier = sorted(aliases)  # ids merged into those (merges of merges): rare
        while frontier:
            found = [a for (a,) in connection.execute(_MERGED_INTO, {"ids": frontier})]
            frontier = [a for a in found if a not in aliases and a != hcp_id]
            aliases.update(frontier)
        return HcpRef(
            id=row.id,
            aliases=tuple(sorted({hcp_id, *aliases})),
            identifiers=tuple(sorted(keys)),
            market=row.market,
            territory=row.territory,
            time_zone=row.time_zone,
            kind=row.kind,
            language=row.preferred_language,
        )

    def resolve_many(
        self, hcp_ids: Iterable[str], viewer: Principal | None = None
    ) -> dict[str, HcpRef]:
        """Requested id → the live HCP (following merges), in bulk; ids unknown or outside
        the viewer's scope are absent. The same answers as ``resolve``, in a few queries."""
        wanted = set(hcp_ids)
        with self._sessions() as session:
            repo = ProfileRepository(session)
            rows = repo.profiles_by_id(wanted)
            if missing := wanted - rows.keys():
                rows.update(repo.profiles_by_origin(missing))
            live = repo.follow_merges(rows)
            live_ids = {h.id for h in live.values()}
            keys = repo.identities_of(live_ids)
            merged = repo.merged_into_many(live_ids)
        out: dict[str, HcpRef] = {}
        for requested, profile in live.items():
            if viewer is not None and not can_see_hcp(viewer, profile.market, [profile.territory]):
                continue
            out[requested] = HcpRef(
                id=profile.id,
                aliases=tuple(sorted({profile.id, requested, *merged.get(profile.id, ())})),
                identifiers=tuple(sorted(keys.get(profile.id, []))),
                market=profile.market,
                territory=profile.territory,
                time_zone=profile.time_zone,
                kind=profile.kind,
                language=profile.preferred_language,
            )
        return out

    def segment(self, where: SegmentFilter, *, viewer: Principal | None = None) -> list[str]:
        """Ids of the live HCPs matching ``where`` within the viewer's scope, by id."""
        query = select(Hcp.id, Hcp.market, Hcp.territory, Hcp.segments).where(
            Hcp.kind == "hcp", Hcp.merged_into.is_(None)
        )
        if where.market:
            query = query.where(Hcp.market == where.market.upper())
        if where.territory:
            query = query.where(Hcp.territory == where.territory)
        if where.specialty:
            query = query.where(Hcp.specialty == where.specialty)
        if where.persona:
            query = query.where(Hcp.persona == where.persona)
        if where.min_decile is not None:
            query = query.where(Hcp.potential_decile >= where.min_decile)
        out: list[str] = []
        with self._sessions() as session:
            for hcp_id, market, territory, segments in session.execute(query.order_by(Hcp.id)):
                if where.segment and where.segment not in (segments or []):
                    continue
                if viewer is not None and not can_see_hcp(viewer, market, [territory]):
                    continue
                out.append(hcp_id)
                if len(out) >= where.limit:
                    break
        return out

    def recipients(
        self, hcp_ids: Iterable[str], refs: Mapping[str, HcpRef] | None = None
    ) -> dict[str, Recipient]:
        """Requested id → the live HCP's recipient details, in bulk (unknown and erased ids
        are absent). ``refs``: ``resolve_many`` of the same ids, if the caller has it."""
        if refs is None:
            refs = self.resolve_many(hcp_ids)
        live = {ref.id for ref in refs.values()}
        with self._sessions() as session:
            repo = ProfileRepository(session)
            rows = repo.profiles_by_id(live)
            keys = [k for ref in refs.values() for k in ref.identifiers]
            orgs: dict[str, tuple[str, str | None, bool]] = {}
            for affiliation, hco in repo.affiliations_of(keys) if keys else []:
                known = orgs.get(affiliation.identifier)
                if known is None or (affiliation.primary and not known[2]):
                    orgs[affiliation.identifier] = (hco.name, hco.city, affiliation.primary)
        out: dict[str, Recipient] = {}
        for requested, ref in refs.items():
            row = rows.get(ref.id)
            if row is None:
                continue
            org = next((orgs[k] for k in ref.identifiers if k in orgs), None)
            out[requested] = Recipient(
                ref=ref,
                first_name=row.first_name,
                last_name=row.last_name,
                title=row.title,
                specialty=row.specialty,
                persona=row.persona,
                synthetic=row.synthetic,
                emails=tuple(k[6:] for k in ref.identifiers if k.startswith("email:")),
                phones=tuple(k[6:] for k in ref.identifiers if k.startswith("phone:")),
                organisation=org[0] if org else None,
                city=org[1] if org else None,
            )
        return out

    def resolve_identifier(self, text: str) -> HcpRef | None:
        """The HCP holding an identifier (``type:value``), or None if none does yet."""
        hcp_id = self.find_by_identifier(text)
        return self.resolve(hcp_id) if hcp_id else None

    @staticmethod
    def _check_scope(profile: Hcp, hcp_id: str, viewer: Principal | None) -> None:
        """Out of the viewer's markets or territories reads as absent (no existence leak)."""
        if viewer is not None and not can_see_hcp(viewer, profile.market, [profile.territory]):
            raise no_such_hcp(hcp_id)

    def _live(self, repo: ProfileRepository, hcp_id: str) -> Hcp:
        """The current profile for an id, following merges, and ids issued before a rebuild
        (through the identifier the id was made for)."""
        profile = repo.get_profile(hcp_id)
        if profile is None and (origin := repo.origin_of(hcp_id)) is not None:
            current = repo.profiles_of([origin]).get(origin)
            profile = repo.get_profile(current) if current else None
        seen = {hcp_id}
        while profile is not None and profile.merged_into is not None:
            if profile.merged_into in seen:
                break
            seen.add(profile.merged_into)
            profile = repo.get_profile(profile.merged_into)
        if profile is None:
            self._refuse_erased(f"hcp:{hcp_id}", "this HCP id", "hcp_id")
            raise no_such_hcp(hcp_id)
        return profile

    def get_hcp(self, hcp_id: str, *, viewer: Principal | None = None) -> dict[str, Any]:
        """The HCP 360: attributes, identifiers, affiliations, engagement, merge history.

        A ``viewer`` sees only HCPs in scope; medical interactions count in the engagement
        figures of a non-medical viewer only if they may see that such interactions happen.
        """
        include_medical = viewer is None or reads_medical_content(viewer) or self._medical_visible
        today = self._clock.now().date()
        with self._sessions() as session:
            repo = ProfileRepository(session)
            profile = self._live(repo, hcp_id)
            self._check_scope(profile, hcp_id, viewer)
            keys = sorted(repo.identities_of([profile.id]).get(profile.id, []))
            days, last, content = repo.engagement_of(keys, today - dt.timedelta(days=90))
            affiliations = repo.affiliations_of(keys)
            merges = repo.merges_of(profile.id)
        features = engagement_features(
            (DayCount(d.day, d.channel, d.action, d.function, d.count) for d in days),
            _latest_per_channel(LastEvent(x.channel, x.last_at, x.last_action) for x in last),
            (ContentCount(c.content_id, c.brand, c.count, c.last_at) for c in content),
            today,
            include_medical=include_medical,
        )
        return {
            "id": profile.id,
            "requested_id": hcp_id,
            "kind": profile.kind,
            "master_data": profile.master_data,
            "first_name": profile.first_name,
            "last_name": profile.last_name,
            "title": profile.title,
            "specialty": profile.specialty,
            "market": profile.market,
            "territory": profile.territory,
            "potential_decile": profile.potential_decile,
            "segments": profile.segments,
            "persona": profile.persona,
            "adoption_stage": profile.adoption_stage,
            "preferred_language": profile.preferred_language,
            "time_zone": profile.time_zone,
            "synthetic": profile.synthetic,
            "identifiers": [
                {"type": k.partition(":")[0], "value": k.partition(":")[2]} for k in keys
            ],
            "affiliations": [
                {
                    "hco_id": h.id,
                    "name": h.name,
                    "kind": h.kind,
                    "city": h.city,
                    "role": a.role,
                    "primary": a.primary,
                }
                for a, h in affiliations
            ],
            "engagement": features,
            "merges": [
                {
                    "kind": m.kind,
                    "survivor": m.survivor,
                    "other": m.other,
                    "identifiers": m.identifiers,
                    "at": m.at,
                }
                for m in merges
            ],
            "created_at": profile.created_at,
            "updated_at": profile.updated_at,
        }

    def timeline(
        self,
        hcp_id: str,
        *,
        channel: str | None,
        brand: str | None,
        function: str | None,
        before: tuple[dt.datetime, int] | None,
        limit: int,
        viewer: Principal | None = None,
    ) -> tuple[str, list[StoredEvent]]:
        """Events of the HCP, newest first. Without a medical role the content of medical
        interactions is removed (``redacted`` events), or the events are left out entirely
        when medical interactions are not shown to commercial roles."""
        medical = viewer is None or reads_medical_content(viewer)
        with self._sessions() as session:
            repo = ProfileRepository(session)
            profile = self._live(repo, hcp_id)
            self._check_scope(profile, hcp_id, viewer)
            keys = repo.identities_of([profile.id]).get(profile.id, [])
        hidden = None
        if not medical and not self._medical_visible:
            if function == Function.MEDICAL.value:
                return profile.id, []
            hidden = Function.MEDICAL.value
        query = TimelineQuery(
            keys,
            channel=channel,
            brand=brand,
            function=function,
            exclude_function=hidden,
            before=before,
            limit=limit,
        )
        items = self._log.timeline(query)
        if not medical:
            items = [redact_medical(i) for i in items]
        return profile.id, items

    # --- unmerge --------------------------------------------------------------------
    def unmerge(
        self, hcp_id: str, identifiers: list[str], reason: str, actor: Actor
    ) -> dict[str, Any]:
        """Split ``identifiers`` off an HCP: they (and their events, attributes and engagement)
        form their own record again, and resolution will never join the two groups."""
        reason = require_reason(reason, "an unmerge")
        keys = sorted({parse_user_id(i, field="identifiers").key for i in identifiers})
        with self._sessions() as session:
            repo = ProfileRepository(session)
            profile = self._live(repo, hcp_id)
            held = repo.identities_of([profile.id]).get(profile.id, [])
        strangers = [k for k in keys if k not in held]
        if not keys or strangers:
            raise ValidationFailedError(
                f"{strangers[0] if strangers else 'nothing'} is not an identifier of {profile.id}",
                field="identifiers",
                fix="name identifiers the HCP holds (GET /api/v1/hcps/{id} lists them)",
            )
        rest = sorted(set(held) - set(keys))
        if not rest:
            raise ValidationFailedError(
                "an unmerge must leave at least one identifier on the HCP",
                field="identifiers",
                fix="name only the identifiers that belong to the other person",
            )

        def audit(session: Session) -> None:
            self._audit.record(
                session,
                actor,
                "hcp.unmerge",
                "hcp",
                profile.id,
                before={"identifiers": [self._audit.pseudonym(k) for k in sorted(held)]},
                after={
                    "identifiers": [self._audit.pseudonym(k) for k in rest],
                    "separated": [self._audit.pseudonym(k) for k in keys],
                },
                reason=reason,
            )

        self._projector.separate(keys, rest, reason, actor.name, on_commit=audit)
        with self._sessions() as session:
            now_of = ProfileRepository(session).profiles_of([rest[0], keys[0]])
        return {"hcp": self.get_hcp(now_of[rest[0]]), "separated": self.get_hcp(now_of[keys[0]])}

    # --- imports --------------------------------------------------------------------
    def _validate_file(self, path: Path, kind: Kind, report: MasterDataReport) -> list[Any]:
        validate: Callable[..., Any]
        if kind == "hcps":

            def validate(row: Any, **kw: Any) -> Any:
                return validate_hcp_row(row, specialties=self._specialties, **kw)
        elif kind == "hcos":
            validate = validate_hco_row
        else:
            validate = validate_affiliation_row
        records: list[Any] = []
        rejected_rows: list[tuple[int, dict[str, object]]] = []
        columns: list[str] = []
        for chunk in read_chunks(path):
            columns = chunk.columns
            problems = check_columns(chunk.columns, kind, file=path.name)
            if problems:
                first = problems[0]
                raise ValidationFailedError(
                    "; ".join(f"{p.field}: {p.reason}" for p in problems),
                    field=first.field,
                    fix=first.fix,
                )
            for number, row in chunk.numbered():
                report.rows += 1
                result = validate(row, row_number=number, file=path.name)
                if not isinstance(result, list) and self._erased is not None:
                    result = self._erased_row(result, number, path.name)
                if isinstance(result, list):
                    report.rejected.extend(result)
                    rejected_rows.append((number, row))
                else:
                    records.append(result)
            for number, text in chunk.bad_lines:
                report.rows += 1
                report.rejected.append(
                    RowError(
                        path.name, number, "line", text[:200], "unreadable line", "fix the line"
                    )
                )
        if rejected_rows:
            report.reject_file = write_rejects(path, columns, rejected_rows, report.rejected)
        return records

    def _erased_row(self, record: Any, number: int, file: str) -> Any:
        """A row naming an erased person is rejected (their identifiers are fingerprinted)."""
        assert self._erased is not None
        if isinstance(record, HcpRecord):
            keys = [(i.type.value, i.key) for i in record.identifiers]
        elif isinstance(record, AffiliationRecord):
            keys = [("hcp", record.hcp.key)]
        else:
            return record
        for column, key in keys:
            if self._erased(key):
                return [
                    RowError(
                        file,
                        number,
                        column,
                        "",
                        "erased person",
                        "none: the person asked to be forgotten",
                    )
                ]
        return record

    def import_master_data(
        self,
        path: Path,
        kind: Kind,
        *,
        actor: Actor | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> MasterDataReport:
        """Validate the whole file, then import every valid row; rejects go to a reject file.

        HCP rows become master-data ``identify`` events (one append, then the profile
        consumer catches up), so identity resolution decides "new HCP or update" exactly as
        it does for events; an unchanged row is a duplicate and changes nothing.
        """
        report = MasterDataReport(file=str(path), kind=kind)
        records = self._validate_file(path, kind, report)
        now = self._clock.now()
        actor = actor or Actor.cli()
        if kind == "hcps":
            events = [_hcp_event(r, f"import:{path.name}", now) for r in records]
            for start in range(0, len(events), 100_000):
                part = events[start : start + 100_000]
                result = self._log.append(part)
                report.imported += result.accepted
                report.unchanged += result.duplicates
                if progress is not None:
                    progress(len(part))
            with self._sessions.begin() as session:
                self._audit_import(session, actor, path, report)
            self._projector.catch_up()
            return report
        with self._sessions.begin() as session:
            repo = ProfileRepository(session)
            if kind == "hcos":
                repo.upsert_hcos([_hco_row(r, now) for r in records])
            else:
                missing = {r.hco_id for r in records} - repo.known_hcos(r.hco_id for r in records)
                if missing:
                    raise ValidationFailedError(
                        f"{len(missing)} affiliations name unknown HCOs, "
                        f"e.g. {sorted(missing)[0]!r}",
                        field="hco_id",
                        fix="import the HCOs first (counterpoint import hcos FILE)",
                    )
                repo.upsert_affiliations([_affiliation_row(r) for r in records])
            report.imported = len(records)
            self._audit_import(session, actor, path, report)
        if progress is not None:
            progress(len(records))
        return report

    def _audit_import(
        self, session: Session, actor: Actor, path: Path, report: MasterDataReport
    ) -> None:
        self._audit.record(
            session,
            actor,
            f"master_data.import_{report.kind}",
            "file",
            path.name,
            after={
                "sha256": file_sha256(path),
                "rows": report.rows,
                "imported": report.imported,
                "unchanged": report.unchanged,
                "rejected": len(report.rejected),
            },
        )


def _latest_per_channel(items: Iterable[LastEvent]) -> list[LastEvent]:
    latest: dict[str, LastEvent] = {}
    for item in items:
        if item.channel not in latest or item.at > latest[item.channel].at:
            latest[item.channel] = item
    return list(latest.values())


def _hco_row(record: HcoRecord, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": record.hco_id,
        "name": record.name,
        "kind": record.kind,
        "market": record.market,
        "city": record.city,
        "synthetic": record.synthetic,
        "updated_at": now,
    }


def _affiliation_row(record: AffiliationRecord) -> dict[str, Any]:
    return {
        "identifier": record.hcp.key,
        "hco_id": record.hco_id,
        "role": record.role,
        "primary": record.primary,
        "synthetic": record.synthetic,
    }
