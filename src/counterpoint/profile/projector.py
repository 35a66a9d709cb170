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
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.event.canonical import ENGAGEMENT_ACTIONS, Function
from counterpoint.event.log import EventLog
from counterpoint.event.models import ConsumerCheckpoint
from counterpoint.kit.clock import Clock, utc
from counterpoint.kit.db import upsert
from counterpoint.kit.ids import stable_id
from counterpoint.profile.identity import (
    DEFAULT_POLICY,
    Assignment,
    ResolutionPolicy,
    assign_profiles,
    resolve,
)
from counterpoint.profile.merge import DEFAULT_STRATEGIES, AttributeValue, merge_attributes
from counterpoint.profile.repository import ProfileRepository, to_identifier
from counterpoint.profile.traits import trait_attributes, trait_identifiers

__all__ = ["ProfileProjector"]

_log = logging.getLogger(__name__)

NAME = "profile"
RETENTION_DAYS = 400
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


def _fingerprint(keys: list[str], seq: int, source: str) -> str:
    return hashlib.sha1(f"{seq}|{source}|{'|'.join(keys)}".encode()).hexdigest()  # noqa: S324


def _read_chunk(table: pa.Table) -> _Chunk:
    chunk = _Chunk()
    cols = table.select(
        ["seq", "kind", "subject", "anonymous_id", "occurred_at", "payload", "synthetic"]
    ).to_pydict()
    for seq, kind, subject, anon, at, payload, synthetic in zip(*cols.values(), strict=True):
        chunk.keys.add(subject)
        chunk.synthetic.setdefault(subject, bool(synthetic))
        linked: set[str] = set()
        if anon and not subject.startswith("anon:"):
            linked.add(f"anon:{anon}")
        source = kind
        if kind in ("identify", "alias"):
            data = msgspec.json.decode(payload) if payload else {}
            traits = data.get("traits") or {}
            if isinstance(traits, dict):
                linked.update(i.key for i in trait_identifiers(traits))
                source = "master_data" if data.get("master_data") is True else "identify"
                for name, value in trait_attributes(traits).items():
                    chunk.attributes.append(
                        {
                            "identifier": subject,
                            "name": name,
                            "source": source,
                            "value": value,
                            "observed_at": at,
                            "seq": seq,
                        }
                    )
            previous = data.get("previous_id")
            if kind == "alias" and isinstance(previous, str):
                linked.add(previous)
        if linked:
            keys = sorted({subject, *linked})
            chunk.keys.update(keys)
            for key in keys:
                chunk.synthetic.setdefault(key, bool(synthetic))
            chunk.observations.append((_fingerprint(keys, seq, source), keys, at, seq, source))
    return chunk


class ProfileProjector:
    """Applies the event log to the customer record. One instance per process."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        log: EventLog,
        clock: Clock,
        *,
        policy: ResolutionPolicy = DEFAULT_POLICY,
        chunk_size: int = 50_000,
    ) -> None:
        self._sessions = sessions
        self._log = log
        self._clock = clock
        self._policy = policy
        self._chunk_size = chunk_size
        self._lock = threading.Lock()
        self._duck = duckdb.connect()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- running --------------------------------------------------------------------
    def position(self) -> int:
        with self._sessions() as session:
            row = session.get(ConsumerCheckpoint, NAME)
            return row.position if row else 0

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Apply every event after the checkpoint; returns how many were applied."""
        applied = 0
        with self._lock:
            while True:
                with self._sessions.begin() as session:
                    position = self._checkpoint(session)
                    table = self._log.read_after(position, self._chunk_size)
                    if table.num_rows == 0:
                        break
                    self.apply(session, table)
                    last = int(table.column("seq")[-1].as_py())
                    session.merge(ConsumerCheckpoint(name=NAME, position=last))
                applied += table.num_rows
                if progress is not None:
                    progress(table.num_rows)
        return applied

    def wake(self, _position: int = 0) -> None:
        self._wake.set()

    def start(self) -> None:
        """Follow the log in a background thread, woken after each commit."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._follow, name="profile-projector", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None

    def _follow(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            try:
                self.catch_up()
            except Exception:  # logged; retried on the next wake
                _log.exception("profile projector failed; will retry")
                self._stop.wait(1.0)

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Forget all derived state and replay the whole log."""
        with self._lock, self._sessions.begin() as session:
            ProfileRepository(session).clear_derived()
            session.merge(ConsumerCheckpoint(name=NAME, position=0))
        return self.catch_up(progress)

    def _checkpoint(self, session: Session) -> int:
        row = session.execute(
            select(ConsumerCheckpoint).where(ConsumerCheckpoint.name == NAME).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            upsert(
                session,
                ConsumerCheckpoint.__table__,
                [{"name": NAME, "position": 0}],
                keys=["name"],
            )
            return 0
        return row.position

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
        """Re-resolve every identity component this chunk's observations touch."""
        touched: set[str] = set()
        done: set[str] = set()
        for _, keys, *_ in sorted(chunk.observations, key=lambda o: o[3]):
            if done.issuperset(keys):
                continue
            component, observations = repo.component(keys)
            done |= component
            current = repo.profiles_of(component)
            separations = repo.separations(component)
            resolution = resolve(observations, self._policy, separations)
            ranks = repo.ranks(set(current.values()))
            assignment = assign_profiles(
                resolution, {to_identifier(k): p for k, p in current.items()}, ranks
            )
            touched |= self._apply_assignment(repo, assignment, current, chunk, now)
            known.update({i.key: p for i, p in assignment.profile_of.items()})
        return touched

    def _apply_assignment(
        self,
        repo: ProfileRepository,
        assignment: Assignment,
        current: dict[str, str],
        chunk: _Chunk,
        now: dt.datetime,
    ) -> set[str]:
        by_profile: dict[str, list[str]] = {}
        for identifier, profile in assignment.profile_of.items():
            by_profile.setdefault(profile, []).append(identifier.key)
        created = set(assignment.created)
        revived = created & repo.existing_profiles(created)
        repo.insert_profiles(
            [self._profile_row(p, by_profile[p], chunk, now) for p in sorted(created - revived)]
        )
        repo.revive(revived, now)
        changed = [
            {"key": i.key, "type": i.type.value, "hcp_id": p, "first_seen": now}
            for i, p in assignment.profile_of.items()
            if current.get(i.key) != p
        ]
        repo.set_identities(changed)
        for merge in assignment.merges:
            repo.mark_merged(merge.absorbed, merge.survivor, now)
            repo.record_merge(
                {
                    "kind": "merge",
                    "survivor": merge.survivor,
                    "other": merge.absorbed,
                    "identifiers": sorted(i.key for i in merge.identifiers_moved),
                    "reason": "identity resolution",
                    "at": now,
                    "by": "system",
                }
            )
        for split in assignment.splits:
            repo.record_merge(
                {
                    "kind": "split",
                    "survivor": split.source,
                    "other": split.new_profile,
                    "identifiers": sorted(i.key for i in split.identifiers_moved),
                    "reason": "identity resolution",
                    "at": now,
                    "by": "system",
                }
            )
        return set(by_profile) | {m.absorbed for m in assignment.merges}

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
        con = self._duck
        con.register("chunk", table)
        try:
            days = con.execute(
                "SELECT subject AS identifier, CAST(timezone('UTC', occurred_at) AS DATE) AS day, "
                "channel, action, coalesce(function, ?) AS function, count(*) AS count "
                "FROM chunk WHERE channel IS NOT NULL AND action IS NOT NULL GROUP BY ALL",
                [Function.COMMERCIAL.value],
            ).fetchall()
            last = con.execute(
                "SELECT subject, channel, timezone('UTC', max(occurred_at)), "
                "arg_max(action, occurred_at) "
                "FROM chunk WHERE channel IS NOT NULL AND action IS NOT NULL GROUP BY ALL"
            ).fetchall()
            content = con.execute(
                "SELECT subject, content_id, any_value(brand), count(*), "
                "timezone('UTC', max(occurred_at)) "
                "FROM chunk WHERE content_id IS NOT NULL AND list_contains(?, action) "
                "GROUP BY ALL",
                [_ENGAGEMENT],
            ).fetchall()
        finally:
            con.unregister("chunk")
        repo.add_engagement(
            [
                {"identifier": i, "day": d, "channel": c, "action": a, "function": f, "count": n}
                for i, d, c, a, f, n in days
            ],
            [
                {"identifier": i, "channel": c, "last_at": utc(at), "last_action": a}
                for i, c, at, a in last
            ],
            [
                {"identifier": i, "content_id": c, "brand": b, "count": n, "last_at": utc(at)}
                for i, c, b, n, at in content
            ],
        )
