"""The projector's fast paths (in-memory resolution of new identifiers, attaching new
identifiers to one existing profile) must decide exactly what full resolution decides.

Random streams of identify calls, applied in random chunk sizes through the real projector,
end with the same partition of identifiers as the pure resolver over all the evidence.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from counterpoint.container import open_container
from counterpoint.event.canonical import EventKind, LogEvent
from counterpoint.kit.clock import FixedClock
from counterpoint.profile.identity import Observation, resolve
from counterpoint.profile.models import Identity
from counterpoint.profile.repository import to_identifier
from counterpoint.settings import Settings

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
NPIS = ["1234567893", "1245319599", "1003000126"]
POOL = (
    [f"npi:{n}" for n in NPIS]
    + [f"crm:C-{i}" for i in range(4)]
    + ["email:a@x.example", "email:b@x.example", "email:info@clinic.example"]
    + [f"anon:w{i}" for i in range(4)]
)
TRAIT = {"npi": "npi", "crm": "crm_id", "email": "email"}

observation = st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True)


def _carried(keys: list[str]) -> list[str]:
    """The identifiers one identify call can carry: a subject, one anonymous id (when the
    subject is known), and one trait per identifier type."""
    subject, *others = keys
    carried, seen = [subject], {subject.partition(":")[0]}
    for key in others:
        kind = key.partition(":")[0]
        if kind in seen or (kind == "anon" and subject.startswith("anon:")):
            continue
        seen.add(kind)
        carried.append(key)
    return carried


def _event(n: int, keys: list[str]) -> LogEvent:
    subject, *others = keys
    traits: dict[str, str] = {}
    anonymous_id = None
    for key in others:
        kind, _, value = key.partition(":")
        if kind == "anon":
            anonymous_id = value
        else:
            traits[TRAIT[kind]] = value
    at = NOW - dt.timedelta(hours=100 - n)
    return LogEvent(
        message_id=f"p-{n}",
        kind=EventKind.IDENTIFY,
        subject=subject,
        occurred_at=at,
        received_at=at,
        source="test",
        anonymous_id=anonymous_id if not subject.startswith("anon:") else None,
        payload={"traits": traits},
    )


def _partition(groups: list[set[str]]) -> set[frozenset[str]]:
    return {frozenset(g) for g in groups if g}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=st.lists(observation, min_size=1, max_size=12),
    cuts=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=12),
)
def test_incremental_projection_equals_full_resolution(
    stream: list[list[str]], cuts: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        built = open_container(Settings(data_dir=Path(tmp)), clock=FixedClock(NOW))
        try:
            stream = [_carried(keys) for keys in stream]
            events = [_event(n, keys) for n, keys in enumerate(stream)]
            start = 0
            for cut in cuts * len(events):
                if start >= len(events):
                    break
                built.log.append(events[start : start + cut])
                built.projector.catch_up()
                start += cut
            with built.sessions() as session:
                rows = session.execute(select(Identity.key, Identity.hcp_id)).all()
            by_profile: dict[str, set[str]] = {}
            for key, hcp_id in rows:
                by_profile.setdefault(hcp_id, set()).add(key)
            evidence = []
            for n, keys in enumerate(stream):
                evidence.append(
                    Observation(
                        frozenset(map(to_identifier, keys)),
                        NOW - dt.timedelta(hours=100 - n),
                        n + 1,
                        "identify",
                    )
                )
            expected = resolve(evidence)
            assert _partition(list(by_profile.values())) == _partition(
                [{i.key for i in c} for c in expected.clusters]
            )
        finally:
            built.close()


def _visit(n: int, anon: str, hours_ago: int) -> LogEvent:
    at = NOW - dt.timedelta(hours=hours_ago)
    return LogEvent(
        message_id=f"v-{n}",
        kind=EventKind.PAGE,
        subject=f"anon:{anon}",
        occurred_at=at,
        received_at=at,
        source="test",
    )


def _link(n: int, hours_ago: int) -> LogEvent:
    at = NOW - dt.timedelta(hours=hours_ago)
    return LogEvent(
        message_id=f"l-{n}",
        kind=EventKind.IDENTIFY,
        subject=f"npi:{NPIS[0]}",
        occurred_at=at,
        received_at=at,
        source="test",
        anonymous_id="tab",
        payload={"traits": {}},
    )


def _survivor_after(first: LogEvent, second: LogEvent) -> tuple[str, str, str]:
    """Apply first, then second (each in its own chunk, the clock moving), then the link."""
    with tempfile.TemporaryDirectory() as tmp:
        clock = FixedClock(NOW)
        built = open_container(Settings(data_dir=Path(tmp)), clock=clock)
        try:
            ids = []
            for event in (first, second):
                built.log.append([event])
                built.projector.catch_up()
                ids.append(built.profiles.get_by_identifier(event.subject)["id"])
                clock.advance(dt.timedelta(minutes=1))
            built.log.append([_link(9, 1)])
            built.projector.catch_up()
            survivor = built.profiles.get_by_identifier(f"npi:{NPIS[0]}")["id"]
            assert built.profiles.get_by_identifier("anon:tab")["id"] == survivor
            return ids[0], ids[1], survivor
        finally:
            built.close()


def test_an_older_hcp_absorbs_a_new_visitor() -> None:
    hcp, _visitor, survivor = _survivor_after(
        LogEvent(
            message_id="npi-first",
            kind=EventKind.IDENTIFY,
            subject=f"npi:{NPIS[0]}",
            occurred_at=NOW - dt.timedelta(hours=5),
            received_at=NOW - dt.timedelta(hours=5),
            source="test",
            payload={"traits": {}},
        ),
        _visit(1, "tab", 3),
    )
    assert survivor == hcp


def test_an_older_visitor_keeps_its_profile_as_full_resolution_decides() -> None:
    visitor, _hcp, survivor = _survivor_after(
        _visit(1, "tab", 5),
        LogEvent(
            message_id="npi-later",
            kind=EventKind.IDENTIFY,
            subject=f"npi:{NPIS[0]}",
            occurred_at=NOW - dt.timedelta(hours=3),
            received_at=NOW - dt.timedelta(hours=3),
            source="test",
            payload={"traits": {}},
        ),
    )
    assert survivor == visitor
