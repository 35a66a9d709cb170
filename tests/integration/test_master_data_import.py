"""Master-data imports (HCPs, HCOs, affiliations) from CSV and Parquet files through
``ProfileService.import_master_data``, on both deployments (columns: docs/formats.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from counterpoint.container import Container
from counterpoint.errors import ValidationFailedError
from counterpoint.profile.identifiers import npi_is_valid


def luhn_npi(prefix9: str) -> str:
    """A valid NPI: nine digits plus the Luhn check digit computed over 80840 + prefix."""
    digits = [int(c) for c in "80840" + prefix9]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix9 + str((10 - total % 10) % 10)


NPI_1 = "1234567893"
NPI_2 = luhn_npi("100000001")
NPI_3 = luhn_npi("200000002")
BAD_NPI = NPI_1[:9] + str((int(NPI_1[9]) + 1) % 10)

HCP_COLUMNS = ["npi", "email", "first_name", "last_name", "title", "specialty", "market"]


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def _write_parquet(path: Path, rows: list[dict[str, object]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _hcp(
    npi: str, first: str, last: str, specialty: str = "cardiology", **extra: str
) -> dict[str, str]:
    return {
        "npi": npi,
        "first_name": first,
        "last_name": last,
        "specialty": specialty,
        "market": "US",
        **extra,
    }


def _hcos(tmp_path: Path) -> Path:
    return _write_parquet(
        tmp_path / "hcos.parquet",
        [
            {
                "hco_id": "H-1",
                "name": "General Hospital",
                "kind": "hospital",
                "market": "US",
                "city": "Boston",
            },
            {"hco_id": "H-2", "name": "Main St Practice", "kind": "practice", "market": "US"},
        ],
    )


def test_npi_helper_makes_valid_npis() -> None:
    assert luhn_npi("123456789") == NPI_1
    assert all(npi_is_valid(n) for n in (NPI_1, NPI_2, NPI_3))
    assert not npi_is_valid(BAD_NPI)


def test_hcps_from_csv_are_created_and_found_by_every_identifier(
    container: Container, tmp_path: Path
) -> None:
    path = _write_csv(
        tmp_path / "hcps.csv",
        HCP_COLUMNS,
        [
            _hcp(NPI_1, "Jane", "Doe", email="Jane.Doe@Clinic.org", title="Dr"),
            _hcp(NPI_2, "John", "Roe", specialty="oncology"),
        ],
    )
    report = container.profiles.import_master_data(path, "hcps")
    assert (report.rows, report.imported, report.unchanged) == (2, 2, 0)
    assert report.rejected == []
    assert report.reject_file is None
    assert report.kind == "hcps"
    jane = container.profiles.get_by_identifier(f"npi:{NPI_1}")
    assert (jane["first_name"], jane["last_name"], jane["title"]) == ("Jane", "Doe", "Dr")
    assert (jane["specialty"], jane["market"], jane["master_data"]) == ("cardiology", "US", True)
    assert {f"{i['type']}:{i['value']}" for i in jane["identifiers"]} == {
        f"npi:{NPI_1}",
        "email:jane.doe@clinic.org",
    }
    assert container.profiles.get_by_identifier("email:jane.doe@clinic.org")["id"] == jane["id"]
    john = container.profiles.get_by_identifier(f"npi:{NPI_2}")
    assert john["id"] != jane["id"]
    assert john["specialty"] == "oncology"


def test_reimport_updates_by_identifier_and_reports_unchanged(
    container: Container, tmp_path: Path
) -> None:
    rows = [_hcp(NPI_1, "Jane", "Doe"), _hcp(NPI_2, "John", "Roe")]
    first = container.profiles.import_master_data(
        _write_csv(tmp_path / "v1.csv", HCP_COLUMNS, rows), "hcps"
    )
    assert (first.imported, first.unchanged) == (2, 0)
    jane_id = container.profiles.find_by_identifier(f"npi:{NPI_1}")
    events = container.log.count()

    same = container.profiles.import_master_data(
        _write_csv(tmp_path / "v1-again.csv", HCP_COLUMNS, rows), "hcps"
    )
    assert (same.rows, same.imported, same.unchanged) == (2, 0, 2)
    assert container.log.count() == events

    changed = [_hcp(NPI_1, "Jane", "Doe", specialty="neurology"), _hcp(NPI_2, "John", "Roe")]
    second = container.profiles.import_master_data(
        _write_csv(tmp_path / "v2.csv", HCP_COLUMNS, changed), "hcps"
    )
    assert (second.imported, second.unchanged) == (1, 1)
    jane = container.profiles.get_by_identifier(f"npi:{NPI_1}")
    assert jane["id"] == jane_id
    assert jane["specialty"] == "neurology"
    assert container.profiles.get_by_identifier(f"npi:{NPI_2}")["specialty"] == "cardiology"


def test_rejected_rows_are_reported_and_kept_while_valid_rows_land(
    container: Container, tmp_path: Path
) -> None:
    path = _write_csv(
        tmp_path / "hcps.csv",
        HCP_COLUMNS,
        [
            _hcp(NPI_1, "Jane", "Doe"),  # line 2: valid
            _hcp(BAD_NPI, "Bad", "Npi"),  # line 3: check digit
            _hcp(NPI_2, "Sam", "Spec", specialty="cardiologyy"),  # line 4: unknown specialty
            _hcp(NPI_3, "No", "", market="Germany"),  # line 5: last name, market
        ],
    )
    report = container.profiles.import_master_data(path, "hcps")
    assert (report.rows, report.imported) == (4, 1)
    by_row: dict[int, dict[str, tuple[str, str]]] = {}
    for error in report.rejected:
        assert error.file == "hcps.csv"
        assert error.reason
        assert error.fix
        by_row.setdefault(error.row, {})[error.field] = (error.value, error.fix)
    assert set(by_row) == {3, 4, 5}
    assert set(by_row[3]) == {"npi"}
    assert by_row[3]["npi"][0] == BAD_NPI
    assert "NPI" in by_row[3]["npi"][1]
    assert set(by_row[4]) == {"specialty"}
    assert "cardiology" in by_row[4]["specialty"][1]  # "did you mean cardiology?"
    assert set(by_row[5]) == {"last_name", "market"}
    assert "DE" in by_row[5]["market"][1]

    assert report.reject_file == tmp_path / "hcps.rejects.csv"
    with report.reject_file.open(encoding="utf-8", newline="") as handle:
        rejects = list(csv.DictReader(handle))
    assert [r["row"] for r in rejects] == ["3", "4", "5"]
    assert [r["npi"] for r in rejects] == [BAD_NPI, NPI_2, NPI_3]
    assert [r["first_name"] for r in rejects] == ["Bad", "Sam", "No"]
    assert rejects[1]["specialty"] == "cardiologyy"
    assert rejects[2]["market"] == "Germany"
    assert "npi:" in rejects[0]["reasons"]
    assert "last_name:" in rejects[2]["reasons"]
    assert "market:" in rejects[2]["reasons"]
    assert "fix:" in rejects[2]["reasons"]

    # The valid row landed; the rejected ones did not.
    assert container.profiles.find_by_identifier(f"npi:{NPI_1}") is not None
    assert container.profiles.find_by_identifier(f"npi:{NPI_2}") is None
    assert container.profiles.find_by_identifier(f"npi:{NPI_3}") is None
    assert container.log.count() == 1


def test_hcps_from_parquet_with_typed_values(container: Container, tmp_path: Path) -> None:
    path = _write_parquet(
        tmp_path / "hcps.parquet",
        [
            {
                **_hcp(NPI_1, "Jane", "Doe"),
                "potential_decile": 7,
                "segments": "kol;high",
                "synthetic": True,
            },
            {
                **_hcp(NPI_2, "John", "Roe"),
                "potential_decile": 11,
                "segments": None,
                "synthetic": False,
            },
        ],
    )
    report = container.profiles.import_master_data(path, "hcps")
    assert report.imported == 1
    (error,) = report.rejected
    assert (error.file, error.row, error.field) == ("hcps.parquet", 2, "potential_decile")
    assert report.reject_file is not None
    with report.reject_file.open(encoding="utf-8", newline="") as handle:
        (reject,) = list(csv.DictReader(handle))
    assert (reject["row"], reject["npi"], reject["potential_decile"]) == ("2", NPI_2, "11")
    jane = container.profiles.get_by_identifier(f"npi:{NPI_1}")
    assert jane["potential_decile"] == 7
    assert jane["segments"] == ["high", "kol"]
    assert jane["synthetic"] is True


def test_an_unknown_column_is_refused_naming_it_and_nothing_is_imported(
    container: Container, tmp_path: Path
) -> None:
    path = _write_csv(
        tmp_path / "hcps.csv",
        [*HCP_COLUMNS, "speciality"],
        [_hcp(NPI_1, "Jane", "Doe", speciality="x")],
    )
    with pytest.raises(ValidationFailedError) as caught:
        container.profiles.import_master_data(path, "hcps")
    assert caught.value.field == "speciality"
    assert "unknown column" in caught.value.detail
    assert caught.value.fix is not None
    assert "specialty" in caught.value.fix
    assert container.log.count() == 0
    assert container.profiles.find_by_identifier(f"npi:{NPI_1}") is None
    assert not (tmp_path / "hcps.rejects.csv").exists()


def test_hcos_and_affiliations_are_upserted(container: Container, tmp_path: Path) -> None:
    container.profiles.import_master_data(
        _write_csv(tmp_path / "hcps.csv", HCP_COLUMNS, [_hcp(NPI_1, "Jane", "Doe")]), "hcps"
    )
    hcos = container.profiles.import_master_data(_hcos(tmp_path), "hcos")
    assert (hcos.rows, hcos.imported, hcos.rejected) == (2, 2, [])
    affiliations = _write_parquet(
        tmp_path / "affiliations.parquet",
        [
            {"hcp": f"npi:{NPI_1}", "hco_id": "H-1", "role": "attending", "primary": True},
            {"hcp": f"npi:{NPI_1}", "hco_id": "H-2", "role": "partner", "primary": False},
        ],
    )
    report = container.profiles.import_master_data(affiliations, "affiliations")
    assert (report.rows, report.imported, report.rejected) == (2, 2, [])
    jane = container.profiles.get_by_identifier(f"npi:{NPI_1}")
    assert sorted(jane["affiliations"], key=lambda a: a["hco_id"]) == [
        {
            "hco_id": "H-1",
            "name": "General Hospital",
            "kind": "hospital",
            "city": "Boston",
            "role": "attending",
            "primary": True,
        },
        {
            "hco_id": "H-2",
            "name": "Main St Practice",
            "kind": "practice",
            "city": None,
            "role": "partner",
            "primary": False,
        },
    ]

    # Upsert: the same keys with new values replace the old ones, no duplicates.
    _write_csv(
        tmp_path / "hcos-v2.csv",
        ["hco_id", "name", "kind", "market", "city"],
        [
            {
                "hco_id": "H-1",
                "name": "General Hospital North",
                "kind": "hospital",
                "market": "US",
                "city": "Salem",
            }
        ],
    )
    container.profiles.import_master_data(tmp_path / "hcos-v2.csv", "hcos")
    _write_csv(
        tmp_path / "aff-v2.csv",
        ["hcp", "hco_id", "role", "primary"],
        [{"hcp": f"npi:{NPI_1}", "hco_id": "H-2", "role": "owner", "primary": "true"}],
    )
    container.profiles.import_master_data(tmp_path / "aff-v2.csv", "affiliations")
    again = container.profiles.get_by_identifier(f"npi:{NPI_1}")["affiliations"]
    by_hco = {a["hco_id"]: a for a in again}
    assert len(again) == 2
    assert (by_hco["H-1"]["name"], by_hco["H-1"]["city"]) == ("General Hospital North", "Salem")
    assert (by_hco["H-2"]["role"], by_hco["H-2"]["primary"]) == ("owner", True)


def test_invalid_hco_rows_are_rejected_and_valid_ones_land(
    container: Container, tmp_path: Path
) -> None:
    path = _write_csv(
        tmp_path / "hcos.csv",
        ["hco_id", "name", "kind", "market"],
        [
            {"hco_id": "H-1", "name": "Good", "kind": "clinic", "market": "DE"},
            {"hco_id": "H 2", "name": "Bad", "kind": "spaceship", "market": "DE"},
        ],
    )
    report = container.profiles.import_master_data(path, "hcos")
    assert report.imported == 1
    assert {(e.row, e.field) for e in report.rejected} == {(3, "hco_id"), (3, "kind")}
    assert report.reject_file is not None
    assert report.reject_file.exists()
    aff = _write_csv(
        tmp_path / "aff.csv", ["hcp", "hco_id"], [{"hcp": f"npi:{NPI_1}", "hco_id": "H-1"}]
    )
    assert container.profiles.import_master_data(aff, "affiliations").imported == 1


def test_affiliations_naming_an_unknown_hco_are_refused_entirely(
    container: Container, tmp_path: Path
) -> None:
    container.profiles.import_master_data(
        _write_csv(tmp_path / "hcps.csv", HCP_COLUMNS, [_hcp(NPI_1, "Jane", "Doe")]), "hcps"
    )
    container.profiles.import_master_data(_hcos(tmp_path), "hcos")
    path = _write_csv(
        tmp_path / "affiliations.csv",
        ["hcp", "hco_id", "role"],
        [
            {"hcp": f"npi:{NPI_1}", "hco_id": "H-1", "role": "attending"},
            {"hcp": f"npi:{NPI_1}", "hco_id": "H-404", "role": "visiting"},
        ],
    )
    with pytest.raises(ValidationFailedError) as caught:
        container.profiles.import_master_data(path, "affiliations")
    assert caught.value.field == "hco_id"
    assert "H-404" in caught.value.detail
    assert caught.value.fix is not None
    assert "hcos" in caught.value.fix
    # Not even the valid row was stored.
    assert container.profiles.get_by_identifier(f"npi:{NPI_1}")["affiliations"] == []
