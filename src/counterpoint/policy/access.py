"""Roles, scopes and the permission table: who may do what, on which records. Pure, no I/O.

Deny by default: a (role, resource, verb) missing from ``RULES`` is refused. Object-level
scope (markets, brands, territories) narrows what an allowed role sees. Medical and commercial
functions are kept apart: commercial roles never read the content of medical interactions.
See docs/access.md.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "COMMERCIAL_ROLES",
    "MEDICAL_ROLES",
    "RULES",
    "TERRITORY_ROLES",
    "Principal",
    "Resource",
    "Role",
    "Verb",
    "can_see_hcp",
    "is_allowed",
    "permission_table",
    "reads_medical_content",
    "within_brands",
]


class Role(enum.StrEnum):
    ADMIN = "admin"
    BRAND_MANAGER = "brand_manager"
    MARKETING_OPS = "marketing_ops"
    SALES_REP = "sales_rep"
    KAM = "kam"
    MSL = "msl"
    MEDICAL_AFFAIRS = "medical_affairs"
    MLR_REVIEWER = "mlr_reviewer"
    COMPLIANCE_AUDITOR = "compliance_auditor"
    DATA_ANALYST = "data_analyst"


class Resource(enum.StrEnum):
    """What a route acts on. Each API route declares exactly one (resource, verb)."""

    HCP = "hcp"  # HCP 360, lookup, timeline
    MEDICAL = "medical"  # content of medical inquiries and MSL notes
    IDENTITY = "identity"  # merges and unmerges
    MASTER_DATA = "master_data"  # HCP/HCO imports
    QUARANTINE = "quarantine"
    CONSENT = "consent"
    CONTACT_POLICY = "contact_policy"  # caps, gaps, quiet hours, do-not-contact lists
    GUARD = "guard"
    USER = "user"
    TOKEN = "token"  # noqa: S105 (a resource name, not a secret)
    WRITE_KEY = "write_key"
    AUDIT = "audit"
    PRIVACY = "privacy"  # export and erasure of one person's data
    TRANSFER_OF_VALUE = "transfer_of_value"
    CONTENT = "content"  # the content library: assets, fragments, variants, previews
    CONTENT_REVIEW = "content_review"  # MLR reviews, e-signatures, withdrawal
    SEND = "send"  # sending approved content to HCPs (the guard still decides each send)
    OUTBOX = "outbox"  # the delivery outbox and its dead letters
    REP_INBOX = "rep_inbox"  # a field user's own tasks and suggestions
    SEGMENT = "segment"  # segment definitions, previews, counts and membership refreshes
    JOURNEY = "journey"  # journey definitions: validate, publish, pause, resume, stop, move


class Verb(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    EXPORT = "export"
    ERASE = "erase"


_READ_ONLY = frozenset({Verb.READ, Verb.EXPORT})

R = Role
COMMERCIAL_ROLES: frozenset[Role] = frozenset(
    {R.BRAND_MANAGER, R.MARKETING_OPS, R.SALES_REP, R.KAM, R.DATA_ANALYST}
)
MEDICAL_ROLES: frozenset[Role] = frozenset({R.MSL, R.MEDICAL_AFFAIRS})
TERRITORY_ROLES: frozenset[Role] = frozenset({R.SALES_REP, R.KAM, R.MSL})
"""Roles that see only HCPs in their territories (field roles)."""

_EVERYONE = frozenset(Role)
_FIELD = frozenset({R.SALES_REP, R.KAM, R.MSL})
_HQ_COMMERCIAL = frozenset({R.BRAND_MANAGER, R.MARKETING_OPS})

# resource -> verb -> roles allowed. Compliance auditors read everything and change nothing
# (added below for every READ and EXPORT); nothing else is implied.
_TABLE: dict[Resource, dict[Verb, frozenset[Role]]] = {
    Resource.HCP: {
        Verb.READ: _EVERYONE - {R.MLR_REVIEWER},
    },
    Resource.MEDICAL: {Verb.READ: MEDICAL_ROLES},
    Resource.IDENTITY: {Verb.WRITE: frozenset({R.ADMIN, R.MARKETING_OPS})},
    Resource.MASTER_DATA: {Verb.WRITE: frozenset({R.ADMIN, R.MARKETING_OPS})},
    Resource.QUARANTINE: {
        Verb.READ: frozenset({R.ADMIN, R.MARKETING_OPS, R.DATA_ANALYST}),
        Verb.WRITE: frozenset({R.ADMIN, R.MARKETING_OPS}),
    },
    Resource.CONSENT: {
        Verb.READ: _EVERYONE - {R.MLR_REVIEWER, R.DATA_ANALYST},
        Verb.WRITE: frozenset({R.ADMIN, R.MARKETING_OPS}) | _FIELD | {R.MEDICAL_AFFAIRS},
    },
    Resource.CONTACT_POLICY: {
        Verb.READ: _EVERYONE - {R.MLR_REVIEWER},
        Verb.WRITE: frozenset({R.ADMIN, R.MARKETING_OPS}),
    },
    Resource.GUARD: {
        Verb.READ: _HQ_COMMERCIAL | _FIELD | {R.ADMIN, R.MEDICAL_AFFAIRS},
    },
    Resource.USER: {Verb.READ: frozenset({R.ADMIN}), Verb.WRITE: frozenset({R.ADMIN})},
    Resource.TOKEN: {Verb.WRITE: frozenset({R.ADMIN})},
    Resource.WRITE_KEY: {Verb.WRITE: frozenset({R.ADMIN})},
    Resource.AUDIT: {Verb.READ: frozenset({R.ADMIN}), Verb.EXPORT: frozenset()},
    Resource.PRIVACY: {
        Verb.EXPORT: frozenset({R.ADMIN}),
        Verb.ERASE: frozenset({R.ADMIN}),
    },
    Resource.TRANSFER_OF_VALUE: {
        Verb.READ: frozenset({R.ADMIN, R.BRAND_MANAGER, R.MARKETING_OPS, R.MEDICAL_AFFAIRS}),
        Verb.WRITE: frozenset({R.ADMIN, R.MARKETING_OPS, R.MEDICAL_AFFAIRS}) | _FIELD,
        Verb.EXPORT: frozenset({R.ADMIN}),
    },
    Resource.CONTENT: {
        Verb.READ: _EVERYONE - {R.DATA_ANALYST},
        Verb.WRITE: _HQ_COMMERCIAL | {R.MEDICAL_AFFAIRS},
    },
    Resource.CONTENT_REVIEW: {
        Verb.READ: _HQ_COMMERCIAL | {R.MEDICAL_AFFAIRS, R.MLR_REVIEWER},
        Verb.WRITE: frozenset({R.MLR_REVIEWER}),
    },
    Resource.SEND: {
        Verb.WRITE: _HQ_COMMERCIAL | _FIELD | {R.MEDICAL_AFFAIRS},
    },
    Resource.OUTBOX: {
        Verb.READ: frozenset({R.ADMIN, R.MARKETING_OPS}),
        Verb.WRITE: frozenset({R.ADMIN, R.MARKETING_OPS}),
    },
    Resource.REP_INBOX: {Verb.READ: _FIELD, Verb.WRITE: _FIELD},
    Resource.SEGMENT: {
        Verb.READ: COMMERCIAL_ROLES | {R.ADMIN},
        Verb.WRITE: _HQ_COMMERCIAL | {R.ADMIN},
    },
    Resource.JOURNEY: {
        Verb.READ: COMMERCIAL_ROLES | {R.ADMIN, R.MEDICAL_AFFAIRS},
        Verb.WRITE: _HQ_COMMERCIAL | {R.ADMIN},
    },
}


def _with_auditors(
    table: Mapping[Resource, Mapping[Verb, frozenset[Role]]],
) -> dict[tuple[Role, Resource, Verb], bool]:
    rules: dict[tuple[Role, Resource, Verb], bool] = {}
    for resource, verbs in table.items():
        for verb, roles in verbs.items():
            allowed = set(roles)
            if verb in _READ_ONLY:
                allowed.add(R.COMPLIANCE_AUDITOR)
            else:
                allowed.discard(R.COMPLIANCE_AUDITOR)
            for role in allowed:
                rules[(role, resource, verb)] = True
    return rules


RULES: Mapping[tuple[Role, Resource, Verb], bool] = _with_auditors(_TABLE)
"""Every allowed (role, resource, verb). Anything absent is denied."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user with one role and scopes. Empty scope sets mean "all"."""

    user_id: str
    name: str
    role: Role
    markets: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()
    territories: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        return f"{self.name} ({self.role.value})"


def is_allowed(role: Role, resource: Resource, verb: Verb) -> bool:
    return RULES.get((role, resource, verb), False)


def reads_medical_content(principal: Principal) -> bool:
    """Whether the content of medical interactions may be shown to this caller."""
    return is_allowed(principal.role, Resource.MEDICAL, Verb.READ)


def _within(scope: frozenset[str], values: Iterable[str | None]) -> bool:
    if not scope:
        return True
    return any(v is not None and v in scope for v in values)


def within_brands(principal: Principal, brand: str | None) -> bool:
    """Brand scope: a user scoped to brands acts only for those brands (a contact or record
    without a brand is not brand-specific and stays allowed)."""
    return not principal.brands or brand is None or brand in principal.brands


def can_see_hcp(
    principal: Principal, market: str | None, territories: Iterable[str | None]
) -> bool:
    """Object-level scope of an HCP record: its market, and for field roles its territory.

    A field role (rep, KAM, MSL) with no territory sees no HCP: field access is never global.
    """
    if not _within(principal.markets, [market]):
        return False
    if principal.role in TERRITORY_ROLES:
        return bool(principal.territories) and _within(principal.territories, territories)
    return True


_SHORT = {
    Role.ADMIN: "admin",
    Role.BRAND_MANAGER: "BM",
    Role.MARKETING_OPS: "MOps",
    Role.SALES_REP: "rep",
    Role.KAM: "KAM",
    Role.MSL: "MSL",
    Role.MEDICAL_AFFAIRS: "MA",
    Role.MLR_REVIEWER: "MLR",
    Role.COMPLIANCE_AUDITOR: "audit",
    Role.DATA_ANALYST: "analyst",
}


def permission_table() -> str:
    """The rule set as a Markdown table (docs/access.md holds exactly this)."""
    lines = [
        "| resource | verb | " + " | ".join(_SHORT[r] for r in Role) + " |",
        "|---|---|" + "---|" * len(Role),
    ]
    for resource in Resource:
        for verb in Verb:
            if any(is_allowed(r, resource, verb) for r in Role):
                marks = " | ".join("✔" if is_allowed(r, resource, verb) else "" for r in Role)
                lines.append(f"| `{resource.value}` | {verb.value} | {marks} |")
    return "\n".join(lines)
