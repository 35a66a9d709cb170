"""Validation of master-data import rows (HCPs, HCOs, affiliations). Pure, no I/O.

Each ``validate_*_row`` takes one row as a mapping of column name to value and returns either
a record or *every* problem of the row as ``RowError`` values, each naming the field, the
value, the reason and what to write instead. Values from CSV arrive as strings (an empty
string is a missing value); values from Parquet or NDJSON arrive typed (``None`` is missing).
Both are accepted. Columns are checked once per file with ``check_columns``; the row
validators ignore columns they do not know. The rules are documented in docs/hcp.md.

The vocabularies (``SPECIALTIES``, ``ADOPTION_STAGES``, ``HCO_KINDS``) and the column lists
live in ``counterpoint.profile.records`` and are re-exported here.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import zoneinfo
from collections.abc import Collection, Iterable, Mapping
from typing import Literal

import pycountry
from email_validator import EmailNotValidError, validate_email

from counterpoint.errors import ValidationFailedError
from counterpoint.profile.identifiers import Identifier, IdentifierType, parse_identifier
from counterpoint.profile.records import (
    ADOPTION_STAGES,
    AFFILIATION_COLUMNS,
    DEFAULT_SPECIALTIES,
    HCO_COLUMNS,
    HCO_KINDS,
    HCP_COLUMNS,
    IDENTIFIER_COLUMNS,
    SPECIALTIES,
    AffiliationRecord,
    HcoRecord,
    HcpRecord,
    RowError,
    specialty_codes,
)

__all__ = [
    "ADOPTION_STAGES",
    "AFFILIATION_COLUMNS",
    "DEFAULT_SPECIALTIES",
    "HCO_COLUMNS",
    "HCO_KINDS",
    "HCP_COLUMNS",
    "IDENTIFIER_COLUMNS",
    "SPECIALTIES",
    "ImportKind",
    "check_column_set",
    "check_columns",
    "country_codes",
    "market_fix",
    "normalise_market",
    "parse_bool",
    "specialty_codes",
    "validate_affiliation_row",
    "validate_hco_row",
    "validate_hcp_row",
]

ImportKind = Literal["hcps", "hcos", "affiliations"]
"""The master-data file kinds, named as in ``counterpoint import <kind> FILE``."""

_COLUMNS: dict[str, dict[str, bool]] = {
    "hcps": HCP_COLUMNS,
    "hcos": HCO_COLUMNS,
    "affiliations": AFFILIATION_COLUMNS,
}
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_CODE = re.compile(r"^[\w.\-]{1,64}$")
_EXTERNAL_ID = re.compile(r"^[\w.\-:/@+#]{1,128}$")
_MARKET_HINTS = {"UK": "GB", "EL": "GR"}
_TEXT_MAX = 200
_ID_FIX = "fill at least one of " + ", ".join(IDENTIFIER_COLUMNS)


class _NotTextError(Exception):
    """A value of the wrong type; carries the reason."""


@functools.cache
def country_codes() -> frozenset[str]:
    """Every ISO 3166-1 alpha-2 code (upper case)."""
    return frozenset(c.alpha_2 for c in pycountry.countries)


@functools.cache
def _language_codes() -> frozenset[str]:
    return frozenset(x.alpha_2 for x in pycountry.languages if hasattr(x, "alpha_2"))


@functools.cache
def _time_zones() -> dict[str, str]:
    """Lower-cased IANA name → its canonical spelling."""
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def parse_bool(value: object) -> bool | None:
    """``True``/``False`` for true/false/1/0/yes/no (any case), real bools and 0/1; else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def normalise_market(value: str) -> str | None:
    """The upper-case ISO 3166-1 alpha-2 code, or None when ``value`` is not one."""
    code = value.strip().upper()
    return code if code in country_codes() else None


def market_fix(value: str) -> str:
    """What to write instead of a bad market code, naming the code when it can be guessed."""
    guess = _MARKET_HINTS.get(value.strip().upper())
    if guess is None:
        try:
            guess = pycountry.countries.lookup(value.strip()).alpha_2
        except LookupError:
            guess = None
    if guess:
        return f"use the ISO 3166-1 alpha-2 code {guess}"
    return "use an ISO 3166-1 alpha-2 code such as DE"


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, float) and math.isnan(value)


def _as_text(value: object) -> str:
    """A string from a CSV string or a typed Parquet scalar; raises ``_NotTextError`` otherwise."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        raise _NotTextError("is a boolean, not text")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise _NotTextError(f"is a {type(value).__name__}, not text")


def _closest(value: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _shown(value: object) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= 200 else text[:197] + "..."


class _Row:
    """One row being validated: reads typed values and collects every error."""

    __slots__ = ("errors", "file", "number", "values")

    def __init__(self, values: Mapping[str, object], *, file: str, number: int) -> None:
        self.values = values
        self.file = file
        self.number = number
        self.errors: list[RowError] = []

    def error(self, field: str, value: object, reason: str, fix: str) -> None:
        self.errors.append(RowError(self.file, self.number, field, _shown(value), reason, fix))

    def raw(self, field: str) -> object | None:
        value = self.values.get(field)
        return None if _is_missing(value) else value

    def text(
        self, field: str, *, required: bool = False, max_len: int = _TEXT_MAX, example: str = ""
    ) -> str | None:
        value = self.raw(field)
        if value is None:
            if required:
                hint = f", e.g. {example}" if example else ""
                self.error(field, "", "is required", f"fill {field}{hint}")
            return None
        try:
            text = _as_text(value)
        except _NotTextError as exc:
            self.error(field, value, str(exc), f"write {field} as text")
            return None
        if len(text) > max_len:
            self.error(field, value, f"is longer than {max_len} characters", "shorten it")
            return None
        return text

    def choice(self, field: str, choices: Collection[str], *, example: str, fix: str) -> str | None:
        text = self.text(field, required=True, example=example)
        if text is None:
            return None
        code = text.lower()
        if code in choices:
            return code
        near = _closest(code, choices)
        hint = f"did you mean {near}? " if near else ""
        self.error(field, text, f"is not a known {field} code", hint + fix)
        return None

    def market(self) -> str | None:
        text = self.text("market", required=True, example="DE")
        if text is None:
            return None
        code = normalise_market(text)
        if code is None:
            self.error(
                "market", text, "is not an ISO 3166-1 alpha-2 country code", market_fix(text)
            )
        return code

    def flag(self, field: str) -> bool:
        value = self.raw(field)
        if value is None:
            return False
        parsed = parse_bool(value)
        if parsed is None:
            self.error(field, value, "is not a boolean", "write true or false (or yes/no, 1/0)")
            return False
        return parsed

    def external_id(self, field: str) -> str | None:
        text = self.text(field, required=True, example="H-1001")
        if text is not None and not _EXTERNAL_ID.match(text):
            self.error(
                field,
                text,
                "is not a valid id",
                "use 1 to 128 letters, digits or . - _ : / @ + # (no spaces)",
            )
            return None
        return text


def check_column_set(
    columns: Iterable[str],
    *,
    known: Mapping[str, bool],
    file: str = "",
    row: int = 0,
) -> list[RowError]:
    """Refuse duplicate and unknown columns (naming the closest known one) and missing
    required ones. ``known`` maps each column to whether it is required."""
    errors: list[RowError] = []
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            errors.append(
                RowError(file, row, column, "", "column appears more than once", "keep one")
            )
            continue
        seen.add(column)
        if column not in known:
            near = _closest(column, known) or _closest(column.strip().lower(), known)
            fix = (
                f"rename it to {near} (column names are case-sensitive) or remove it"
                if near
                else "remove it; known columns: " + ", ".join(known)
            )
            errors.append(RowError(file, row, column, "", "unknown column", fix))
    for column, required in known.items():
        if required and column not in seen:
            errors.append(
                RowError(
                    file, row, column, "", "required column is missing", f"add a {column} column"
                )
            )
    return errors


def check_columns(
    columns: Iterable[str], kind: ImportKind, *, file: str = "", row: int = 0
) -> list[RowError]:
    """Check a file's header against the columns of ``kind`` (docs/formats.md).

    ``row`` is reported on every error (0, the header, by default; pass 1 for a CSV header
    line if you prefer line numbers).
    """
    known = _COLUMNS[kind]
    names = list(columns)
    errors = check_column_set(names, known=known, file=file, row=row)
    if kind == "hcps" and not any(name in IDENTIFIER_COLUMNS for name in names):
        errors.append(RowError(file, row, "identifiers", "", "no identifier column", _ID_FIX))
    return errors


# --- HCP fields -------------------------------------------------------------------------------


def _identifiers(row: _Row) -> tuple[Identifier, ...]:
    found: list[Identifier] = []
    given = False
    for column, kind in IDENTIFIER_COLUMNS.items():
        text = row.text(column, max_len=320)
        if text is None:
            given = given or row.raw(column) is not None
            continue
        given = True
        identifier = _identifier(row, column, kind, text)
        if identifier is not None:
            found.append(identifier)
    if not given:
        row.error("identifiers", "", "the row has no identifier", _ID_FIX)
    return tuple(found)


def _identifier(row: _Row, column: str, kind: IdentifierType, text: str) -> Identifier | None:
    if kind is IdentifierType.EMAIL:
        try:
            text = validate_email(text, check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            row.error(column, text, f"is not a valid e-mail address: {exc}", _EMAIL_FIX)
            return None
    if kind is IdentifierType.NATIONAL and normalise_market(text[:2]) is None:
        row.error(column, text, "does not start with an ISO country code", _NATIONAL_FIX)
        return None
    try:
        return parse_identifier(kind.value, text, field=column)
    except ValidationFailedError as exc:
        reason, fix = _IDENTIFIER_PROBLEMS.get(kind, (exc.detail, exc.fix or ""))
        row.error(column, text, reason, fix)
        return None


_EMAIL_FIX = "write one address such as jane.doe@clinic.org"
_NATIONAL_FIX = "write <ISO country>-<id>, e.g. FR-810001234567"
_IDENTIFIER_PROBLEMS: dict[IdentifierType, tuple[str, str]] = {
    IdentifierType.NPI: (
        "is not a valid NPI (10 digits, the last a Luhn check digit over 80840)",
        "copy the HCP's 10-digit NPI from the NPPES registry; a typo fails the check digit",
    ),
    IdentifierType.PHONE: (
        "is not an E.164 phone number",
        "write + then the country code and number, e.g. +14155550100",
    ),
    IdentifierType.EMAIL: ("is not a valid e-mail address", _EMAIL_FIX),
    IdentifierType.NATIONAL: ("is not a valid national id", _NATIONAL_FIX),
}


def _decile(row: _Row) -> int | None:
    value = row.raw("potential_decile")
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,3}", value.strip()):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or not 1 <= number <= 10:
        row.error(
            "potential_decile",
            value,
            "is not a whole number from 1 to 10",
            "write 1 (lowest) to 10",
        )
        return None
    return number


def _parts(row: _Row, field: str) -> list[object]:
    """The items of a ``;``-separated list, or of a list value (Parquet)."""
    value = row.raw(field)
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    if isinstance(value, list | tuple):
        return [item for item in value if not _is_missing(item)]
    row.error(field, value, f"is a {type(value).__name__}, not a list", "write a;b;c")
    return []


def _segments(row: _Row) -> tuple[str, ...]:
    segments: dict[str, None] = {}
    for part in _parts(row, "segments"):
        if isinstance(part, str) and _CODE.match(part):
            segments[part] = None
        else:
            row.error(
                "segments",
                part,
                "is not a segment code",
                "use codes of letters, digits, _ . - (up to 64), separated by ;",
            )
    return tuple(segments)


def _stage_pairs(row: _Row) -> list[tuple[object, object]]:
    value = row.raw("adoption_stage")
    if isinstance(value, Mapping):
        return list(value.items())
    pairs: list[tuple[object, object]] = []
    for part in _parts(row, "adoption_stage"):
        if isinstance(part, str) and ":" in part:
            brand, _, stage = part.partition(":")
            pairs.append((brand.strip(), stage.strip()))
        elif isinstance(part, list | tuple) and len(part) == 2:
            pairs.append((part[0], part[1]))
        else:
            row.error("adoption_stage", part, "is not a brand:stage pair", _STAGE_FIX)
    return pairs


_STAGE_FIX = "write brand:stage pairs separated by ;, e.g. cardiozen:aware;onkomab:trial"


def _adoption(row: _Row) -> dict[str, str]:
    stages: dict[str, str] = {}
    for brand, stage in _stage_pairs(row):
        shown = f"{brand}:{stage}"
        if not isinstance(brand, str) or not brand.strip() or len(brand) > 100:
            row.error("adoption_stage", shown, "names no brand", _STAGE_FIX)
            continue
        code = stage.strip().lower() if isinstance(stage, str) else ""
        if code not in ADOPTION_STAGES:
            row.error(
                "adoption_stage",
                shown,
                f"{stage!r} is not an adoption stage",
                "use one of " + ", ".join(ADOPTION_STAGES),
            )
            continue
        brand = brand.strip()
        if stages.get(brand, code) != code:
            row.error("adoption_stage", shown, f"brand {brand} is given twice", "keep one stage")
            continue
        stages[brand] = code
    return stages


def _language(row: _Row) -> str | None:
    text = row.text("preferred_language")
    if text is None:
        return None
    code = text.lower()
    if code in _language_codes():
        return code
    try:
        guess = pycountry.languages.lookup(text).alpha_2
        fix = f"use the ISO 639-1 code {guess}"
    except (LookupError, AttributeError):
        fix = "use a two-letter ISO 639-1 code such as en or de"
    row.error("preferred_language", text, "is not an ISO 639-1 language code", fix)
    return None


def _time_zone(row: _Row) -> str | None:
    text = row.text("time_zone")
    if text is None:
        return None
    zones = _time_zones()
    name = zones.get(text.lower())
    if name is None:
        near = _closest(text.lower(), zones)
        fix = f"did you mean {zones[near]}?" if near else "use an IANA name such as Europe/Berlin"
        row.error("time_zone", text, "is not an IANA time zone", fix)
    return name


# --- row validators ---------------------------------------------------------------------------


def validate_hcp_row(
    row: Mapping[str, object],
    *,
    row_number: int,
    file: str,
    specialties: Collection[str] = DEFAULT_SPECIALTIES,
) -> HcpRecord | list[RowError]:
    """One HCP row as a record, or every problem of the row.

    ``specialties`` is the accepted specialty list: ``DEFAULT_SPECIALTIES`` or
    ``specialty_codes(settings_extra_codes)``.
    """
    r = _Row(row, file=file, number=row_number)
    identifiers = _identifiers(r)
    first_name = r.text("first_name", required=True, example="Jane")
    last_name = r.text("last_name", required=True, example="Doe")
    title = r.text("title", max_len=50)
    specialty = r.choice(
        "specialty",
        specialties,
        example="cardiology",
        fix="use a code of the specialty list (docs/hcp.md) or add it to "
        "COUNTERPOINT_EXTRA_SPECIALTIES",
    )
    market = r.market()
    record = HcpRecord(
        identifiers=identifiers,
        first_name=first_name or "",
        last_name=last_name or "",
        title=title,
        specialty=specialty or "",
        market=market or "",
        territory=r.text("territory", max_len=64),
        potential_decile=_decile(r),
        segments=_segments(r),
        persona=r.text("persona", max_len=100),
        adoption_stage=_adoption(r),
        preferred_language=_language(r),
        time_zone=_time_zone(r),
        synthetic=r.flag("synthetic"),
    )
    return r.errors or record


def validate_hco_row(
    row: Mapping[str, object], *, row_number: int, file: str
) -> HcoRecord | list[RowError]:
    """One HCO row as a record, or every problem of the row."""
    r = _Row(row, file=file, number=row_number)
    record = HcoRecord(
        hco_id=r.external_id("hco_id") or "",
        name=r.text("name", required=True, max_len=300, example="Charité Berlin") or "",
        kind=r.choice("kind", HCO_KINDS, example="hospital", fix="use " + ", ".join(HCO_KINDS))
        or "",
        market=r.market() or "",
        city=r.text("city"),
        synthetic=r.flag("synthetic"),
    )
    return r.errors or record


def _hcp_identifier(row: _Row) -> Identifier | None:
    text = row.text("hcp", required=True, max_len=330, example="npi:1234567893")
    if text is None:
        return None
    kind, sep, value = text.partition(":")
    types = [t.value for t in IdentifierType if t is not IdentifierType.ANON]
    if not sep or kind.strip().lower() not in types:
        row.error(
            "hcp",
            text,
            "does not start with an identifier type",
            "write type:value, e.g. npi:1234567893; types: " + ", ".join(types),
        )
        return None
    return _identifier(row, "hcp", IdentifierType(kind.strip().lower()), value.strip())


def validate_affiliation_row(
    row: Mapping[str, object], *, row_number: int, file: str
) -> AffiliationRecord | list[RowError]:
    """One affiliation row as a record, or every problem of the row."""
    r = _Row(row, file=file, number=row_number)
    hcp = _hcp_identifier(r)
    hco_id = r.external_id("hco_id")
    role = r.text("role", max_len=100)
    primary = r.flag("primary")
    synthetic = r.flag("synthetic")
    if r.errors or hcp is None or hco_id is None:
        return r.errors
    return AffiliationRecord(
        hcp=hcp, hco_id=hco_id, role=role, primary=primary, synthetic=synthetic
    )
