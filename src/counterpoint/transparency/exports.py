"""Disclosure files of transfers of value: CMS Open Payments general payments and the EFPIA
per-HCP annual disclosure. Pure functions over plain values, no I/O."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from counterpoint.errors import ValidationFailedError
from counterpoint.transparency.rules import (
    EFPIA_CATEGORY,
    OPEN_PAYMENTS_FORM,
    OPEN_PAYMENTS_NATURE,
    EfpiaCategory,
    Form,
    Nature,
)

__all__ = [
    "EFPIA_COLUMNS",
    "OPEN_PAYMENTS_COLUMNS",
    "Recipient",
    "Transfer",
    "efpia_rows",
    "open_payments_rows",
    "to_csv",
]

OPEN_PAYMENTS_COLUMNS: tuple[str, ...] = (
    "Record_ID",
    "Program_Year",
    "Covered_Recipient_Type",
    "Covered_Recipient_NPI",
    "Covered_Recipient_First_Name",
    "Covered_Recipient_Last_Name",
    "Covered_Recipient_Specialty_1",
    "Recipient_State",
    "Recipient_Country",
    "Total_Amount_of_Payment_USDollars",
    "Date_of_Payment",
    "Number_of_Payments_Included_in_Total_Amount",
    "Form_of_Payment_or_Transfer_of_Value",
    "Nature_of_Payment_or_Transfer_of_Value",
    "Name_of_Drug_or_Biological_or_Device_or_Medical_Supply_1",
    "Contextual_Information",
)

_EFPIA_AMOUNTS: tuple[tuple[str, EfpiaCategory], ...] = (
    ("Donations_and_Grants", EfpiaCategory.DONATIONS_AND_GRANTS),
    ("Events_Registration_Fees", EfpiaCategory.EVENTS_REGISTRATION_FEES),
    ("Events_Sponsorship", EfpiaCategory.EVENTS_SPONSORSHIP),
    ("Events_Travel_and_Accommodation", EfpiaCategory.EVENTS_TRAVEL_AND_ACCOMMODATION),
    ("Fee_for_Service_Fees", EfpiaCategory.SERVICE_FEES),
    ("Fee_for_Service_Related_Expenses", EfpiaCategory.SERVICE_RELATED_EXPENSES),
)

EFPIA_COLUMNS: tuple[str, ...] = (
    "Reporting_Year",
    "Country_of_Principal_Practice",
    "Disclosure",
    "Full_Name",
    "Unique_Country_Identifier",
    "Specialty",
    "Currency",
    *(name for name, _ in _EFPIA_AMOUNTS),
    "Total",
    "Number_of_Recipients",
    "Share_of_Recipients_Percent",
)

_NON_PHYSICIANS = frozenset({"nurse_practitioner", "physician_assistant", "nurse"})


@dataclass(frozen=True, slots=True)
class Recipient:
    """What a disclosure names of an HCP (``erased``: only a pseudonym is left)."""

    hcp_id: str
    first_name: str | None
    last_name: str | None
    npi: str | None
    national_id: str | None
    specialty: str | None
    erased: bool = False


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    hcp_id: str
    amount: Decimal
    currency: str
    nature: Nature
    form: Form
    paid_on: dt.date
    market: str
    product: str | None = None
    brand: str | None = None
    description: str | None = None
    disclosure_consent: bool = False


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"


def _in_year(transfers: Iterable[Transfer], year: int, market: str | None) -> list[Transfer]:
    return sorted(
        (t for t in transfers if t.paid_on.year == year and (market is None or t.market == market)),
        key=lambda t: (t.market, t.paid_on, t.id),
    )


def open_payments_rows(
    transfers: Iterable[Transfer], recipients: Mapping[str, Recipient], year: int
) -> list[dict[str, str]]:
    """General payments of one program year to US HCPs, one row per transfer, in USD.

    Transfers in another currency make the whole export fail, naming them (convert and record
    them in USD); transfers to erased recipients are left out (nothing identifies them)."""
    chosen = [t for t in _in_year(transfers, year, "US") if not recipients[t.hcp_id].erased]
    foreign = [t.id for t in chosen if t.currency != "USD"]
    if foreign:
        raise ValidationFailedError(
            f"{len(foreign)} US transfers of {year} are not in USD: {', '.join(foreign[:10])}",
            field="currency",
            fix="Open Payments reports US dollars: record these transfers in USD",
            extra={"records": foreign},
        )
    rows: list[dict[str, str]] = []
    for t in chosen:
        who = recipients[t.hcp_id]
        rows.append(
            {
                "Record_ID": t.id,
                "Program_Year": str(year),
                "Covered_Recipient_Type": "Covered Recipient Non-Physician Practitioner"
                if who.specialty in _NON_PHYSICIANS
                else "Covered Recipient Physician",
                "Covered_Recipient_NPI": who.npi or "",
                "Covered_Recipient_First_Name": who.first_name or "",
                "Covered_Recipient_Last_Name": who.last_name or "",
                "Covered_Recipient_Specialty_1": who.specialty or "",
                "Recipient_State": "",
                "Recipient_Country": "United States",
                "Total_Amount_of_Payment_USDollars": _money(t.amount),
                "Date_of_Payment": t.paid_on.strftime("%m/%d/%Y"),
                "Number_of_Payments_Included_in_Total_Amount": "1",
                "Form_of_Payment_or_Transfer_of_Value": OPEN_PAYMENTS_FORM[t.form],
                "Nature_of_Payment_or_Transfer_of_Value": OPEN_PAYMENTS_NATURE[t.nature],
                "Name_of_Drug_or_Biological_or_Device_or_Medical_Supply_1": t.product
                or t.brand
                or "",
                "Contextual_Information": t.description or "",
            }
        )
    return rows


def _amounts(items: Sequence[Transfer]) -> dict[str, str]:
    sums = {category: Decimal("0") for _, category in _EFPIA_AMOUNTS}
    for t in items:
        category = EFPIA_CATEGORY[t.nature]
        if category is not None:
            sums[category] += t.amount
    out = {name: _money(sums[category]) for name, category in _EFPIA_AMOUNTS}
    out["Total"] = _money(sum(sums.values(), Decimal("0")))
    return out


def efpia_rows(
    transfers: Iterable[Transfer],
    recipients: Mapping[str, Recipient],
    year: int,
    market: str | None = None,
) -> list[dict[str, str]]:
    """The EFPIA annual disclosure: per market, one row per HCP who consented to individual
    disclosure of every transfer they received that year in that market, then one aggregate
    row for all the others. Natures outside the EFPIA categories (meals, gifts, educational
    items) are not disclosed. One currency per market; a second one fails, naming the rows."""
    chosen = [t for t in _in_year(transfers, year, market) if EFPIA_CATEGORY[t.nature] is not None]
    by_market: dict[str, list[Transfer]] = {}
    for t in chosen:
        by_market.setdefault(t.market, []).append(t)
    rows: list[dict[str, str]] = []
    for code in sorted(by_market):
        items = by_market[code]
        currencies = sorted({t.currency for t in items})
        if len(currencies) > 1:
            odd = [t.id for t in items if t.currency != items[0].currency]
            raise ValidationFailedError(
                f"the {code} transfers of {year} are in {', '.join(currencies)}: "
                f"{', '.join(odd[:10])}",
                field="currency",
                fix=f"record every {code} transfer in the market's currency",
                extra={"records": odd},
            )
        per_hcp: dict[str, list[Transfer]] = {}
        for t in items:
            per_hcp.setdefault(t.hcp_id, []).append(t)
        individual = {
            h
            for h, ts in per_hcp.items()
            if all(t.disclosure_consent for t in ts) and not recipients[h].erased
        }
        base = {"Reporting_Year": str(year), "Country_of_Principal_Practice": code}
        for hcp_id in sorted(
            individual,
            key=lambda h: (recipients[h].last_name or "", recipients[h].first_name or "", h),
        ):
            who = recipients[hcp_id]
            rows.append(
                {
                    **base,
                    "Disclosure": "individual",
                    "Full_Name": " ".join(p for p in (who.first_name, who.last_name) if p),
                    "Unique_Country_Identifier": who.national_id or who.npi or "",
                    "Specialty": who.specialty or "",
                    "Currency": currencies[0],
                    **_amounts(per_hcp[hcp_id]),
                    "Number_of_Recipients": "1",
                    "Share_of_Recipients_Percent": "",
                }
            )
        others = [t for h, ts in per_hcp.items() if h not in individual for t in ts]
        if others:
            count = len(per_hcp) - len(individual)
            rows.append(
                {
                    **base,
                    "Disclosure": "aggregate",
                    "Full_Name": "",
                    "Unique_Country_Identifier": "",
                    "Specialty": "",
                    "Currency": currencies[0],
                    **_amounts(others),
                    "Number_of_Recipients": str(count),
                    "Share_of_Recipients_Percent": f"{100 * count / len(per_hcp):.1f}",
                }
            )
    return rows


def _cell(value: str) -> str:
    """Spreadsheet-safe: a cell starting like a formula is prefixed with an apostrophe."""
    return "'" + value if value.startswith(("=", "+", "-", "@", "\t", "\r")) else value


def to_csv(columns: Sequence[str], rows: Iterable[Mapping[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c, "")) for c in columns])
    return out.getvalue()
