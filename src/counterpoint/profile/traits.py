"""What an ``identify`` call's traits say: further identifiers, and profile attributes. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from counterpoint.errors import ValidationFailedError
from counterpoint.profile.identifiers import Identifier, parse_identifier

__all__ = ["ATTRIBUTE_TRAITS", "IDENTIFIER_TRAITS", "trait_attributes", "trait_identifiers"]

IDENTIFIER_TRAITS: Mapping[str, str] = {
    "npi": "npi",
    "national_id": "national",
    "vendor_id": "vendor",
    "crm_id": "crm",
    "email": "email",
    "phone": "phone",
}
"""Trait name → identifier type. Values that are not valid identifiers are ignored."""

ATTRIBUTE_TRAITS: Mapping[str, str] = {
    "first_name": "first_name",
    "firstName": "first_name",
    "last_name": "last_name",
    "lastName": "last_name",
    "title": "title",
    "specialty": "specialty",
    "market": "market",
    "territory": "territory",
    "potential_decile": "potential_decile",
    "segments": "segments",
    "persona": "persona",
    "adoption_stage": "adoption_stage",
    "preferred_language": "preferred_language",
    "time_zone": "time_zone",
}
"""Trait name → profile attribute. Other traits stay in the event's payload only."""


def trait_identifiers(traits: Mapping[str, Any]) -> list[Identifier]:
    found: list[Identifier] = []
    for name, kind in IDENTIFIER_TRAITS.items():
        value = traits.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            try:
                found.append(parse_identifier(kind, str(value)))
            except ValidationFailedError:
                continue
    return found


def _clean(name: str, value: Any) -> Any:
    """A value of the right shape for ``name``, or None when it is not one."""
    if name == "potential_decile":
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10
        return value if ok else None
    if name == "segments":
        if isinstance(value, str):
            value = [v for v in value.split(";") if v]
        ok = isinstance(value, list) and all(isinstance(v, str) and len(v) <= 100 for v in value)
        return sorted(set(value)) if ok else None
    if name == "adoption_stage":
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
        return dict(value) if ok else None
    if name == "market":
        return value.upper() if isinstance(value, str) and len(value) == 2 else None
    return value.strip()[:200] if isinstance(value, str) and value.strip() else None


def trait_attributes(traits: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for trait, name in ATTRIBUTE_TRAITS.items():
        if trait in traits:
            value = _clean(name, traits[trait])
            if value is not None:
                attributes[name] = value
    return attributes
