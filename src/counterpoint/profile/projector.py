"""The profile consumer of the event log: identities, profiles and engagement, by replay.

It reads the log after its checkpoint in chunks and, per chunk, in one transaction of the
operational store: creates profiles for identifiers seen for the first time, records identity
evidence and re-resolves the affected identity components (merges, splits), keeps the latest
attributes each source stated, adds engagement counts, and moves the checkpoint. A crash
means "resume from the checkpoint"; nothing is applied twice or lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.event.canonical import ENGAGEMENT_ACTIONS, Function
from counterpoint.event.consumer import LogConsumer
from counterpoint.event.log import EventLog
from counterpoint.kit.clock import Clock, utc
from counterpoint.kit.ids import stable_id
from counterpoint.profile.identity import (
    DEFAULT_POLICY,
    Assignment,
    Merge,
    Observation,
    ResolutionPolicy,
    Split,
    assign_alone,
    assign_profiles,
    identifier_rank,
    resolve,
)
from counterpoint.profile.merge import DEFAULT_STRATEGIES, AttributeValue, merge_attributes
from counterpoint.profile.repository import ProfileRepository, to_identifier
from counterpoint.profile.traits import trait_attributes, trait_identifiers

__all__ = ["ProfileProjector"]

_log = logging.getLogger(__name__)

NAME = "profile"
RETENTION_DAYS = 90
_ENGAGEMENT = sorted(a.value for a in ENGAGEMENT_ACTIONS)
_PROFILE_COLUMNS = (
    "first_name",
    "last_name",
    "title",
    "specialty",
    "market",
    "territory",
    "potential_decile",
    "segments",
    "persona",
    "adoption_stage",
    "preferred_language",
    "time_zone",
)


@dataclass
class _Chunk:
    """What one chunk of the log says about identities and attributes."""

    observations: list[tuple[str, list[str], dt.datetime, int, str]] = field(default_factory=list)
    attributes: list[dict[str, Any]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    synthetic: dict[str, bool] = field(default_factory=dict)


def _merge_row(
    kind: str, survivor: str, other: str, identifiers: list[str], now: dt.datetime
) -> dict[str, Any]:
    """A merge or split decided by identity resolution, for the merge record."""
    return {
        "kind": kind,
        "survivor": survivor,
        "other": other,
        "identifiers": identifiers,
        "reason": "identity resolution",
        "at": now,
        "by": "system",
    }


def _renamed(assignment: Assignment, renames: dict[str, str]) -> Assignment:
    def name(profile: str) -> str:
        return renames.get(profile, profile)

    return Assignment(
        profile_of={i: name(p) for i, p in assignment.profile_of.items()},
        merges=tuple(
            Merge(name(m.survivor), name(m.absorbed), m.identifiers_moved)
            for m in assignment.merges
        ),
        splits=tuple(
            Split(name(x.source), name(x.new_profile), x.identifiers_moved)
            for x in assignment.splits
        ),
        created=tuple(name(p) for p in assignment.created),
    )


def _maximal(
    observations: list[tuple[str, list[str], dt.datetime, int, str]],
) -> list[tuple[str, list[str], dt.datetime, int, str]]:
    """The observations whose identifiers are not a strict subset of another's in the list."""
    containing: dict[str, list[frozenset[str]]] = {}
    sets = [frozenset(o[1]) for o in observations]
    for key_set in sets:
        for key in key_set:
            containing.setdefault(key, []).append(key_set)
    return [
        o
        for o, key_set in zip(observations, sets, strict=True)
        if not any(key_set < other for other in containing[next(iter(key_set))])
    ]


def _split_components(
    observations: list[Observation],
) -> list[tuple[set[str], list[Observation]]]:
    """Group observations into connected components (shared identifiers link them)."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for observation in observations:
        keys = [i.key for i in observation.identifiers]
        for key in keys[1:]:
            a, b = find(keys[0]), find(key)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, tuple[set[str], list[Observation]]] = {}
    for observation in observations:
        keys = [i.key for i in observation.identifiers]
        group = groups.setdefault(find(keys[0]), (set(), []))
        group[0].update(keys)
        group[1].append(observation)
    return list(groups.values())


def _fingerprint(keys: list[str], source: str) -> str:
    """One piece of evidence: these identifiers, stated together by this kind of source. The
    same statement made again is the same evidence (its earliest sighting is kept)."""
    return hashlib.sha256(f"{source}|{'|'.join(keys)}".encode()).hexdigest()


def _read_chunk(table: pa.Table) -> _Chunk:
    """Identity evidence and attributes in a chunk; Python touches only the rows carrying them
    (identify, alias, and calls naming both a user and an anonymous id)."""
    chunk = _Chunk()
    subjects = table.group_by("subject").aggregate([("synthetic", "any")])
    chunk.keys.update(subjects.column("subject").to_pylist())
    chunk.synthetic.update(
        zip(
            subjects.column("subject").to_pylist(),
            subjects.column("synthetic_any").to_pylist(),
            strict=True,
        )
    )
    identity = pc.is_in(table.column("kind"), value_set=pa.array(["identify", "alias"]))
    linked_anon = pc.and_(
        pc.is_valid(table.column("anonymous_id")),
        pc.invert(pc.starts_with(table.column("subject"), "anon:")),
    )
    columns = ["seq", "kind", "subject", "anonymous_id", "occurred_at", "payload", "synthetic"]
    links = table.filter(pc.and_(linked_anon, pc.invert(identity))).select(columns)
    rows = pa.concat_tables([table.filter(identity).select(columns), _earliest_links(links)])
    cols = rows.sort_by("seq").to_pydict()
    for seq, kind_, subject, anon, at, payload, synthetic in zip(*cols.values(), strict=True):
        _read_row(chunk, seq, kind_, subject, anon, at, payload, bool(synthetic))
    earliest: dict[str, tuple[str, list[str], dt.datetime, int, str]] = {}
    for observation in chunk.observations:
        kept = earliest.get(observation[0])
        if kept is None or observation[2:4] < kept[2:4]:
            earliest[observation[0]] = observation
    chunk.observations = list(earliest.values())
    return chunk


def _earliest_links(links: pa.Table) -> pa.Table:
    """Of the calls naming both a user and an anonymous id, the earliest per pair (by
    ``occurred_at``, then ``seq``): every later one is the same evidence again. A visitor
    known by name sends that pair with each page view, so this leaves few rows to Python."""
    if links.num_rows < 2:
        return links
    ordered = links.take(
        pc.sort_indices(
            links,
            sort_keys=[
                ("subject", "ascending"),
                ("anonymous_id", "ascending"),
                ("occurred_at", "ascending"),
                ("seq", "ascending"),
            ],
        )
    )
    n = ordered.num_rows
    subject, anonymous = ordered.column("subject"), ordered.column("anonymous_id")
    repeated = pc.and_(
        pc.equal(subject.slice(1), subject.slice(0, n - 1)),
        pc.equal(anonymous.slice(1), anonymous.slice(0, n - 1)),
    )
    first = np.ones(n, dtype=np.bool_)
    first[1:] = ~np.asarray(repeated.to_numpy(zero_copy_only=False), dtype=np.bool_)
    return ordered.filter(pa.array(first))


def _read_row(
    chunk: _Chunk,
    seq: int,
    kind: str,
    subject: str,
    anon: str | None,
    at: dt.datetime,
    payload: str | None,
    synthetic: bool,
) -> None:
    linked: set[str] = set()
    if anon and not subject.startswith("anon:"):
        linked.add(f"anon:{anon}")
    # a page, screen or group call naming both ids states the link as a track call does
    source = kind if kind in ("identify", "alias") else "track"
    if kind in ("identify", "alias"):
        data = msgspec.json.decode(payload) if payload else {}
        traits = data.get("traits") or {}
        if isinstance(traits, dict):
            linked.update(i.key for i in trait_identifiers(traits))
            source = "master_data" if data.get("master_data") is True else "identify"
            chunk.attributes.extend(
                {
                    "identifier": subject,
                    "name": name,
                    "source": source,
                    "value": value,
                    "observed_at": at,
                    "seq": seq,
                }
                for name, value in trait_attributes(traits).items()
            )
        previous = data.get("previous_id")
        if kind == "alias" and isinstance(previous, str):
            linked.add(previous)
    if linked:
        keys = sorted({subject, *linked})
        chunk.keys.update(keys)
        for key in keys:
            chunk.synthetic.setdefault(key, synthetic)
        chunk.observations.append((_fingerprint(keys, source), keys, at, seq, source))


class ProfileProjector(LogConsumer):
    """Applies the event log to the customer record. One instance per process."""

    name = NAME

    def __init__(
        self,
        sessions: sessionmaker[Session],
        log: EventLog,
        clock: Clock,
        *,
        policy: ResolutionPolicy = DEFAULT_POLICY,
        chunk_size: int = 500_000,
    ) -> None:
        """``chunk_size``: the largest chunk of a replay or a catch-up. SQLite writes each page
        a transaction touched once, at commit, so fewer, larger transactions write less: a
        replay of 2M events took 43 s in chunks of 50,000, 33 s in chunks of 200,000 and
        28 s in chunks of 500,000, which cost 300 MB more memory than 200,000. While it
        shares the process, the consumer keeps its chunks short anyway."""
        super().__init__(sessions, log)
        self.chunk_size = chunk_size
        self._clock = clock
        self._policy = policy
        self._duck = duckdb.connect()

    def after_catch_up(self) -> None:
        with self._sessions.begin() as session:
            since = self._clock.now().date() - dt.timedelta(days=RETENTION_DAYS)
            ProfileRepository(session).prune_engagement(since)

    def reset(self, session: Session) -> None:
        ProfileRepository(session).clear_derived()

    def separate(
        self,
        keys: list[str],
        rest: list[str],
        reason: str,
        by: str,
        *,
        on_commit: Callable[[Session], None] | None = None,
    ) -> set[str]:
        """A manual unmerge: ``keys`` and ``rest`` may never share a profile again.

        Records the separation and re-resolves the component in the same transaction, under
        the consumer's lock (``on_commit`` adds to that transaction, e.g. the audit record);
        returns the profiles it touched."""
        now = self._clock.now()
        with self._lock, self._sessions.begin() as session:
            repo = ProfileRepository(session)
            repo.add_separation(sorted(keys), sorted(rest), reason, by, now)
            session.flush()
            touched = self._resolve_components(repo, set(keys) | set(rest), {}, _Chunk(), now)
            for merge_row in repo.splits_recorded_since(now):
                merge_row.reason = reason
                merge_row.by = by
            self._refresh_attributes(repo, touched, now)
            if on_commit is not None:
                on_commit(session)
        return touched

    # --- applying one chunk ---------------------------------------------------------
    def apply(self, session: Session, table: pa.Table) -> None:
        repo = ProfileRepository(session)
        now = self._clock.now()
        chunk = _read_chunk(table)
        known = repo.profiles_of(chunk.keys)
        observed = {k for _, keys, *_ in chunk.observations for k in keys}
        self._create_singletons(repo, chunk, known, observed, now)
        repo.add_observations(chunk.observations)
        touched = self._resolve(repo, chunk, known, now)
        repo.add_attribute_observations(chunk.attributes)
        touched.update(repo.profiles_of(a["identifier"] for a in chunk.attributes).values())
        self._refresh_attributes(repo, touched, now)
        self._add_engagement(repo, table)

    def _create_singletons(
        self,
        repo: ProfileRepository,
        chunk: _Chunk,
        known: dict[str, str],
        observed: set[str],
        now: dt.datetime,
    ) -> None:
        """Identifiers seen for the first time and linked to nothing get a profile each."""
        new = sorted(k for k in chunk.keys if k not in known and k not in observed)
        profiles = [self._profile_row(stable_id("hcp", k), [k], chunk, now) for k in new]
        repo.insert_profiles(profiles)
        repo.add_origins([(p["id"], k) for k, p in zip(new, profiles, strict=True)], now)
        repo.set_identities(
            [
                {"key": k, "type": k.partition(":")[0], "hcp_id": p["id"], "first_seen": now}
                for k, p in zip(new, profiles, strict=True)
            ]
        )
        known.update({k: p["id"] for k, p in zip(new, profiles, strict=True)})

    def _profile_row(
        self, hcp_id: str, keys: Iterable[str], chunk: _Chunk, now: dt.datetime
    ) -> dict[str, Any]:
        keys = list(keys)
        anonymous = all(k.startswith("anon:") for k in keys)
        return {
            "id": hcp_id,
            "kind": "anonymous" if anonymous else "hcp",
            "master_data": False,
            "segments": [],
            "adoption_stage": {},
            "synthetic": any(chunk.synthetic.get(k, False) for k in keys),
            "merged_into": None,
            "created_at": now,
            "updated_at": now,
        }

    def _resolve(
        self, repo: ProfileRepository, chunk: _Chunk, known: dict[str, str], now: dt.datetime
    ) -> set[str]:
        """Re-resolve every identity component this chunk's observations touch.

        An observation whose identifiers are all new and seen nowhere else in the chunk is its
        own component: it is resolved in memory and applied in bulk with its like; identifiers
        joining one existing profile attach to it (``_attach_new``). Every other observation
        loads its whole component (evidence and separations) from the store.
        """
        # The same identifiers seen together again (every later visit of an identified user)
        # is the same evidence: it links nothing new, so each set is considered once.
        ordered = []
        seen_sets: set[frozenset[str]] = set()
        for observation in sorted(chunk.observations, key=lambda o: o[3]):
            key_set = frozenset(observation[1])
            if key_set not in seen_sets:
                seen_sets.add(key_set)
                ordered.append(observation)
        maximal = _maximal(ordered)
        uses = Counter(k for _, keys, *_ in maximal for k in keys)
        separated = repo.separated(uses)
        simple = [o for o in maximal if separated.isdisjoint(o[1])]
        alone = [o for o in simple if all(k not in known and uses[k] == 1 for k in o[1])]
        fresh = [
            assign_alone(frozenset(map(to_identifier, keys)), self._policy) for _, keys, *_ in alone
        ]
        touched = self._apply_assignments(repo, fresh, {}, chunk, now)
        for assignment in fresh:
            known.update({i.key: p for i, p in assignment.profile_of.items()})
        done: set[str] = {k for o in alone for k in o[1]}
        handled: set[str] = set()
        touched |= self._attach_new(repo, simple, known, uses, done, handled, now)
        settled = self._settled(repo, ordered, known)
        seeds = {
            k
            for f, keys, *_ in ordered
            if f not in handled and f not in settled and not done.issuperset(keys)
            for k in keys
        }
        if seeds:
            touched |= self._resolve_components(repo, seeds, known, chunk, now)
        return touched

    def _settled(
        self,
        repo: ProfileRepository,
        ordered: list[tuple[str, list[str], dt.datetime, int, str]],
        known: dict[str, str],
    ) -> set[str]:
        """Observations that link nothing new: every identifier already belongs to one profile,
        which is within the limits, and none is blocked (full resolution would keep it so)."""
        together = {
            f: known[keys[0]]
            for f, keys, *_ in ordered
            if all(k in known for k in keys)
            and len({known[k] for k in keys}) == 1
            and not any(self._policy.blocked_reason(to_identifier(k)) for k in keys)
        }
        held = repo.identities_of(set(together.values()))
        return {f for f, p in together.items() if self._may_attach(held.get(p, []), [])}

    def _resolve_components(
        self,
        repo: ProfileRepository,
        seeds: set[str],
        known: dict[str, str],
        chunk: _Chunk,
        now: dt.datetime,
    ) -> set[str]:
        """Full resolution of every component the seeds belong to, loaded in one walk."""
        keys, observations = repo.component(seeds)
        current = repo.profiles_of(keys)
        separations = repo.separations(keys)
        ranks = repo.ranks(set(current.values()))
        assignments: list[Assignment] = []
        for group, evidence in _split_components(observations):
            mine = {k: current[k] for k in group if k in current}
            resolution = resolve(
                evidence,
                self._policy,
                [x for x in separations if any(i.key in group for i in x.left | x.right)],
            )
            assignments.append(
                assign_profiles(
                    resolution,
                    {to_identifier(k): p for k, p in mine.items()},
                    {p: ranks[p] for p in set(mine.values())},
                )
            )
        touched = self._apply_assignments(repo, assignments, current, chunk, now)
        for assignment in assignments:
            known.update({i.key: p for i, p in assignment.profile_of.items()})
        return touched

    def _attach_new(
        self,
        repo: ProfileRepository,
        ordered: list[tuple[str, list[str], dt.datetime, int, str]],
        known: dict[str, str],
        uses: Counter[str],
        done: set[str],
        handled: set[str],
        now: dt.datetime,
    ) -> set[str]:
        """New identifiers observed with one existing profile's identifiers join that profile;
        so do anonymous visitors never linked before (their profile merges into it).

        Exactly what full resolution would decide, as long as no guard can bind: the joining
        identifiers appear in no other evidence, no identifier of the observation is blocked or
        named by a separation (the caller passes only such observations), the profile stays
        within the per-type limits with a single NPI, and it outranks every visitor profile it
        absorbs (master data, then age). Any other case is left to full resolution.
        """
        pending = [
            (f, keys)
            for f, keys, *_ in ordered
            if not done.issuperset(keys)
            and not any(self._policy.blocked_reason(to_identifier(k)) for k in keys)
        ]
        anon = {k for _, keys in pending for k in keys if k in known and k.startswith("anon:")}
        stored = repo.observation_counts(anon)
        held = repo.identities_of({known[k] for _, keys in pending for k in keys if k in known})
        fresh = {k for k in anon if uses[k] == 1 and stored[k] == 1 and held.get(known[k]) == [k]}
        candidates: list[tuple[str, str, list[str], list[str]]] = []
        for fingerprint, keys in pending:
            joining = [k for k in keys if k not in known or k in fresh]
            profiles = {known[k] for k in keys if k in known and k not in fresh}
            absorbed = sorted({known[k] for k in joining if k in fresh})
            if len(profiles) == 1 and joining and all(uses[k] == 1 for k in joining):
                candidates.append((fingerprint, profiles.pop(), joining, absorbed))
        if not candidates:
            return set()
        ranks = repo.ranks({p for _, p, _, a in candidates for p in [p, *a]})
        attached: list[dict[str, Any]] = []
        merged: list[tuple[str, str, list[str]]] = []
        touched: set[str] = set()
        for fingerprint, profile, joining, absorbed in candidates:
            keys = held.get(profile, [])
            first = ranks[profile].sort_key()
            if not self._may_attach(keys, joining) or any(
                ranks[a].sort_key() <= first for a in absorbed
            ):
                continue
            held[profile] = keys + joining
            touched.add(profile)
            done.update(joining)
            handled.add(fingerprint)
            for key in joining:
                if key in fresh:
                    merged.append((known[key], profile, [key]))
                known[key] = profile
                attached.append(
                    {
                        "key": key,
                        "type": key.partition(":")[0],
                        "hcp_id": profile,
                        "first_seen": now,
                    }
                )
        repo.set_identities(attached)
        repo.mark_merged([(a, p) for a, p, _ in merged], now)
        for absorbed_id, survivor, moved in merged:
            repo.record_merge(_merge_row("merge", survivor, absorbed_id, moved, now))
        return touched | {a for a, _, _ in merged}

    def _may_attach(self, held: list[str], new: list[str]) -> bool:
        counts = Counter(k.partition(":")[0] for k in held + new)
        limits = self._policy.max_per_type
        return all(counts[t.value] <= n for t, n in limits.items()) and counts["npi"] <= 1

    def _reuse_issued_ids(
        self, repo: ProfileRepository, assignments: list[Assignment]
    ) -> list[Assignment]:
        """A cluster that needs a new profile takes the oldest id ever issued for one of its
        identifiers, when no live profile holds it: so a replay gives people the ids they had."""
        created = {p for a in assignments for p in a.created}
        if not created:
            return assignments
        members: dict[str, list[str]] = {}
        for a in assignments:
            for identifier, profile in a.profile_of.items():
                if profile in created:
                    members.setdefault(profile, []).append(identifier.key)
        issued = repo.issued_for(k for keys in members.values() for k in keys)
        live = set(repo.identities_of({h for pairs in issued.values() for _, h in pairs}))
        renames: dict[str, str] = {}
        for profile in sorted(created):
            options = sorted(pair for k in members.get(profile, []) for pair in issued.get(k, []))
            free = [h for _, h in options if h not in live and h not in renames.values()]
            if free and free[0] != profile:
                renames[profile] = free[0]
        return [_renamed(a, renames) for a in assignments] if renames else assignments

    def _apply_assignments(
        self,
        repo: ProfileRepository,
        assignments: list[Assignment],
        current: dict[str, str],
        chunk: _Chunk,
        now: dt.datetime,
    ) -> set[str]:
        if not assignments:
            return set()
        assignments = self._reuse_issued_ids(repo, assignments)
        by_profile: dict[str, list[str]] = {}
        for assignment in assignments:
            for identifier, profile in assignment.profile_of.items():
                by_profile.setdefault(profile, []).append(identifier.key)
        created = {p for a in assignments for p in a.created}
        revived = created & repo.existing_profiles(created)
        repo.insert_profiles(
            [self._profile_row(p, by_profile[p], chunk, now) for p in sorted(created - revived)]
        )
        repo.add_origins(
            [(p, min(map(to_identifier, by_profile[p]), key=identifier_rank).key) for p in created],
            now,
        )
        repo.revive(revived, now)
        changed = [
            {"key": i.key, "type": i.type.value, "hcp_id": p, "first_seen": now}
            for a in assignments
            for i, p in a.profile_of.items()
            if current.get(i.key) != p
        ]
        repo.set_identities(changed)
        merges = [m for a in assignments for m in a.merges]
        repo.mark_merged([(m.absorbed, m.survivor) for m in merges], now)
        for merge in merges:
            repo.record_merge(
                _merge_row(
                    "merge",
                    merge.survivor,
                    merge.absorbed,
                    sorted(i.key for i in merge.identifiers_moved),
                    now,
                )
            )
        for split in (sp for a in assignments for sp in a.splits):
            repo.record_merge(
                _merge_row(
                    "split",
                    split.source,
                    split.new_profile,
                    sorted(i.key for i in split.identifiers_moved),
                    now,
                )
            )
        return set(by_profile) | {m.absorbed for m in merges}

    def _refresh_attributes(
        self, repo: ProfileRepository, hcp_ids: set[str], now: dt.datetime
    ) -> None:
        """Recompute each touched profile's attributes from every identifier it holds."""
        if not hcp_ids:
            return
        keys_of = repo.identities_of(hcp_ids)
        values = repo.attribute_values(k for keys in keys_of.values() for k in keys)
        updates: list[dict[str, Any]] = []
        for hcp_id in sorted(hcp_ids):
            keys = keys_of.get(hcp_id, [])
            stated: list[AttributeValue] = [v for k in keys for v in values.get(k, [])]
            merged = merge_attributes(stated, DEFAULT_STRATEGIES)
            row: dict[str, Any] = {c: merged.get(c) for c in _PROFILE_COLUMNS}
            row["segments"] = row["segments"] or []
            row["adoption_stage"] = row["adoption_stage"] or {}
            row["id"] = hcp_id
            row["master_data"] = any(v.source == "master_data" for v in stated)
            row["kind"] = (
                "anonymous" if keys and all(k.startswith("anon:") for k in keys) else "hcp"
            )
            row["updated_at"] = now
            updates.append(row)
        repo.update_profiles(updates)

    def _add_engagement(self, repo: ProfileRepository, table: pa.Table) -> None:
        """Aggregate the chunk in DuckDB (in memory), then add the sums to the store.

        Daily counts are kept only for the last ``RETENTION_DAYS`` (the features look back
        at most that far); "last" and content aggregates cover the whole history. For SQLite,
        DuckDB formats times the way SQLite stores them, so Python converts nothing.
        """
        since = self._clock.now().date() - dt.timedelta(days=RETENTION_DAYS)
        as_text = repo.session.get_bind().dialect.name == "sqlite"
        day = "CAST(timezone('UTC', occurred_at) AS DATE)"
        latest = "timezone('UTC', max(occurred_at))"
        if as_text:
            day_out = f"strftime({day}, '%Y-%m-%d')"
            latest = f"strftime({latest}, '%Y-%m-%d %H:%M:%S.%f')"
        else:
            day_out = day
        con = self._duck
        con.register("chunk", table)
        try:
            days = con.execute(
                f"SELECT subject, {day_out}, channel, action, coalesce(function, ?), count(*) "
                "FROM chunk WHERE channel IS NOT NULL AND action IS NOT NULL "
                f"AND {day} >= ? GROUP BY ALL ORDER BY ALL",
                [Function.COMMERCIAL.value, since],
            ).fetchall()
            last = con.execute(
                f"SELECT subject, channel, {latest}, arg_max(action, occurred_at) "
                "FROM chunk WHERE channel IS NOT NULL AND action IS NOT NULL GROUP BY ALL "
                "ORDER BY 1, 2"
            ).fetchall()
            content = con.execute(
                f"SELECT subject, content_id, any_value(brand), count(*), {latest} "
                "FROM chunk WHERE content_id IS NOT NULL AND list_contains(?, action) "
                "GROUP BY ALL ORDER BY 1, 2",
                [_ENGAGEMENT],
            ).fetchall()
        finally:
            con.unregister("chunk")
        if not as_text:
            last = [(i, c, utc(t), a) for i, c, t, a in last]
            content = [(i, c, b, n, utc(t)) for i, c, b, n, t in content]
        repo.add_engagement(days, last, content)
