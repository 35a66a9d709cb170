"""Validated master-data rows (HCPs, HCOs, affiliations), their vocabularies and file columns,
and the error of one bad row.

Pure values, no I/O. ``counterpoint.profile.validation`` builds them from import rows; the
import service stores them. See docs/formats.md and docs/hcp.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from counterpoint.errors import ValidationFailedError
from counterpoint.profile.identifiers import Identifier, IdentifierType

__all__ = [
    "ADOPTION_STAGES",
    "AFFILIATION_COLUMNS",
    "DEFAULT_SPECIALTIES",
    "HCO_COLUMNS",
    "HCO_KINDS",
    "HCP_COLUMNS",
    "IDENTIFIER_COLUMNS",
    "SPECIALTIES",
    "AffiliationRecord",
    "HcoRecord",
    "HcpRecord",
    "RowError",
    "specialty_codes",
]

SPECIALTIES: tuple[str, ...] = (
    "general_practice",
    "family_medicine",
    "internal_medicine",
    "cardiology",
    "oncology",
    "haematology",
    "endocrinology",
    "neurology",
    "psychiatry",
    "pulmonology",
    "rheumatology",
    "dermatology",
    "gastroenterology",
    "nephrology",
    "paediatrics",
    "obstetrics_gynaecology",
    "infectious_disease",
    "ophthalmology",
    "urology",
    "surgery",
    "anaesthesiology",
    "radiology",
    "emergency_medicine",
    "geriatrics",
    "allergy_immunology",
    "pharmacist",
    "nurse_practitioner",
    "nurse",
    "physician_assistant",
    "other",
)
"""The built-in specialty codes. Deployments add their own with ``COUNTERPOINT_EXTRA_SPECIALTIES``
(see ``specialty_codes``)."""

DEFAULT_SPECIALTIES: frozenset[str] = frozenset(SPECIALTIES)

ADOPTION_STAGES: tuple[str, ...] = (
    "unaware",
    "aware",
    "interested",
    "trial",
    "adopter",
    "advocate",
)
"""Adoption stages of an HCP for a brand, from first to last."""

HCO_KINDS: tuple[str, ...] = ("hospital", "clinic", "practice", "pharmacy", "university", "other")

IDENTIFIER_COLUMNS: dict[str, IdentifierType] = {
    "npi": IdentifierType.NPI,
    "national_id": IdentifierType.NATIONAL,
    "vendor_id": IdentifierType.VENDOR,
    "crm_id": IdentifierType.CRM,
    "email": IdentifierType.EMAIL,
    "phone": IdentifierType.PHONE,
}
"""HCP file columns holding identifiers, in matching priority order."""

HCP_COLUMNS: dict[str, bool] = {
    **dict.fromkeys(IDENTIFIER_COLUMNS, False),
    "first_name": True,
    "last_name": True,
    "title": False,
    "specialty": True,
    "market": True,
    "territory": False,
    "potential_decile": False,
    "segments": False,
    "persona": False,
    "adoption_stage": False,
    "preferred_language": False,
    "time_zone": False,
    "synthetic": False,
}
"""Column → required, for HCP files."""

HCO_COLUMNS: dict[str, bool] = {
    "hco_id": True,
    "name": True,
    "kind": True,
    "market": True,
    "city": False,
    "synthetic": False,
}
AFFILIATION_COLUMNS: dict[str, bool] = {
    "hcp": True,
    "hco_id": True,
    "role": False,
    "primary": False,
    "synthetic": False,
}


def specialty_codes(extra: Iterable[str] = ()) -> frozenset[str]:
    """The built-in specialty codes plus ``extra`` (e.g. ``COUNTERPOINT_EXTRA_SPECIALTIES``)."""
    codes = set(SPECIALTIES)
    for code in extra:
        code = code.strip().lower()
        if not code:
            continue
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", code):
            raise ValidationFailedError(
                f"invalid specialty code {code!r}",
                field="extra_specialties",
                fix="use snake_case codes of letters, digits and _, e.g. sports_medicine",
            )
        codes.add(code)
    return frozenset(codes)


@dataclass(frozen=True, slots=True, kw_only=True)
class HcpRecord:
    """One healthcare professional as an import row describes them (keyword arguments only)."""

    identifiers: tuple[Identifier, ...]
    """Normalised identifiers in matching priority order (npi first, phone last)."""
    first_name: str
    last_name: str
    title: str | None = None
    specialty: str
    """A code of the specialty list (``SPECIALTIES`` plus the configured extra codes)."""
    market: str
    """ISO 3166-1 alpha-2, upper case."""
    territory: str | None = None
    potential_decile: int | None = None
    """1 (lowest potential) to 10 (highest)."""
    segments: tuple[str, ...] = ()
    persona: str | None = None
    adoption_stage: dict[str, str] = field(default_factory=dict)
    """Brand → adoption stage (one of ``ADOPTION_STAGES``)."""
    preferred_language: str | None = None
    """ISO 639-1, lower case."""
    time_zone: str | None = None
    """An IANA time zone name, e.g. ``Europe/Berlin``."""
    synthetic: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HcoRecord:
    """One healthcare organisation (hospital, clinic, pharmacy, …)."""

    hco_id: str
    name: str
    kind: str
    """One of ``HCO_KINDS``."""
    market: str
    city: str | None = None
    synthetic: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AffiliationRecord:
    """An HCP working at an HCO."""

    hcp: Identifier
    hco_id: str
    role: str | None = None
    primary: bool = False
    synthetic: bool = False


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one value of one row of an import file was refused, and what to write instead.

    ``row`` is the number a person finds the row under when opening the file:

    * CSV: the line number, counting the header as line 1 (the first data row is row 2);
    * NDJSON: the line number (the first line is row 1);
    * Parquet: the row's position, counting from 1.

    Row 0 stands for the file's header or schema (unknown or missing columns).
    """

    file: str
    row: int
    field: str
    value: str
    reason: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" if self.row else f"{self.file} (header)"
        shown = f" = {self.value!r}" if self.value else ""
        return f"{where}: {self.field}{shown}: {self.reason} (fix: {self.fix})"
