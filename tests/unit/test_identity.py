"""Identity resolution: order independence, replay, incremental = batch, guards, examples."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterpoint.kit.ids import stable_id
from counterpoint.profile.identifiers import Identifier, IdentifierType, npi_is_valid
from counterpoint.profile.identity import (
    DEFAULT_POLICY,
    OBSERVATION_SOURCES,
    REASON_CODES,
    Merge,
    Observation,
    ProfileRank,
    RefusedLink,
    Resolution,
    ResolutionPolicy,
    Separation,
    Split,
    assign_alone,
    assign_profiles,
    component_of,
    resolve,
)

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
TIMES = [T0 + dt.timedelta(minutes=m) for m in range(4)]


def make_npi(body: str) -> str:
    return next(body + d for d in "0123456789" if npi_is_valid(body + d))


def ident(key: str) -> Identifier:
    kind, _, value = key.partition(":")
    return Identifier(IdentifierType(kind), value)


def obs(*keys: str, at: int = 0, seq: int = 0, source: str = "identify") -> Observation:
    return Observation(frozenset(map(ident, keys)), TIMES[at], seq, source)


NPI_A, NPI_B, NPI_C = (f"npi:{make_npi(b)}" for b in ("123456789", "198765432", "155555555"))
POOL = [
    ident(k)
    for k in (
        NPI_A, NPI_B, NPI_C,
        "national:FR-1", "national:FR-2", "national:DE-1",
        "vendor:W1", "vendor:W2",
        "crm:A-1", "crm:A-2", "crm:A-3", "crm:A-4",
        "email:jane@a.example", "email:john@b.example", "email:doc@c.example",
        "email:info@x.example", "email:praxis2@y.example", "email:contact-1@z.example",
        "phone:+14155550100", "phone:+14155550101",
        "anon:a1", "anon:a2", "anon:a3", "anon:a4", "anon:undefined",
    )
]  # fmt: skip
TIGHT_POLICY = ResolutionPolicy(
    max_per_type=dict.fromkeys(IdentifierType, 1)
    | {IdentifierType.EMAIL: 2, IdentifierType.ANON: 2}
)
OPEN_POLICY = ResolutionPolicy(
    blocked_emails=frozenset(),
    blocked_values=frozenset(),
    max_per_type=dict.fromkeys(IdentifierType, 10**6),
)

observations_st = st.lists(
    st.builds(
        Observation,
        identifiers=st.frozensets(st.sampled_from(POOL), min_size=1, max_size=4),
        observed_at=st.sampled_from(TIMES),
        seq=st.integers(0, 3),
        source=st.sampled_from(sorted(OBSERVATION_SOURCES)),
    ),
    max_size=14,
)


@st.composite
def separations_st(draw: st.DrawFn) -> list[Separation]:
    result = []
    for _ in range(draw(st.integers(0, 2))):
        members = sorted(draw(st.frozensets(st.sampled_from(POOL), min_size=2, max_size=5)))
        cut = draw(st.integers(1, len(members) - 1))
        result.append(Separation(frozenset(members[:cut]), frozenset(members[cut:]), "manual"))
    return result


policies_st = st.sampled_from([DEFAULT_POLICY, TIGHT_POLICY])


def partition(resolution: Resolution) -> set[frozenset[Identifier]]:
    return set(resolution.clusters)


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(observations_st, separations_st(), policies_st, st.data())
def test_resolve_ignores_input_order(
    observations: list[Observation],
    separations: list[Separation],
    policy: ResolutionPolicy,
    data: st.DataObject,
) -> None:
    shuffled = data.draw(st.permutations(observations))
    expected = resolve(observations, policy, separations)
    got = resolve(shuffled, policy, reversed(separations))
    assert got == expected
    assert dict(got.cluster_of) == dict(expected.cluster_of)


@settings(max_examples=100, deadline=None)
@given(observations_st, separations_st(), policies_st)
def test_replay_is_idempotent(
    observations: list[Observation], separations: list[Separation], policy: ResolutionPolicy
) -> None:
    once = resolve(observations, policy, separations)
    assert resolve(observations + observations, policy, separations + separations) == once


@settings(max_examples=150, deadline=None)
@given(observations_st, separations_st(), policies_st)
def test_invariants_hold(
    observations: list[Observation], separations: list[Separation], policy: ResolutionPolicy
) -> None:
    result = resolve(observations, policy, separations)
    everyone = [i for o in observations for i in o.identifiers]
    flat = [i for c in result.clusters for i in c]
    assert len(flat) == len(set(flat)) == len(set(everyone))
    assert set(flat) == set(everyone)
    for position, cluster in enumerate(result.clusters):
        counts = Counter(i.type for i in cluster)
        assert counts[IdentifierType.NPI] <= 1
        assert all(counts[t] <= n for t, n in policy.max_per_type.items())
        for sep in separations:
            assert not (cluster & sep.left and cluster & sep.right)
        assert all(result.cluster_of[i] == position for i in cluster)
        if cluster & result.blocked:
            assert len(cluster) == 1
    assert {r.reason_code for r in result.refused} <= set(REASON_CODES)
    assert result.blocked == {i for i in everyone if policy.blocked_reason(i)}


@settings(max_examples=150, deadline=None)
@given(observations_st, separations_st(), policies_st)
def test_blocked_identifiers_never_influence_other_links(
    observations: list[Observation], separations: list[Separation], policy: ResolutionPolicy
) -> None:
    full = resolve(observations, policy, separations)
    stripped = [
        Observation(o.identifiers - full.blocked, o.observed_at, o.seq, o.source)
        for o in observations
        if o.identifiers - full.blocked
    ]
    expected = partition(resolve(stripped, policy, separations))
    assert {c for c in full.clusters if not c & full.blocked} == expected


def simulate_incrementally(
    observations: Iterable[Observation],
    policy: ResolutionPolicy,
    separations: list[Separation],
) -> dict[Identifier, str]:
    """What a repository does: per observation, resolve its component and reassign profiles."""
    seen: list[Observation] = []
    current: dict[Identifier, str] = {}
    ranks: dict[str, ProfileRank] = {}
    for step, new in enumerate(observations):
        seen.append(new)
        component = component_of(new.identifiers, seen)
        touching = [o for o in seen if o.identifiers & component]
        resolution = resolve(touching, policy, separations)
        assert set(resolution.cluster_of) == component
        scoped = {i: current[i] for i in component if i in current}
        assignment = assign_profiles(resolution, scoped, ranks)
        for profile in assignment.created:
            assert profile not in ranks
            ranks[profile] = ProfileRank(False, T0 + dt.timedelta(seconds=step), profile)
        current.update(assignment.profile_of)
    return current


@settings(max_examples=100, deadline=None)
@given(observations_st, separations_st(), policies_st)
def test_incremental_equals_batch(
    observations: list[Observation], separations: list[Separation], policy: ResolutionPolicy
) -> None:
    current = simulate_incrementally(observations, policy, separations)
    groups: dict[str, set[Identifier]] = {}
    for identifier, profile in current.items():
        groups.setdefault(profile, set()).add(identifier)
    assert {frozenset(g) for g in groups.values()} == partition(
        resolve(observations, policy, separations)
    )


@settings(max_examples=100, deadline=None)
@given(observations_st, observations_st, st.data())
def test_assign_profiles_is_deterministic(
    before: list[Observation], after: list[Observation], data: st.DataObject
) -> None:
    first = resolve(before)
    owners = data.draw(st.lists(st.sampled_from(["p1", "p2", "p3"]), min_size=len(first.clusters)))
    current = {i: owners[n] for n, c in enumerate(first.clusters) for i in c}
    ranks = {p: ProfileRank(p == "p3", T0, p) for p in ("p1", "p2", "p3")}
    resolution = resolve(before + after)
    expected = assign_profiles(resolution, current, ranks)
    reordered = dict(reversed(list(current.items())))
    got = assign_profiles(resolution, reordered, dict(reversed(list(ranks.items()))))
    assert got == expected
    assert dict(got.profile_of) == dict(expected.profile_of)
    assert set(expected.profile_of) == set(resolution.cluster_of)
    profile_clusters: dict[str, set[int]] = {}
    for identifier, profile in expected.profile_of.items():
        profile_clusters.setdefault(profile, set()).add(resolution.cluster_of[identifier])
    assert all(len(c) == 1 for c in profile_clusters.values())


# --- examples ---------------------------------------------------------------------------------


def cluster_with(resolution: Resolution, key: str) -> frozenset[Identifier]:
    return resolution.clusters[resolution.cluster_of[ident(key)]]


def keys(identifiers: Iterable[Identifier]) -> set[str]:
    return {str(i) for i in identifiers}


@given(
    st.frozensets(st.sampled_from(POOL), min_size=1, max_size=8),
    st.sampled_from([DEFAULT_POLICY, TIGHT_POLICY, OPEN_POLICY]),
)
def test_assign_alone_agrees_with_full_resolution(
    identifiers: frozenset[Identifier], policy: ResolutionPolicy
) -> None:
    full = assign_profiles(
        resolve([Observation(identifiers, TIMES[0], 0, "identify")], policy), {}, {}
    )
    assert assign_alone(identifiers, policy) == full


def test_assign_alone_leaves_guarded_sets_to_the_full_resolution() -> None:
    """The cases where a guard binds give several profiles, as full resolution does; a fast
    path that assumed one cluster would get each of them wrong."""
    cases = [
        ({NPI_A, NPI_B, "email:jane@a.example"}, OPEN_POLICY),  # two NPIs, no type limit
        ({NPI_A, "email:info@x.example"}, DEFAULT_POLICY),  # shared inbox
        ({NPI_A, "crm:A-1", "crm:A-2"}, TIGHT_POLICY),  # over the type limit
    ]
    for keys, policy in cases:
        assignment = assign_alone(frozenset(map(ident, keys)), policy)
        assert len(set(assignment.profile_of.values())) > 1, keys
    single = assign_alone(frozenset(map(ident, {NPI_A, "crm:A-1", "email:jane@a.example"})))
    assert len(set(single.profile_of.values())) == 1
    assert single.created == (stable_id("hcp", NPI_A),)


def test_anonymous_id_joins_hcp_on_identify() -> None:
    observations = [
        obs(NPI_A, "email:jane@a.example", source="master_data"),
        obs("anon:a1", at=1, source="track"),
        obs("email:jane@a.example", "anon:a1", at=2),
    ]
    result = resolve(observations)
    assert keys(cluster_with(result, "anon:a1")) == {NPI_A, "email:jane@a.example", "anon:a1"}
    current = {ident(NPI_A): "hcp_1", ident("email:jane@a.example"): "hcp_1"}
    current[ident("anon:a1")] = "hcp_anon"
    ranks = {
        "hcp_1": ProfileRank(True, T0, "hcp_1"),
        "hcp_anon": ProfileRank(False, T0 - dt.timedelta(days=1), "hcp_anon"),
    }
    assignment = assign_profiles(result, current, ranks)
    assert assignment.merges == (Merge("hcp_1", "hcp_anon", frozenset({ident("anon:a1")})),)
    assert set(assignment.profile_of.values()) == {"hcp_1"}
    assert assignment.splits == ()
    assert assignment.created == ()


def test_chain_of_aliases_links_everything() -> None:
    observations = [
        obs("anon:a1", "anon:a2", source="alias"),
        obs("anon:a2", "anon:a3", at=1, source="alias"),
        obs("crm:A-1", "anon:a3", at=2),
    ]
    result = resolve(observations)
    assert len(result.clusters) == 1
    assert result.refused == ()
    assignment = assign_profiles(result, {}, {})
    assert assignment.created == (stable_id("hcp", "crm:A-1"),)


def test_conflicting_npis_are_refused() -> None:
    observations = [obs(NPI_B, "email:doc@c.example", at=1), obs(NPI_A, "email:doc@c.example")]
    result = resolve(observations)
    assert cluster_with(result, NPI_A) == frozenset(map(ident, (NPI_A, "email:doc@c.example")))
    assert cluster_with(result, NPI_B) == frozenset({ident(NPI_B)})
    [refused] = result.refused
    assert (refused.a, refused.b, refused.reason_code) == (
        ident(NPI_B),
        ident("email:doc@c.example"),
        "conflicting_npi",
    )


def test_type_limit_refuses_the_latest_link() -> None:
    observations = [obs(NPI_A, f"crm:A-{n}", at=n) for n in range(4)]
    result = resolve(observations)
    assert cluster_with(result, "crm:A-3") == frozenset({ident("crm:A-3")})
    assert [(str(r.b), r.reason_code) for r in result.refused] == [("crm:A-3", "type_limit")]


def shared_inbox_stays_apart(policy: ResolutionPolicy) -> bool:
    observations = [
        obs("crm:A-1", "email:info@x.example"),
        obs("crm:A-2", "email:info@x.example", at=1),
    ]
    result = resolve(observations, policy)
    return result.cluster_of[ident("crm:A-1")] != result.cluster_of[ident("crm:A-2")]


def test_shared_inbox_never_joins_two_hcps() -> None:
    assert shared_inbox_stays_apart(DEFAULT_POLICY)
    result = resolve([obs("crm:A-1", "email:info@x.example")])
    assert [r.reason_code for r in result.refused] == ["blocked_value"]
    assert result.blocked == {ident("email:info@x.example")}


def test_negative_control_without_guards_the_shared_inbox_merges() -> None:
    assert not shared_inbox_stays_apart(OPEN_POLICY)


@pytest.mark.parametrize(
    "local",
    ["info", "info2", "info.1", "info-3", "no-reply", "noreply+news", "praxis", "Sekretariat"],
)
def test_shared_inbox_patterns_are_blocked(local: str) -> None:
    assert DEFAULT_POLICY.blocked_reason(Identifier(IdentifierType.EMAIL, f"{local}@x.example"))


@pytest.mark.parametrize("local", ["information", "infos", "jane.info", "mailbox", "dr.admin"])
def test_personal_addresses_are_not_blocked(local: str) -> None:
    assert (
        DEFAULT_POLICY.blocked_reason(Identifier(IdentifierType.EMAIL, f"{local}@x.example"))
        is None
    )


def test_manual_unmerge_splits_and_restores_profile_ids() -> None:
    master = obs(NPI_A, "crm:A-1", source="master_data")
    visitor = obs("email:doc@c.example", "anon:a1", at=1, source="track")
    p1 = "hcp_master"
    ranks = {p1: ProfileRank(True, T0, p1)}

    first = assign_profiles(
        resolve([master, visitor]), {ident(NPI_A): p1, ident("crm:A-1"): p1}, ranks
    )
    p2 = stable_id("hcp", "email:doc@c.example")
    assert first.created == (p2,)

    wrong = obs("crm:A-1", "email:doc@c.example", at=2)
    ranks[p2] = ProfileRank(False, T0 + dt.timedelta(hours=1), p2)
    merged = assign_profiles(resolve([master, visitor, wrong]), first.profile_of, ranks)
    moved = frozenset(map(ident, ("email:doc@c.example", "anon:a1")))
    assert merged.merges == (Merge(p1, p2, moved),)
    assert set(merged.profile_of.values()) == {p1}

    # a manual unmerge names both sides in full: what stays, and what leaves
    separation = Separation(frozenset(map(ident, (NPI_A, "crm:A-1"))), moved, "two people")
    result = resolve([master, visitor, wrong], separations=[separation])
    assert partition(result) == {
        frozenset(map(ident, (NPI_A, "crm:A-1"))),
        moved,
    }
    assert [(str(r.a), str(r.b), r.reason_code) for r in result.refused] == [
        ("crm:A-1", "email:doc@c.example", "separated")
    ]
    live_ranks = {p1: ranks[p1]}  # p2 was absorbed; its id is free again
    split = assign_profiles(result, merged.profile_of, live_ranks)
    assert split.splits == (Split(p1, p2, moved),)
    assert split.created == (p2,)
    assert split.profile_of[ident(NPI_A)] == p1
    assert split.profile_of[ident("anon:a1")] == p2


def test_new_profile_id_never_reuses_a_live_id() -> None:
    p = stable_id("hcp", "email:doc@c.example")
    # the profile created for the e-mail later gained an NPI that became its strongest identifier
    current: Mapping[Identifier, str] = {ident(NPI_A): p, ident("email:doc@c.example"): p}
    ranks = {p: ProfileRank(False, T0, p)}
    full = resolve(
        [obs(NPI_A, "email:doc@c.example")],
        separations=[
            Separation(frozenset({ident(NPI_A)}), frozenset({ident("email:doc@c.example")}), "x")
        ],
    )
    assignment = assign_profiles(full, current, ranks)
    assert assignment.profile_of[ident(NPI_A)] == p
    [created] = assignment.created
    assert created != p
    assert assignment.splits == (Split(p, created, frozenset({ident("email:doc@c.example")})),)


def test_component_of_follows_raw_links_and_ignores_guards() -> None:
    observations = [
        obs("crm:A-1", "email:info@x.example"),
        obs("crm:A-2", "email:info@x.example"),
        obs("crm:A-3", "anon:a1"),
    ]
    assert keys(component_of([ident("crm:A-1")], observations)) == {
        "crm:A-1",
        "crm:A-2",
        "email:info@x.example",
    }
    assert component_of([ident("anon:a4")], observations) == {ident("anon:a4")}


def test_refused_link_carries_stable_fields() -> None:
    result = resolve([obs("crm:A-1", "anon:undefined")])
    assert result.refused == (
        RefusedLink(
            ident("crm:A-1"),
            ident("anon:undefined"),
            "blocked_value",
            "anon:undefined is listed in blocked_values",
        ),
    )


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="UTC"):
        Observation(frozenset({ident("anon:a1")}), dt.datetime(2025, 1, 1), 0, "track")
    with pytest.raises(ValueError, match="source"):
        Observation(frozenset({ident("anon:a1")}), T0, 0, "guess")
    with pytest.raises(ValueError, match="at least one"):
        Observation(frozenset(), T0, 0, "track")
    with pytest.raises(ValueError, match="share"):
        Separation(frozenset({ident("anon:a1")}), frozenset({ident("anon:a1")}), "x")
    with pytest.raises(ValueError, match="no ProfileRank"):
        assign_profiles(resolve([obs("anon:a1")]), {ident("anon:a1"): "hcp_x"}, {})
