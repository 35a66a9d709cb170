"""Identity resolution: which identifiers belong to the same HCP. Pure, no I/O.

Evidence comes as *observations* ("these identifiers were seen together"). ``resolve`` is a pure
function of the *set* of observations: the candidate links are sorted into a canonical order
before a greedy union-find runs, so the result never depends on arrival order and replaying the
same observations changes nothing. ``assign_profiles`` maps the resulting clusters onto existing
profile ids and reports merges, splits and new profiles. See docs/identity.md.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from counterpoint.kit.ids import stable_id
from counterpoint.profile.identifiers import Identifier, IdentifierType

__all__ = [
    "DEFAULT_BLOCKED_EMAILS",
    "DEFAULT_BLOCKED_VALUES",
    "DEFAULT_MAX_PER_TYPE",
    "DEFAULT_POLICY",
    "OBSERVATION_SOURCES",
    "REASON_CODES",
    "Assignment",
    "Merge",
    "Observation",
    "ProfileRank",
    "RefusedLink",
    "Resolution",
    "ResolutionPolicy",
    "Separation",
    "Split",
    "assign_alone",
    "assign_profiles",
    "component_of",
    "identifier_rank",
    "resolve",
]

OBSERVATION_SOURCES = frozenset({"master_data", "identify", "alias", "track", "manual"})
REASON_CODES = ("conflicting_npi", "type_limit", "separated", "blocked_value")

DEFAULT_BLOCKED_EMAILS = frozenset(
    {
        "info", "contact", "office", "admin", "noreply", "no-reply", "reception", "secretariat",
        "sekretariat", "praxis", "accueil", "mail", "hello", "support", "enquiries", "inquiries",
    }
)  # fmt: skip
DEFAULT_BLOCKED_VALUES = frozenset({"anon:undefined", "anon:null", "anon:none", "anon:0"})
DEFAULT_MAX_PER_TYPE: Mapping[IdentifierType, int] = MappingProxyType(
    {
        IdentifierType.NPI: 1,
        IdentifierType.NATIONAL: 2,
        IdentifierType.VENDOR: 3,
        IdentifierType.CRM: 3,
        IdentifierType.EMAIL: 5,
        IdentifierType.PHONE: 5,
        IdentifierType.ANON: 100,
    }
)


def identifier_rank(identifier: Identifier) -> tuple[int, str]:
    """Sort key: type priority (strongest first), then value. The first is the strongest."""
    return (identifier.type.priority, identifier.value)


def _strongest(identifiers: Iterable[Identifier]) -> Identifier:
    return min(identifiers, key=identifier_rank)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _require_utc(value: dt.datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() != dt.timedelta(0):
        raise ValueError(f"{what} must be an aware UTC datetime, got {value!r}")


@dataclass(frozen=True)
class Observation:
    """Evidence that ``identifiers`` belong to one person, seen at ``observed_at``."""

    identifiers: frozenset[Identifier]
    observed_at: dt.datetime
    seq: int
    source: str

    def __post_init__(self) -> None:
        if not self.identifiers:
            raise ValueError("an observation names at least one identifier")
        if self.source not in OBSERVATION_SOURCES:
            raise ValueError(f"unknown observation source {self.source!r}")
        _require_utc(self.observed_at, "observed_at")


@dataclass(frozen=True)
class Separation:
    """A manual unmerge: no cluster may hold an identifier from ``left`` and one from ``right``."""

    left: frozenset[Identifier]
    right: frozenset[Identifier]
    reason: str

    def __post_init__(self) -> None:
        if not self.left or not self.right:
            raise ValueError("both sides of a separation name at least one identifier")
        if self.left & self.right:
            raise ValueError("the two sides of a separation must not share an identifier")


@dataclass(frozen=True)
class ResolutionPolicy:
    """Guards against over-merging. ``blocked_values`` holds normalised keys (``type:value``)."""

    blocked_emails: frozenset[str] = DEFAULT_BLOCKED_EMAILS
    blocked_values: frozenset[str] = DEFAULT_BLOCKED_VALUES
    max_per_type: Mapping[IdentifierType, int] = field(
        default_factory=lambda: DEFAULT_MAX_PER_TYPE, hash=False
    )
    _inbox: re.Pattern[str] | None = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        limits = {IdentifierType(t): int(n) for t, n in self.max_per_type.items()}
        if any(n < 1 for n in limits.values()):
            raise ValueError("max_per_type limits are at least 1")
        object.__setattr__(self, "max_per_type", MappingProxyType(limits))
        names = sorted({p.strip().lower() for p in self.blocked_emails if p.strip()})
        inbox = None
        if names:
            alternatives = "|".join(re.escape(n) for n in names)
            inbox = re.compile(rf"(?:{alternatives})[0-9.\-]*", re.IGNORECASE)
        object.__setattr__(self, "_inbox", inbox)

    def blocked_reason(self, identifier: Identifier) -> str | None:
        """Why ``identifier`` must never be used for linking, or None when it may be."""
        if identifier.key in self.blocked_values:
            return f"{identifier} is listed in blocked_values"
        if identifier.type is IdentifierType.EMAIL and self._inbox is not None:
            local = identifier.value.rpartition("@")[0].partition("+")[0]
            if self._inbox.fullmatch(local):
                return f"{identifier} looks like a shared inbox"
        return None


DEFAULT_POLICY = ResolutionPolicy()


@dataclass(frozen=True)
class RefusedLink:
    """A link the guards refused. ``a`` ranks before ``b``; ``reason_code`` is stable."""

    a: Identifier
    b: Identifier
    reason_code: str
    detail: str


@dataclass(frozen=True)
class Resolution:
    """Clusters in canonical order (by strongest member), refused links, blocked identifiers."""

    clusters: tuple[frozenset[Identifier], ...]
    refused: tuple[RefusedLink, ...] = ()
    blocked: frozenset[Identifier] = frozenset()
    cluster_of: Mapping[Identifier, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        index: dict[Identifier, int] = {}
        for position, cluster in enumerate(self.clusters):
            for identifier in cluster:
                if identifier in index:
                    raise ValueError(f"{identifier} is in two clusters")
                index[identifier] = position
        object.__setattr__(self, "cluster_of", MappingProxyType(index))


class _Forest:
    """Union-find that also keeps each root's members and per-type counts."""

    def __init__(self, identifiers: Iterable[Identifier]) -> None:
        self.parent: dict[Identifier, Identifier] = {}
        self.members: dict[Identifier, set[Identifier]] = {}
        self.counts: dict[Identifier, Counter[IdentifierType]] = {}
        for identifier in identifiers:
            self.parent[identifier] = identifier
            self.members[identifier] = {identifier}
            self.counts[identifier] = Counter({identifier.type: 1})

    def find(self, identifier: Identifier) -> Identifier:
        parent = self.parent
        while parent[identifier] != identifier:
            parent[identifier] = parent[parent[identifier]]
            identifier = parent[identifier]
        return identifier

    def union(self, a: Identifier, b: Identifier) -> None:
        keep, gone = sorted((a, b), key=lambda r: (-len(self.members[r]), identifier_rank(r)))
        self.parent[gone] = keep
        self.members[keep] |= self.members.pop(gone)
        self.counts[keep] += self.counts.pop(gone)


def _refusal(
    forest: _Forest,
    a: Identifier,
    b: Identifier,
    policy: ResolutionPolicy,
    separations: list[Separation],
) -> tuple[str, str] | None:
    """The reason code and detail that forbid joining the clusters of roots a and b, if any."""
    members_a, members_b = forest.members[a], forest.members[b]
    total = forest.counts[a] + forest.counts[b]
    if forest.counts[a][IdentifierType.NPI] and forest.counts[b][IdentifierType.NPI]:
        npis = sorted(i for i in members_a | members_b if i.type is IdentifierType.NPI)
        return "conflicting_npi", f"would join different NPIs {', '.join(map(str, npis))}"
    for kind in IdentifierType:
        limit = policy.max_per_type.get(kind)
        if limit is not None and total[kind] > limit:
            return "type_limit", f"would hold {total[kind]} {kind.value} identifiers (max {limit})"
    for sep in separations:
        if (not sep.left.isdisjoint(members_a) and not sep.right.isdisjoint(members_b)) or (
            not sep.right.isdisjoint(members_a) and not sep.left.isdisjoint(members_b)
        ):
            return "separated", f"separation: {sep.reason}"
    return None


def _sorted_keys(identifiers: Iterable[Identifier]) -> tuple[tuple[int, str], ...]:
    return tuple(sorted(map(identifier_rank, identifiers)))


def resolve(
    observations: Iterable[Observation],
    policy: ResolutionPolicy = DEFAULT_POLICY,
    separations: Iterable[Separation] = (),
) -> Resolution:
    """Partition every observed identifier into clusters, one per person.

    Observations are deduplicated and sorted by (priority of the strongest usable identifier,
    observed_at, seq, identifiers, source); within one, each identifier is linked to the
    strongest usable one. A link is refused when it would join two NPIs, exceed a type limit,
    violate a separation, or use a blocked identifier; blocked identifiers stay alone.
    """
    unique = set(observations)
    everyone = {i for obs in unique for i in obs.identifiers}
    blocked = {i: r for i in everyone if (r := policy.blocked_reason(i)) is not None}
    seps = sorted(
        set(separations), key=lambda s: (_sorted_keys(s.left), _sorted_keys(s.right), s.reason)
    )

    def hub_of(obs: Observation) -> Identifier:
        usable = [i for i in obs.identifiers if i not in blocked]
        return _strongest(usable or obs.identifiers)

    def order(obs: Observation) -> tuple[object, ...]:
        usable = [i for i in obs.identifiers if i not in blocked]
        return (
            hub_of(obs).type.priority,
            obs.observed_at,
            obs.seq,
            _sorted_keys(usable),
            _sorted_keys(obs.identifiers),
            obs.source,
        )

    forest = _Forest(sorted(everyone, key=identifier_rank))
    refused: dict[tuple[Identifier, Identifier, str], str] = {}
    for obs in sorted(unique, key=order):
        hub = hub_of(obs)
        for other in sorted(obs.identifiers - {hub}, key=identifier_rank):
            a, b = sorted((hub, other), key=identifier_rank)
            if other in blocked or hub in blocked:
                code, detail = "blocked_value", blocked.get(other) or blocked[hub]
            else:
                root_hub, root_other = forest.find(hub), forest.find(other)
                if root_hub == root_other:
                    continue
                found = _refusal(forest, root_hub, root_other, policy, seps)
                if found is None:
                    forest.union(root_hub, root_other)
                    continue
                code, detail = found
            refused.setdefault((a, b, code), detail)

    clusters = sorted(
        (frozenset(m) for m in forest.members.values()),
        key=lambda c: identifier_rank(_strongest(c)),
    )
    links = sorted(
        (RefusedLink(a, b, code, detail) for (a, b, code), detail in refused.items()),
        key=lambda r: (identifier_rank(r.a), identifier_rank(r.b), r.reason_code),
    )
    return Resolution(tuple(clusters), tuple(links), frozenset(blocked))


def component_of(
    seed: Iterable[Identifier], observations: Iterable[Observation]
) -> frozenset[Identifier]:
    """The seed plus everything transitively co-observed with it, ignoring every guard.

    A repository loads the observations touching this set before calling ``resolve``; linking
    never crosses the boundary of a raw component, so resolving it alone gives the same clusters
    as resolving everything.
    """
    by_identifier: dict[Identifier, list[frozenset[Identifier]]] = {}
    for obs in observations:
        for identifier in obs.identifiers:
            by_identifier.setdefault(identifier, []).append(obs.identifiers)
    found = set(seed)
    stack = list(found)
    while stack:
        for group in by_identifier.pop(stack.pop(), ()):
            fresh = group - found
            found |= fresh
            stack.extend(fresh)
    return frozenset(found)


@dataclass(frozen=True)
class ProfileRank:
    """What decides a merge survivor: master data first, then oldest, then smallest id."""

    master_data: bool
    created_at: dt.datetime
    profile_id: str

    def sort_key(self) -> tuple[bool, dt.datetime, str]:
        return (not self.master_data, self.created_at, self.profile_id)


@dataclass(frozen=True)
class Merge:
    survivor: str
    absorbed: str
    identifiers_moved: frozenset[Identifier]


@dataclass(frozen=True)
class Split:
    source: str
    new_profile: str
    identifiers_moved: frozenset[Identifier]


@dataclass(frozen=True)
class Assignment:
    """``profile_of`` is authoritative; merges, splits and created explain the change."""

    profile_of: Mapping[Identifier, str] = field(hash=False)
    merges: tuple[Merge, ...] = ()
    splits: tuple[Split, ...] = ()
    created: tuple[str, ...] = ()


def _new_profile_id(cluster: frozenset[Identifier], taken: set[str]) -> str:
    strongest = str(_strongest(cluster))
    candidate = stable_id("hcp", strongest)
    attempt = 1
    while candidate in taken:
        candidate = stable_id("hcp", strongest, str(attempt))
        attempt += 1
    return candidate


def assign_profiles(
    resolution: Resolution,
    current: Mapping[Identifier, str],
    ranks: Mapping[str, ProfileRank],
) -> Assignment:
    """Give every clustered identifier a profile id, keeping existing ids where possible.

    A profile's *home* is the cluster holding its strongest identifier (within the
    resolution). The best-ranked profile homed in a cluster survives and absorbs the other
    profiles homed there (a Merge). Identifiers of a profile found outside its home cluster move
    to that cluster's profile (a Split). A cluster with no homed profile gets a new id
    ``stable_id("hcp", <strongest identifier>)``, suffixed when that id is already in use by
    ``current`` or ``ranks``. Identifiers absent from the resolution are ignored.
    """
    owned: dict[str, list[Identifier]] = {}
    for identifier in sorted(resolution.cluster_of, key=identifier_rank):
        profile = current.get(identifier)
        if profile is not None:
            owned.setdefault(profile, []).append(identifier)
    missing = sorted(p for p in owned if p not in ranks)
    if missing:
        raise ValueError(f"no ProfileRank for profiles {', '.join(missing)}")
    home = {p: resolution.cluster_of[ids[0]] for p, ids in owned.items()}
    homed: dict[int, list[str]] = {}
    for profile in sorted(home, key=lambda p: ranks[p].sort_key()):
        homed.setdefault(home[profile], []).append(profile)

    taken = set(current.values()) | set(ranks)
    targets: list[str] = []
    merges: list[Merge] = []
    created: list[str] = []
    for position, cluster in enumerate(resolution.clusters):
        candidates = homed.get(position, [])
        if candidates:
            survivor = candidates[0]
            merges.extend(
                Merge(survivor, p, frozenset(i for i in cluster if current.get(i) == p))
                for p in candidates[1:]
            )
        else:
            survivor = _new_profile_id(cluster, taken)
            taken.add(survivor)
            created.append(survivor)
        targets.append(survivor)

    profile_of: dict[Identifier, str] = {}
    moved: dict[tuple[str, str], set[Identifier]] = {}
    for position, cluster in enumerate(resolution.clusters):
        target = targets[position]
        for identifier in sorted(cluster, key=identifier_rank):
            profile_of[identifier] = target
            source = current.get(identifier)
            if source is not None and source != target and home[source] != position:
                moved.setdefault((source, target), set()).add(identifier)
    splits = [Split(s, t, frozenset(ids)) for (s, t), ids in sorted(moved.items())]
    return Assignment(
        profile_of=MappingProxyType(profile_of),
        merges=tuple(sorted(merges, key=lambda m: (m.survivor, m.absorbed))),
        splits=tuple(splits),
        created=tuple(created),
    )


def assign_alone(
    identifiers: frozenset[Identifier], policy: ResolutionPolicy = DEFAULT_POLICY
) -> Assignment:
    """``assign_profiles(resolve([one observation of identifiers], policy), {}, {})``: the
    profile of identifiers observed together once and nowhere else, none held by a profile.

    When no guard can bind (nothing blocked, at most one NPI, every type within its limit),
    every link of the observation is accepted: one cluster, one new profile named after its
    strongest identifier. Otherwise the full resolution decides. The projector calls this for
    each new HCP of a master-data file or an import, where resolving costs more than the rest.
    """
    counts = Counter(i.type for i in identifiers)
    if (
        not identifiers
        or counts[IdentifierType.NPI] > 1
        or any(n > policy.max_per_type.get(kind, n) for kind, n in counts.items())
        or any(policy.blocked_reason(i) is not None for i in identifiers)
    ):
        return assign_profiles(
            resolve([Observation(identifiers, _EPOCH, 0, "identify")], policy), {}, {}
        )
    profile = _new_profile_id(identifiers, set())
    return Assignment(
        profile_of=MappingProxyType(
            dict.fromkeys(sorted(identifiers, key=identifier_rank), profile)
        ),
        created=(profile,),
    )
