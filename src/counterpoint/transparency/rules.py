"""Transfers of value: natures, forms, their disclosure categories, and validation. Pure.

Each ``Nature`` maps to one CMS Open Payments "Nature of Payment or Transfer of Value" and to
one EFPIA disclosure category (or to none: meals, gifts and educational items are not in the
EFPIA individual disclosure). See docs/transfers-of-value.md.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import pycountry

from counterpoint.errors import ValidationFailedError

__all__ = [
    "EFPIA_CATEGORY",
    "OPEN_PAYMENTS_FORM",
    "OPEN_PAYMENTS_NATURE",
    "EfpiaCategory",
    "Form",
    "Nature",
    "TransferDraft",
    "check_text",
    "parse_amount",
    "parse_currency",
    "validate_transfer",
]

MAX_AMOUNT = Decimal("1000000000")
_CODE = re.compile(r"^[\w.\-]{1,64}$")
_PRODUCT = re.compile(r"^[\w .,()/&'+\-]{1,200}$")
_MESSAGE_ID = re.compile(r"^[\w.:\-]{1,200}$")
_FORMULA_START = ("=", "+", "-", "@")
_DESCRIPTION_MAX = 500


class Nature(enum.StrEnum):
    FOOD_AND_BEVERAGE = "food_and_beverage"
    TRAVEL_AND_LODGING = "travel_and_lodging"
    REGISTRATION_FEE = "registration_fee"
    SPONSORSHIP = "sponsorship"
    HONORARIA = "honoraria"
    CONSULTING_FEE = "consulting_fee"
    SPEAKER_FEE = "speaker_fee"
    SERVICE_RELATED_EXPENSES = "service_related_expenses"
    EDUCATION = "education"
    GRANT = "grant"
    DONATION = "donation"
    GIFT = "gift"


class Form(enum.StrEnum):
    CASH = "cash"
    IN_KIND = "in_kind"
    STOCK = "stock"
    STOCK_OPTION = "stock_option"
    OTHER_OWNERSHIP = "other_ownership"
    DIVIDEND = "dividend"


class EfpiaCategory(enum.StrEnum):
    DONATIONS_AND_GRANTS = "donations_and_grants"
    EVENTS_REGISTRATION_FEES = "events_registration_fees"
    EVENTS_SPONSORSHIP = "events_sponsorship"
    EVENTS_TRAVEL_AND_ACCOMMODATION = "events_travel_and_accommodation"
    SERVICE_FEES = "service_fees"
    SERVICE_RELATED_EXPENSES = "service_related_expenses"


OPEN_PAYMENTS_NATURE: Mapping[Nature, str] = {
    Nature.FOOD_AND_BEVERAGE: "Food and Beverage",
    Nature.TRAVEL_AND_LODGING: "Travel and Lodging",
    Nature.REGISTRATION_FEE: "Education",
    Nature.SPONSORSHIP: "Grant",
    Nature.HONORARIA: "Honoraria",
    Nature.CONSULTING_FEE: "Consulting Fee",
    Nature.SPEAKER_FEE: "Compensation for services other than consulting, including serving "
    "as faculty or as a speaker at a venue other than a continuing education program",
    Nature.SERVICE_RELATED_EXPENSES: "Travel and Lodging",
    Nature.EDUCATION: "Education",
    Nature.GRANT: "Grant",
    Nature.DONATION: "Charitable Contribution",
    Nature.GIFT: "Gift",
}
"""Our nature -> the CMS Open Payments "Nature of Payment or Transfer of Value"."""

EFPIA_CATEGORY: Mapping[Nature, EfpiaCategory | None] = {
    Nature.FOOD_AND_BEVERAGE: None,
    Nature.TRAVEL_AND_LODGING: EfpiaCategory.EVENTS_TRAVEL_AND_ACCOMMODATION,
    Nature.REGISTRATION_FEE: EfpiaCategory.EVENTS_REGISTRATION_FEES,
    Nature.SPONSORSHIP: EfpiaCategory.EVENTS_SPONSORSHIP,
    Nature.HONORARIA: EfpiaCategory.SERVICE_FEES,
    Nature.CONSULTING_FEE: EfpiaCategory.SERVICE_FEES,
    Nature.SPEAKER_FEE: EfpiaCategory.SERVICE_FEES,
    Nature.SERVICE_RELATED_EXPENSES: EfpiaCategory.SERVICE_RELATED_EXPENSES,
    Nature.EDUCATION: None,
    Nature.GRANT: EfpiaCategory.DONATIONS_AND_GRANTS,
    Nature.DONATION: EfpiaCategory.DONATIONS_AND_GRANTS,
    Nature.GIFT: None,
}
"""Our nature -> the EFPIA disclosure category (None: not part of the EFPIA disclosure)."""

OPEN_PAYMENTS_FORM: Mapping[Form, str] = {
    Form.CASH: "Cash or cash equivalent",
    Form.IN_KIND: "In-kind items and services",
    Form.STOCK: "Stock",
    Form.STOCK_OPTION: "Stock option",
    Form.OTHER_OWNERSHIP: "Any other ownership interest",
    Form.DIVIDEND: "Dividend, profit or other return on investment",
}


@dataclass(frozen=True, slots=True)
class TransferDraft:
    """A validated transfer, before it is stored."""

    amount: Decimal
    currency: str
    nature: Nature
    form: Form
    paid_on: dt.date
    market: str | None
    brand: str | None = None
    product: str | None = None
    description: str | None = None
    message_id: str | None = None
    external_id: str | None = None
    disclosure_consent: bool = False


def parse_amount(value: object) -> Decimal:
    """A positive amount with at most two decimals (text or number; floats are refused)."""
    if isinstance(value, (bool, float)):
        raise ValidationFailedError(
            "the amount must be written exactly",
            field="amount",
            fix='send the amount as text or an integer, e.g. "125.50"',
        )
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationFailedError(
            f"{str(value)[:30]!r} is not an amount",
            field="amount",
            fix="write a positive number with at most two decimals, e.g. 125.50",
        ) from None
    if not amount.is_finite() or amount <= 0 or amount >= MAX_AMOUNT:
        raise ValidationFailedError(
            f"the amount {str(value)[:30]} is not above zero (and below one billion)",
            field="amount",
            fix="write a positive amount, e.g. 125.50",
        )
    if amount != amount.quantize(Decimal("0.01")):
        raise ValidationFailedError(
            f"the amount {amount} has more than two decimals",
            field="amount",
            fix="round to the cent, e.g. 125.50",
        )
    return amount.quantize(Decimal("0.01"))


def parse_currency(value: object) -> str:
    code = str(value or "").strip().upper()
    if len(code) != 3 or not code.isalpha() or pycountry.currencies.get(alpha_3=code) is None:
        raise ValidationFailedError(
            f"{str(value)[:10]!r} is not an ISO 4217 currency code",
            field="currency",
            fix="write a three-letter code such as EUR or USD",
        )
    return code


def check_text(value: object, field: str, *, limit: int = _DESCRIPTION_MAX) -> str | None:
    """Free text that is safe to store and to put in a disclosure file: no markup, no control
    characters, and no leading = + - @ (spreadsheet formulas)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if len(text) > limit:
        raise ValidationFailedError(
            f"the {field} is longer than {limit} characters", field=field, fix="shorten it"
        )
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise ValidationFailedError(
            f"the {field} contains control characters",
            field=field,
            fix="write plain text on one line",
        )
    if "<" in text or ">" in text:
        raise ValidationFailedError(
            f"the {field} contains markup (< or >)",
            field=field,
            fix="write plain text without < and >",
        )
    if text.startswith(_FORMULA_START):
        raise ValidationFailedError(
            f"the {field} starts with {text[0]!r}, which spreadsheets run as a formula",
            field=field,
            fix="start the text with a letter or a digit",
        )
    return text


def _code(value: object, field: str, pattern: re.Pattern[str], fix: str) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if not pattern.fullmatch(text):
        raise ValidationFailedError(f"{text[:40]!r} is not a valid {field}", field=field, fix=fix)
    return text


def _enum(kind: type[enum.StrEnum], value: object, field: str) -> enum.StrEnum:
    try:
        return kind(str(value or "").strip().lower())
    except ValueError:
        raise ValidationFailedError(
            f"{str(value)[:40]!r} is not a {field}",
            field=field,
            fix="use one of: " + ", ".join(m.value for m in kind),
        ) from None


def _date(value: object, today: dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        day = value
    else:
        try:
            day = dt.date.fromisoformat(str(value or "").strip())
        except ValueError:
            raise ValidationFailedError(
                f"{str(value)[:30]!r} is not a date",
                field="date",
                fix="write the payment date as YYYY-MM-DD",
            ) from None
    if day > today:
        raise ValidationFailedError(
            f"the payment date {day} is in the future",
            field="date",
            fix="record a transfer once it is made",
        )
    if day.year < 2000:
        raise ValidationFailedError(
            f"the payment date {day} is before 2000", field="date", fix="check the year"
        )
    return day


def _bool(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value or "").strip().lower()
    if text in ("", "0", "false", "no", "n"):
        return False
    if text in ("1", "true", "yes", "y"):
        return True
    raise ValidationFailedError(
        f"{text[:20]!r} is not yes or no", field=field, fix="write true or false"
    )


def validate_transfer(values: Mapping[str, object], *, today: dt.date) -> TransferDraft:
    """Build a transfer from loose values (an API body or a file row); raises on the first
    problem, naming the field. ``market`` may be absent (the HCP's market is used)."""
    market_text = str(values.get("market") or "").strip().upper()
    if market_text and pycountry.countries.get(alpha_2=market_text) is None:
        raise ValidationFailedError(
            f"{market_text[:10]!r} is not an ISO 3166-1 alpha-2 country code",
            field="market",
            fix="write a two-letter code such as DE or US",
        )
    nature = _enum(Nature, values.get("nature"), "nature")
    form = _enum(Form, values.get("form") or Form.CASH.value, "form")
    assert isinstance(nature, Nature)
    assert isinstance(form, Form)
    return TransferDraft(
        amount=parse_amount(values.get("amount")),
        currency=parse_currency(values.get("currency")),
        nature=nature,
        form=form,
        paid_on=_date(values.get("date"), today),
        market=market_text or None,
        brand=_code(values.get("brand"), "brand", _CODE, "use 1-64 letters, digits, . _ -"),
        product=_code(
            check_text(values.get("product"), "product", limit=200),
            "product",
            _PRODUCT,
            "use letters, digits, spaces and . , ( ) / & ' + -",
        ),
        description=check_text(values.get("description"), "description"),
        message_id=_code(
            values.get("message_id"), "message_id", _MESSAGE_ID, "the event's message id"
        ),
        external_id=_code(
            values.get("external_id"), "external_id", _MESSAGE_ID, "the source system's id"
        ),
        disclosure_consent=_bool(values.get("disclosure_consent"), "disclosure_consent"),
    )
