"""HCP identifiers: types, normalisation and validation. Pure, no I/O.

An identifier is written ``type:value`` with a normalised value, for example
``npi:1234567893``, ``email:jane.doe@clinic.example``, ``phone:+14155550100``, ``crm:A-1``,
``anon:3f2c…``. See docs/identity.md for the accepted forms and the matching priorities.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import phonenumbers

from counterpoint.errors import ValidationFailedError

__all__ = [
    "Identifier",
    "IdentifierType",
    "npi_is_valid",
    "parse_identifier",
    "parse_user_id",
]


class IdentifierType(enum.StrEnum):
    """Kinds of identifier, in matching priority order (strongest first)."""

    NPI = "npi"
    """US National Provider Identifier: 10 digits, Luhn check over the prefix 80840."""
    NATIONAL = "national"
    """Another national registry id, written ``national:<ISO country>-<id>``, e.g. ``FR-10001``."""
    VENDOR = "vendor"
    """A data vendor's id (e.g. a OneKey id)."""
    CRM = "crm"
    """The CRM's account id."""
    EMAIL = "email"
    """An e-mail address, lower-cased and trimmed."""
    PHONE = "phone"
    """A phone number in E.164 form (``+`` and digits)."""
    ANON = "anon"
    """An anonymous web or app id (Segment ``anonymousId``)."""

    @property
    def priority(self) -> int:
        """Lower is stronger: used to order matching rules and to choose merge survivors."""
        return _PRIORITY[self]


_PRIORITY: dict[IdentifierType, int] = {t: i for i, t in enumerate(IdentifierType)}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$")
_NATIONAL = re.compile(r"^[A-Z]{2}-[A-Za-z0-9.\-/]{1,64}$")
_TOKEN = re.compile(r"^[\w.\-:/@+#]{1,128}$")


def npi_is_valid(npi: str) -> bool:
    """The NPI check digit: Luhn over ``80840`` followed by the first nine digits."""
    if len(npi) != 10 or not npi.isdigit():
        return False
    digits = [int(c) for c in "80840" + npi[:9]]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10 == int(npi[9])


@dataclass(frozen=True, slots=True, order=True)
class Identifier:
    type: IdentifierType
    value: str

    def __str__(self) -> str:
        return f"{self.type.value}:{self.value}"

    @property
    def key(self) -> str:
        return str(self)


def _normalise(kind: IdentifierType, raw: str) -> str:
    value = raw.strip()
    if kind is IdentifierType.NPI:
        if not npi_is_valid(value):
            raise ValueError("an NPI is 10 digits whose last is the Luhn check digit over 80840")
        return value
    if kind is IdentifierType.EMAIL:
        value = value.lower()
        if len(value) > 254 or not _EMAIL.match(value):  # length first: bounds the match
            raise ValueError("an e-mail address looks like name@domain.tld")
        return value
    if kind is IdentifierType.PHONE:
        try:
            number = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            raise ValueError("a phone number is in E.164 form, e.g. +14155550100") from None
        if not phonenumbers.is_possible_number(number):
            raise ValueError("a phone number is in E.164 form, e.g. +14155550100")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if kind is IdentifierType.NATIONAL:
        value = value[:2].upper() + value[2:]
        if not _NATIONAL.match(value):
            raise ValueError("a national id is <ISO country>-<id>, e.g. FR-810001234567")
        return value
    if not _TOKEN.match(value):
        raise ValueError("an id is 1 to 128 letters, digits or . - _ : / @ + #")
    return value


def parse_identifier(kind: str, raw: str, *, field: str = "identifier") -> Identifier:
    """Build a normalised identifier of a named type, or raise a validation error."""
    try:
        id_type = IdentifierType(kind.strip().lower())
    except ValueError:
        raise ValidationFailedError(
            f"unknown identifier type {kind!r}",
            field=field,
            fix="use one of: " + ", ".join(t.value for t in IdentifierType),
        ) from None
    try:
        return Identifier(id_type, _normalise(id_type, raw))
    except ValueError as exc:
        raise ValidationFailedError(
            f"invalid {id_type.value} {raw!r}", field=field, fix=str(exc)
        ) from None


def parse_user_id(user_id: str, *, field: str = "userId") -> Identifier:
    """Read a Segment ``userId`` as an HCP identifier.

    ``type:value`` names the type explicitly. A bare value is read as an NPI when it is ten
    digits, an e-mail address when it contains ``@``, a phone number when it starts with
    ``+``, and a CRM id otherwise.
    """
    text = user_id.strip()
    if not text:
        raise ValidationFailedError(
            "the user id is empty", field=field, fix="send an HCP identifier"
        )
    head, sep, rest = text.partition(":")
    if sep and head.lower() in IdentifierType.__members__.values():
        return parse_identifier(head, rest, field=field)
    if len(text) == 10 and text.isdigit():
        return parse_identifier("npi", text, field=field)
    if "@" in text:
        return parse_identifier("email", text, field=field)
    if text.startswith("+"):
        return parse_identifier("phone", text, field=field)
    return parse_identifier("crm", text, field=field)
