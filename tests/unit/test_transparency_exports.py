"""The disclosure shapes (pure): Open Payments rows, EFPIA per-HCP and aggregate rows, CSV
safety, validation of transfers and the fingerprint helpers."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from counterpoint.errors import ValidationFailedError
from counterpoint.privacy.fingerprint import (
    fingerprint,
    pseudonym_for,
    pseudonymise_key,
    scrub_text,
)
from counterpoint.transparency.exports import (
    EFPIA_COLUMNS,
    OPEN_PAYMENTS_COLUMNS,
    Recipient,
    Transfer,
    efpia_rows,
    open_payments_rows,
    to_csv,
)
from counterpoint.transparency.rules import (
    EFPIA_CATEGORY,
    OPEN_PAYMENTS_NATURE,
    Form,
    Nature,
    parse_amount,
    validate_transfer,
)

TODAY = dt.date(2026, 11, 23)
A = Recipient("hcp_a", "Ana", "Alder", "1234567893", None, "cardiology")
B = Recipient("hcp_b", "Ben", "Birch", None, "DE-100", "nurse_practitioner")
GONE = Recipient("erased:abc", None, None, None, None, None, erased=True)
WHO = {r.hcp_id: r for r in (A, B, GONE)}


def _t(i: int, hcp: str, amount: str, nature: Nature, **kw: object) -> Transfer:
    values: dict[str, object] = {
        "id": f"tov_{i}",
        "hcp_id": hcp,
        "amount": Decimal(amount),
        "currency": "USD",
        "nature": nature,
        "form": Form.CASH,
        "paid_on": dt.date(2026, 3, i + 1),
        "market": "US",
    }
    values.update(kw)
    return Transfer(**values)  # type: ignore[arg-type]


def test_every_nature_maps_to_open_payments_and_efpia() -> None:
    assert set(OPEN_PAYMENTS_NATURE) == set(Nature)
    assert set(EFPIA_CATEGORY) == set(Nature)


def test_open_payments_rows() -> None:
    rows = open_payments_rows(
        [
            _t(0, "hcp_a", "100.00", Nature.CONSULTING_FEE),
            _t(1, "hcp_b", "20.5", Nature.FOOD_AND_BEVERAGE, form=Form.IN_KIND),
            _t(2, "hcp_a", "9.99", Nature.GIFT, market="DE", currency="EUR"),
            _t(3, "hcp_a", "1.00", Nature.GIFT, paid_on=dt.date(2025, 1, 1)),
            _t(4, "erased:abc", "5.00", Nature.GIFT),
        ],
        WHO,
        2026,
    )
    assert [r["Record_ID"] for r in rows] == ["tov_0", "tov_1"]
    assert rows[0]["Covered_Recipient_Type"] == "Covered Recipient Physician"
    assert rows[1]["Covered_Recipient_Type"] == "Covered Recipient Non-Physician Practitioner"
    assert rows[1]["Total_Amount_of_Payment_USDollars"] == "20.50"
    assert rows[1]["Form_of_Payment_or_Transfer_of_Value"] == "In-kind items and services"
    assert rows[0]["Date_of_Payment"] == "03/01/2026"
    assert all(set(r) == set(OPEN_PAYMENTS_COLUMNS) for r in rows)


def test_open_payments_refuses_other_currencies_naming_the_rows() -> None:
    with pytest.raises(ValidationFailedError) as caught:
        open_payments_rows(
            [
                _t(0, "hcp_a", "1.00", Nature.GIFT, currency="EUR"),
                _t(1, "hcp_a", "1.00", Nature.GIFT),
            ],
            WHO,
            2026,
        )
    assert caught.value.field == "currency"
    assert caught.value.extra["records"] == ["tov_0"]


def test_efpia_individual_and_aggregate() -> None:
    transfers = [
        _t(
            0,
            "hcp_a",
            "100.00",
            Nature.CONSULTING_FEE,
            disclosure_consent=True,
            market="DE",
            currency="EUR",
        ),
        _t(
            1,
            "hcp_a",
            "40.00",
            Nature.TRAVEL_AND_LODGING,
            disclosure_consent=True,
            market="DE",
            currency="EUR",
        ),
        _t(2, "hcp_a", "30.00", Nature.FOOD_AND_BEVERAGE, market="DE", currency="EUR"),
        _t(
            3,
            "hcp_b",
            "200.00",
            Nature.SPEAKER_FEE,
            disclosure_consent=False,
            market="DE",
            currency="EUR",
        ),
        _t(
            4,
            "erased:abc",
            "50.00",
            Nature.REGISTRATION_FEE,
            disclosure_consent=True,
            market="DE",
            currency="EUR",
        ),
    ]
    rows = efpia_rows(transfers, WHO, 2026)
    assert [r["Disclosure"] for r in rows] == ["individual", "aggregate"]
    individual, aggregate = rows
    assert individual["Full_Name"] == "Ana Alder"
    assert individual["Fee_for_Service_Fees"] == "100.00"
    assert individual["Events_Travel_and_Accommodation"] == "40.00"
    assert individual["Total"] == "140.00"  # the meal is not an EFPIA category
    assert aggregate["Number_of_Recipients"] == "2"
    assert aggregate["Total"] == "250.00"
    assert aggregate["Share_of_Recipients_Percent"] == "66.7"
    assert aggregate["Full_Name"] == ""
    assert all(set(r) == set(EFPIA_COLUMNS) for r in rows)


def test_efpia_refuses_two_currencies_in_a_market() -> None:
    with pytest.raises(ValidationFailedError):
        efpia_rows(
            [
                _t(0, "hcp_a", "1.00", Nature.HONORARIA, market="DE", currency="EUR"),
                _t(1, "hcp_b", "1.00", Nature.HONORARIA, market="DE", currency="USD"),
            ],
            WHO,
            2026,
        )


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999"), places=2)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["hcp_a", "hcp_b"]),
            amounts,
            st.sampled_from(list(Nature)),
            st.booleans(),
        ),
        max_size=30,
    )
)
def test_efpia_totals_add_up_to_the_disclosed_natures(
    items: list[tuple[str, Decimal, Nature, bool]],
) -> None:
    transfers = [
        _t(i % 27, h, str(a), n, disclosure_consent=c, id=f"tov_{i}", market="FR", currency="EUR")
        for i, (h, a, n, c) in enumerate(items)
    ]
    rows = efpia_rows(transfers, WHO, 2026)
    expected = sum((t.amount for t in transfers if EFPIA_CATEGORY[t.nature]), Decimal("0"))
    assert sum((Decimal(r["Total"]) for r in rows), Decimal("0")) == expected
    recipients = {t.hcp_id for t in transfers if EFPIA_CATEGORY[t.nature]}
    assert sum(int(r["Number_of_Recipients"]) for r in rows) == len(recipients)
    for r in rows:
        parts = sum(Decimal(r[c]) for c in EFPIA_COLUMNS[7:13])
        assert parts == Decimal(r["Total"])


@given(st.text(max_size=40))
def test_csv_cells_never_start_a_formula(text: str) -> None:
    body = to_csv(["a"], [{"a": text}])
    cell = next(iter(csv.reader(io.StringIO(body[body.index("\n") + 1 :]))), [""])
    value = cell[0] if cell else ""
    assert not value.startswith(("=", "+", "-", "@"))


@given(amounts)
def test_amounts_round_trip(amount: Decimal) -> None:
    assert parse_amount(str(amount)) == amount


@pytest.mark.parametrize("bad", ["-1", "0", "0.001", "1e12", "NaN", "Infinity", "", 1.5, True])
def test_bad_amounts(bad: object) -> None:
    with pytest.raises(ValidationFailedError) as caught:
        parse_amount(bad)
    assert caught.value.field == "amount"


def test_validate_transfer_defaults() -> None:
    draft = validate_transfer(
        {"amount": "10", "currency": "eur", "nature": "Honoraria", "date": "2026-01-02"},
        today=TODAY,
    )
    assert (draft.amount, draft.currency, draft.nature, draft.form) == (
        Decimal("10.00"),
        "EUR",
        Nature.HONORARIA,
        Form.CASH,
    )
    assert draft.market is None
    assert draft.disclosure_consent is False


@given(st.text(min_size=1, max_size=30))
def test_fingerprints_are_keyed_and_stable(key: str) -> None:
    assert fingerprint(key, "k1") == fingerprint(key, "k1")
    assert fingerprint(key, "k1") != fingerprint(key, "k2")
    masked = pseudonymise_key(f"npi:{key}", "k1")
    assert masked.startswith("npi:#")
    assert len(masked) == len("npi:#") + 20
    assert masked == pseudonymise_key(f"npi:{key}", "k1")


def test_pseudonym_and_scrub() -> None:
    assert pseudonym_for(["bb", "aa" * 20]).startswith("erased:aaaa")
    assert scrub_text("Signed by Ana ALDER", ["alder", "Ana"]) == "Signed by [erased] [erased]"
    assert scrub_text(None, ["x"]) is None
