"""Master-data row validation: every rule, valid and invalid, CSV strings and Parquet values."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterpoint.errors import ValidationFailedError
from counterpoint.profile.identifiers import Identifier, IdentifierType, npi_is_valid
from counterpoint.profile.records import AffiliationRecord, HcoRecord, HcpRecord, RowError
from counterpoint.profile.validation import (
    ADOPTION_STAGES,
    DEFAULT_SPECIALTIES,
    SPECIALTIES,
    check_columns,
    parse_bool,
    specialty_codes,
    validate_affiliation_row,
    validate_hco_row,
    validate_hcp_row,
)

FILE = "hcps.csv"


def hcp_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "npi": "1234567893",
        "national_id": "",
        "vendor_id": "",
        "crm_id": "",
        "email": "",
        "phone": "",
        "first_name": "Jane",
        "last_name": "Doe",
        "title": "",
        "specialty": "cardiology",
        "market": "US",
        "territory": "",
        "potential_decile": "",
        "segments": "",
        "persona": "",
        "adoption_stage": "",
        "preferred_language": "",
        "time_zone": "",
        "synthetic": "",
    }
    row.update(overrides)
    return row


def hcp(**overrides: object) -> HcpRecord:
    result = validate_hcp_row(hcp_row(**overrides), row_number=2, file=FILE)
    assert isinstance(result, HcpRecord), result
    return result


def hcp_errors(**overrides: object) -> list[RowError]:
    result = validate_hcp_row(hcp_row(**overrides), row_number=7, file=FILE)
    assert isinstance(result, list), result
    return result


def only_error(**overrides: object) -> RowError:
    errors = hcp_errors(**overrides)
    assert len(errors) == 1, errors
    return errors[0]


# --- a complete valid row ---------------------------------------------------------------------


def test_full_csv_row_is_normalised() -> None:
    record = hcp(
        npi=" 1234567893 ",
        national_id="fr-810001234567",
        vendor_id="WUSM00012345",
        crm_id="A-1",
        email="Jane.Doe@Clinic.ORG",
        phone="+1 415 555 0100",
        title="Dr",
        specialty="Cardiology",
        market="de",
        territory="T-NORTH-7",
        potential_decile="7",
        segments="high_potential; digital;high_potential;",
        persona="digital_first",
        adoption_stage="cardiozen:Aware; onkomab:trial",
        preferred_language="DE",
        time_zone="europe/berlin",
        synthetic="TRUE",
    )
    assert record.identifiers == (
        Identifier(IdentifierType.NPI, "1234567893"),
        Identifier(IdentifierType.NATIONAL, "FR-810001234567"),
        Identifier(IdentifierType.VENDOR, "WUSM00012345"),
        Identifier(IdentifierType.CRM, "A-1"),
        Identifier(IdentifierType.EMAIL, "jane.doe@clinic.org"),
        Identifier(IdentifierType.PHONE, "+14155550100"),
    )
    assert record.specialty == "cardiology"
    assert record.market == "DE"
    assert record.title == "Dr"
    assert record.territory == "T-NORTH-7"
    assert record.potential_decile == 7
    assert record.segments == ("high_potential", "digital")
    assert record.persona == "digital_first"
    assert record.adoption_stage == {"cardiozen": "aware", "onkomab": "trial"}
    assert record.preferred_language == "de"
    assert record.time_zone == "Europe/Berlin"
    assert record.synthetic is True


def test_minimal_row_has_empty_optionals() -> None:
    record = hcp()
    assert record == HcpRecord(
        identifiers=(Identifier(IdentifierType.NPI, "1234567893"),),
        first_name="Jane",
        last_name="Doe",
        specialty="cardiology",
        market="US",
    )
    assert record.synthetic is False


def test_missing_keys_are_missing_values() -> None:
    row = {"email": "a@clinic.org", "first_name": "A", "last_name": "B"}
    row |= {"specialty": "oncology", "market": "FR"}
    result = validate_hcp_row(row, row_number=1, file="x.parquet")
    assert isinstance(result, HcpRecord)
    assert result.identifiers == (Identifier(IdentifierType.EMAIL, "a@clinic.org"),)


# --- every rule: one valid and one invalid example --------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "fix_part"),
    [
        ("npi", "1234567890", "NPPES"),
        ("npi", "12345", "NPPES"),
        ("national_id", "810001234567", "FR-810001234567"),
        ("national_id", "ZZ-12345", "FR-810001234567"),
        ("vendor_id", "has space", "letters, digits"),
        ("crm_id", "x" * 129, "letters, digits"),
        ("email", "jane.doe", "jane.doe@clinic.org"),
        ("email", "jane@@clinic.org", "jane.doe@clinic.org"),
        ("phone", "4155550100", "+14155550100"),
        ("phone", "+1", "+14155550100"),
        ("first_name", "", "fill first_name"),
        ("last_name", "  ", "fill last_name"),
        ("first_name", "x" * 201, "shorten"),
        ("title", "x" * 51, "shorten"),
        ("specialty", "", "fill specialty"),
        ("specialty", "astrology", "COUNTERPOINT_EXTRA_SPECIALTIES"),
        ("market", "", "fill market"),
        ("market", "XX", "such as DE"),
        ("market", "Germany", "code DE"),
        ("market", "UK", "code GB"),
        ("market", "DEU", "code DE"),
        ("potential_decile", "0", "1 (lowest) to 10"),
        ("potential_decile", "11", "1 (lowest) to 10"),
        ("potential_decile", "7.5", "1 (lowest) to 10"),
        ("potential_decile", "high", "1 (lowest) to 10"),
        ("segments", "ok;not ok", "separated by ;"),
        ("adoption_stage", "cardiozen", "brand:stage"),
        ("adoption_stage", "cardiozen:loyal", "unaware, aware"),
        ("adoption_stage", ":aware", "brand:stage"),
        ("adoption_stage", "cardiozen:aware;cardiozen:trial", "keep one stage"),
        ("preferred_language", "xx", "ISO 639-1 code such as en"),
        ("preferred_language", "German", "ISO 639-1 code de"),
        ("preferred_language", "deu", "ISO 639-1 code de"),
        ("time_zone", "Mars/Olympus", "Europe/Berlin"),
        ("time_zone", "Europe/Berlim", "did you mean Europe/Berlin?"),
        ("synthetic", "maybe", "true or false"),
    ],
)
def test_invalid_value_names_field_and_fix(field: str, value: str, fix_part: str) -> None:
    error = only_error(**{field: value})
    assert error.field == field
    assert error.file == FILE
    assert error.row == 7
    if not value.strip():
        assert error.value == ""
    else:  # the whole value, shortened, or the offending part of a list
        assert error.value.removesuffix("...") in value
    assert error.reason
    assert fix_part in error.fix


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [
        (
            "national_id",
            "DE-A1/77",
            "identifiers",
            (Identifier(IdentifierType.NATIONAL, "DE-A1/77"),),
        ),
        (
            "phone",
            "+14155550100",
            "identifiers",
            (Identifier(IdentifierType.PHONE, "+14155550100"),),
        ),
        (
            "email",
            "Dr.X@Example.com",
            "identifiers",
            (Identifier(IdentifierType.EMAIL, "dr.x@example.com"),),
        ),
        ("potential_decile", "1", "potential_decile", 1),
        ("potential_decile", " 10 ", "potential_decile", 10),
        ("market", " gb ", "market", "GB"),
        ("preferred_language", "en", "preferred_language", "en"),
        ("time_zone", "America/New_York", "time_zone", "America/New_York"),
        ("time_zone", "UTC", "time_zone", "UTC"),
        ("adoption_stage", "a:advocate", "adoption_stage", {"a": "advocate"}),
        ("adoption_stage", "a:aware;a:aware", "adoption_stage", {"a": "aware"}),
        ("segments", "s-1;s.2;s_3", "segments", ("s-1", "s.2", "s_3")),
        ("specialty", " NURSE ", "specialty", "nurse"),
    ],
)
def test_valid_value_is_normalised(
    field: str, value: str, attribute: str, expected: object
) -> None:
    overrides: dict[str, object] = {field: value}
    if attribute == "identifiers":
        overrides["npi"] = ""
    assert getattr(hcp(**overrides), attribute) == expected


@pytest.mark.parametrize("stage", ADOPTION_STAGES)
def test_every_adoption_stage_is_accepted(stage: str) -> None:
    assert hcp(adoption_stage=f"brand:{stage}").adoption_stage == {"brand": stage}


@pytest.mark.parametrize("code", SPECIALTIES)
def test_every_default_specialty_is_accepted(code: str) -> None:
    assert hcp(specialty=code).specialty == code


def test_specialty_list_is_snake_case_and_unique() -> None:
    assert len(SPECIALTIES) == len(DEFAULT_SPECIALTIES) == 30
    assert all(code.isidentifier() and code.islower() for code in SPECIALTIES)


def test_specialty_suggests_the_closest_code() -> None:
    assert "did you mean cardiology?" in only_error(specialty="cardiolgy").fix


def test_extra_specialties_extend_the_list() -> None:
    codes = specialty_codes([" Sports_Medicine ", "", "palliative_care"])
    assert {"sports_medicine", "palliative_care"} <= codes
    assert codes > DEFAULT_SPECIALTIES
    row = hcp_row(specialty="sports_medicine")
    assert isinstance(validate_hcp_row(row, row_number=2, file=FILE, specialties=codes), HcpRecord)
    assert isinstance(validate_hcp_row(row, row_number=2, file=FILE), list)


def test_bad_extra_specialty_is_refused() -> None:
    with pytest.raises(ValidationFailedError) as info:
        specialty_codes(["sports medicine"])
    assert info.value.fix is not None
    assert "snake_case" in info.value.fix


def test_row_without_identifier_is_refused() -> None:
    error = only_error(npi="")
    assert error.field == "identifiers"
    assert "npi, national_id, vendor_id, crm_id, email, phone" in error.fix


def test_invalid_identifier_is_not_also_reported_as_missing() -> None:
    assert [e.field for e in hcp_errors(npi="", email="nope")] == ["email"]


def test_all_errors_of_a_row_are_collected() -> None:
    errors = hcp_errors(
        npi="1234567890",
        email="x@",
        first_name="",
        specialty="astrology",
        market="Atlantis",
        potential_decile="99",
        adoption_stage="a:b;c",
        preferred_language="klingon",
        time_zone="Nowhere/Here",
        synthetic="perhaps",
    )
    assert [e.field for e in errors] == [
        "npi",
        "email",
        "first_name",
        "specialty",
        "market",
        "potential_decile",
        "adoption_stage",
        "adoption_stage",
        "preferred_language",
        "time_zone",
        "synthetic",
    ]
    assert {e.row for e in errors} == {7}
    assert all(e.fix for e in errors)


# --- booleans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("1", True),
        (" false ", False),
        ("No", False),
        ("0", False),
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("maybe", None),
        ("2", None),
        (2, None),
        (1.0, None),
        (None, None),
    ],
)
def test_parse_bool(value: object, expected: bool | None) -> None:
    assert parse_bool(value) is expected


# --- Parquet-typed values ---------------------------------------------------------------------


def test_parquet_typed_values_are_accepted() -> None:
    row: dict[str, object] = {
        "npi": 1234567893,
        "crm_id": None,
        "email": None,
        "first_name": "Jane",
        "last_name": "Doe",
        "specialty": "oncology",
        "market": "FR",
        "potential_decile": 3,
        "segments": ["a", "b", None],
        "adoption_stage": {"cardiozen": "trial"},
        "synthetic": True,
        "territory": float("nan"),
    }
    record = validate_hcp_row(row, row_number=1, file="hcps.parquet")
    assert isinstance(record, HcpRecord)
    assert record.identifiers == (Identifier(IdentifierType.NPI, "1234567893"),)
    assert record.potential_decile == 3
    assert record.segments == ("a", "b")
    assert record.adoption_stage == {"cardiozen": "trial"}
    assert record.synthetic is True
    assert record.territory is None


def test_parquet_map_column_and_float_decile() -> None:
    row = hcp_row(adoption_stage=[("a", "aware"), ("b", "adopter")], potential_decile=4.0)
    record = validate_hcp_row(row, row_number=1, file="hcps.parquet")
    assert isinstance(record, HcpRecord)
    assert record.adoption_stage == {"a": "aware", "b": "adopter"}
    assert record.potential_decile == 4


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_name", dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
        ("first_name", True),
        ("market", 49),
        ("potential_decile", True),
        ("potential_decile", 4.5),
        ("segments", 12),
        ("adoption_stage", 5),
        ("synthetic", 2),
        ("npi", 1.5),
    ],
)
def test_wrongly_typed_parquet_values_are_refused(field: str, value: object) -> None:
    errors = validate_hcp_row(hcp_row(**{field: value}), row_number=3, file="h.parquet")
    assert isinstance(errors, list)
    assert [e.field for e in errors] == [field]
    assert errors[0].value == str(value)


def test_nan_is_missing() -> None:
    error = only_error(first_name=math.nan)
    assert (error.field, error.reason) == ("first_name", "is required")


# --- HCOs -------------------------------------------------------------------------------------


def test_valid_hco() -> None:
    row = {"hco_id": "H-1", "name": " Charité ", "kind": "Hospital", "market": "de", "city": ""}
    assert validate_hco_row(row, row_number=2, file="hcos.csv") == HcoRecord(
        hco_id="H-1", name="Charité", kind="hospital", market="DE", city=None, synthetic=False
    )


def test_invalid_hco_collects_every_error() -> None:
    row = {"hco_id": "H 1", "name": "", "kind": "hopsital", "market": "Mars", "synthetic": "x"}
    errors = validate_hco_row(row, row_number=4, file="hcos.csv")
    assert isinstance(errors, list)
    assert [e.field for e in errors] == ["hco_id", "name", "kind", "market", "synthetic"]
    assert "did you mean hospital?" in errors[2].fix


# --- affiliations -----------------------------------------------------------------------------


def test_valid_affiliation() -> None:
    row = {"hcp": "NPI:1234567893", "hco_id": "H-1", "role": "attending", "primary": "yes"}
    assert validate_affiliation_row(row, row_number=2, file="a.csv") == AffiliationRecord(
        hcp=Identifier(IdentifierType.NPI, "1234567893"),
        hco_id="H-1",
        role="attending",
        primary=True,
        synthetic=False,
    )


def test_affiliation_by_email() -> None:
    row = {"hcp": "email:Jane@Clinic.org", "hco_id": "H-1"}
    record = validate_affiliation_row(row, row_number=2, file="a.csv")
    assert isinstance(record, AffiliationRecord)
    assert record.hcp == Identifier(IdentifierType.EMAIL, "jane@clinic.org")
    assert record.primary is False


@pytest.mark.parametrize(
    ("hcp_value", "fix_part"),
    [
        ("1234567893", "type:value"),
        ("anon:abc", "type:value"),
        ("npl:1234567893", "type:value"),
        ("npi:1234567890", "NPPES"),
        ("", "fill hcp"),
    ],
)
def test_invalid_affiliation_hcp(hcp_value: str, fix_part: str) -> None:
    errors = validate_affiliation_row(
        {"hcp": hcp_value, "hco_id": "H-1"}, row_number=5, file="a.csv"
    )
    assert isinstance(errors, list)
    assert [(e.field, e.row) for e in errors] == [("hcp", 5)]
    assert fix_part in errors[0].fix


def test_affiliation_collects_every_error() -> None:
    row = {"hcp": "x", "hco_id": "", "primary": "sometimes"}
    errors = validate_affiliation_row(row, row_number=3, file="a.csv")
    assert isinstance(errors, list)
    assert [e.field for e in errors] == ["hcp", "hco_id", "primary"]


# --- columns ----------------------------------------------------------------------------------


def test_known_columns_pass() -> None:
    assert check_columns(list(hcp_row()), "hcps", file=FILE) == []
    assert check_columns(["hco_id", "name", "kind", "market"], "hcos") == []
    assert check_columns(["hcp", "hco_id", "primary"], "affiliations") == []


def test_unknown_column_names_the_closest_known_one() -> None:
    errors = check_columns([*hcp_row(), "frist_name"], "hcps", file=FILE)
    assert len(errors) == 1
    error = errors[0]
    assert (error.file, error.row, error.field, error.reason) == (
        FILE,
        0,
        "frist_name",
        "unknown column",
    )
    assert "first_name" in error.fix


def test_wrong_case_column_suggests_the_right_case() -> None:
    [error] = check_columns([*hcp_row(), "Territory"], "hcps")
    assert "rename it to territory" in error.fix


def test_unrelated_column_lists_the_known_ones() -> None:
    [error] = check_columns(["hco_id", "name", "kind", "market", "zzz"], "hcos")
    assert error.fix == "remove it; known columns: hco_id, name, kind, market, city, synthetic"


def test_missing_required_and_duplicate_columns() -> None:
    errors = check_columns(["npi", "first_name", "first_name", "market"], "hcps", row=1)
    assert [(e.field, e.reason) for e in errors] == [
        ("first_name", "column appears more than once"),
        ("last_name", "required column is missing"),
        ("specialty", "required column is missing"),
    ]
    assert {e.row for e in errors} == {1}


def test_hcp_file_needs_an_identifier_column() -> None:
    errors = check_columns(["first_name", "last_name", "specialty", "market"], "hcps")
    assert [e.field for e in errors] == ["identifiers"]


def test_row_error_renders_for_people() -> None:
    error = RowError("hcps.csv", 7, "market", "XX", "is not a country", "use DE")
    assert str(error) == "hcps.csv:7: market = 'XX': is not a country (fix: use DE)"
    assert str(RowError("h.csv", 0, "x", "", "unknown column", "remove it")).startswith(
        "h.csv (header): x:"
    )


# --- properties -------------------------------------------------------------------------------


def luhn_npi(first_nine: str) -> str:
    """Independent NPI check digit: Luhn over 80840 + the nine digits."""
    total = 0
    for i, char in enumerate(reversed("80840" + first_nine)):
        digit = int(char)
        if i % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return first_nine + str((10 - total % 10) % 10)


nine_digits = st.text(alphabet="0123456789", min_size=9, max_size=9)


@given(nine_digits)
def test_generated_npi_is_valid(first_nine: str) -> None:
    npi = luhn_npi(first_nine)
    assert npi_is_valid(npi)
    assert isinstance(validate_hcp_row(hcp_row(npi=npi), row_number=2, file=FILE), HcpRecord)


@given(nine_digits, st.integers(0, 9), st.integers(1, 9))
def test_any_single_digit_change_is_invalid(first_nine: str, position: int, shift: int) -> None:
    npi = luhn_npi(first_nine)
    changed = npi[:position] + str((int(npi[position]) + shift) % 10) + npi[position + 1 :]
    assert not npi_is_valid(changed)
    assert only_error(npi=changed).field == "npi"


scalars = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    st.datetimes(),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(list(hcp_row())), scalars))
def test_hcp_validation_never_raises(overrides: dict[str, object]) -> None:
    result = validate_hcp_row(hcp_row(**overrides), row_number=2, file=FILE)
    assert isinstance(result, HcpRecord) or all(isinstance(e, RowError) for e in result)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["hcp", "hco_id", "role", "primary", "synthetic"]), scalars))
def test_affiliation_validation_never_raises(row: dict[str, object]) -> None:
    result = validate_affiliation_row(row, row_number=2, file="a.csv")
    assert isinstance(result, AffiliationRecord) or result
