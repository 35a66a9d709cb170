"""Contact policy: how much of an HCP's attention the company may use, per market. Pure.

A market's policy caps touches (and estimated minutes of HCP time) per period across all
brands and channels, per channel and per brand; sets minimum gaps between touches on a
channel; keeps quiet hours and quiet weekdays in the HCP's own time zone; and estimates the
minutes each channel takes. Policies are documents (YAML or JSON, see docs/contact-policy.md);
``parse_policies`` validates one and names the path of every problem. A market without a
policy of its own gets ``default_policy``.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Channel

__all__ = [
    "DEFAULT_CAPS",
    "DEFAULT_GAPS_HOURS",
    "DEFAULT_MINUTES",
    "DEFAULT_QUIET_HOURS",
    "DEFAULT_QUIET_WEEKDAYS",
    "MIN_RETENTION_DAYS",
    "WEEKDAYS",
    "Cap",
    "CapScope",
    "ContactPolicy",
    "PolicyDocumentError",
    "QuietHours",
    "default_policy",
    "parse_policies",
    "parse_policy",
    "policy_document",
]


class PolicyDocumentError(ValidationFailedError):
    code = "invalid_policy"


class CapScope(enum.StrEnum):
    ALL = "all"  # every channel and brand together: the HCP's one attention budget
    CHANNEL = "channel"
    BRAND = "brand"


@dataclass(frozen=True, slots=True)
class Cap:
    """At most ``max_touches`` touches and/or ``max_minutes`` minutes of HCP time in the
    last ``period_days`` days (today, UTC, and the days before it)."""

    scope: CapScope
    period_days: int
    key: str | None = None  # the channel or brand (None for ``all``)
    max_touches: int | None = None
    max_minutes: float | None = None

    def applies_to(self, channel: Channel, brand: str | None) -> bool:
        if self.scope is CapScope.ALL:
            return True
        if self.scope is CapScope.CHANNEL:
            return self.key == channel.value
        return brand is not None and self.key == brand

    def counts(self, channel: str, brand: str | None) -> bool:
        """Whether a past touch on ``channel``/``brand`` spends this cap's budget."""
        if self.scope is CapScope.ALL:
            return True
        if self.scope is CapScope.CHANNEL:
            return self.key == channel
        return brand is not None and self.key == brand

    def label(self) -> str:
        what = "all channels and brands" if self.scope is CapScope.ALL else f"{self.key}"
        return f"{what} per {self.period_days} days"


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local times when no contact is made; ``start`` after ``end`` wraps midnight."""

    start: dt.time
    end: dt.time

    def contains(self, local: dt.time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


WEEKDAYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)

DEFAULT_MINUTES: Mapping[Channel, float] = {
    Channel.F2F_CALL: 15,
    Channel.REMOTE_CALL: 15,
    Channel.PHONE: 10,
    Channel.REP_EMAIL: 3,
    Channel.CAMPAIGN_EMAIL: 2,
    Channel.SMS: 0.5,
    Channel.MESSAGING: 1,
    Channel.WEBSITE: 0,
    Channel.HCP_PORTAL: 0,
    Channel.WEBINAR: 45,
    Channel.EVENT: 120,
    Channel.CONGRESS: 240,
    Channel.EVENT_APP: 1,
    Channel.ADVISORY_BOARD: 180,
    Channel.DIRECT_MAIL: 2,
    Channel.SOCIAL_MEDIA: 1,
    Channel.SAMPLES: 5,
    Channel.MEDICAL_INQUIRY: 10,
    Channel.SURVEY: 10,
}
"""Estimated minutes of HCP time per touch, when the event does not report a duration."""

DEFAULT_CAPS: tuple[Cap, ...] = (
    Cap(CapScope.ALL, 7, max_touches=4),
    Cap(CapScope.ALL, 30, max_touches=12, max_minutes=240),
    Cap(CapScope.CHANNEL, 7, key=Channel.CAMPAIGN_EMAIL.value, max_touches=2),
    Cap(CapScope.CHANNEL, 7, key=Channel.SMS.value, max_touches=1),
)
DEFAULT_GAPS_HOURS: Mapping[Channel, float] = {
    Channel.CAMPAIGN_EMAIL: 48,
    Channel.REP_EMAIL: 24,
    Channel.SMS: 72,
    Channel.PHONE: 24,
    Channel.F2F_CALL: 72,
    Channel.REMOTE_CALL: 48,
}
DEFAULT_QUIET_HOURS = QuietHours(dt.time(20, 0), dt.time(8, 0))
DEFAULT_QUIET_WEEKDAYS: frozenset[int] = frozenset({5, 6})
MIN_RETENTION_DAYS = 90
"""Touches are kept for the longest cap period of any policy, and never less than this."""
_MAX_PERIOD_DAYS = 366

# Market time zones of the built-in policy (used for HCPs without a time zone of their own).
_MARKET_ZONES: Mapping[str, str] = {
    "AT": "Europe/Vienna",
    "AU": "Australia/Sydney",
    "BE": "Europe/Brussels",
    "BR": "America/Sao_Paulo",
    "CA": "America/Toronto",
    "CH": "Europe/Zurich",
    "DE": "Europe/Berlin",
    "DK": "Europe/Copenhagen",
    "ES": "Europe/Madrid",
    "FI": "Europe/Helsinki",
    "FR": "Europe/Paris",
    "GB": "Europe/London",
    "IE": "Europe/Dublin",
    "IT": "Europe/Rome",
    "JP": "Asia/Tokyo",
    "NL": "Europe/Amsterdam",
    "NO": "Europe/Oslo",
    "PL": "Europe/Warsaw",
    "PT": "Europe/Lisbon",
    "SE": "Europe/Stockholm",
    "US": "America/New_York",
}


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    market: str
    time_zone: str
    caps: tuple[Cap, ...] = ()
    min_gap_hours: Mapping[Channel, float] = field(default_factory=dict)
    quiet_hours: QuietHours | None = None
    quiet_weekdays: frozenset[int] = frozenset()
    minutes: Mapping[Channel, float] = field(default_factory=lambda: dict(DEFAULT_MINUTES))
    no_consent_channels: frozenset[Channel] = frozenset()
    builtin: bool = False

    def minutes_of(self, channel: Channel | str) -> float:
        try:
            return float(self.minutes.get(Channel(channel), DEFAULT_MINUTES[Channel(channel)]))
        except ValueError:
            return 0.0

    @property
    def longest_period_days(self) -> int:
        return max((c.period_days for c in self.caps), default=0)


def default_policy(market: str) -> ContactPolicy:
    """The built-in policy for a market without one of its own (docs/contact-policy.md)."""
    return ContactPolicy(
        market=market,
        time_zone=_MARKET_ZONES.get(market, "UTC"),
        caps=DEFAULT_CAPS,
        min_gap_hours=dict(DEFAULT_GAPS_HOURS),
        quiet_hours=DEFAULT_QUIET_HOURS,
        quiet_weekdays=DEFAULT_QUIET_WEEKDAYS,
        minutes=dict(DEFAULT_MINUTES),
        builtin=True,
    )


# --- the document format --------------------------------------------------------------------
_MARKET = re.compile(r"^[A-Z]{2}$")
_KEY = re.compile(r"^[\w.\-]{1,64}$")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_POLICY_KEYS = frozenset(
    {
        "market",
        "time_zone",
        "caps",
        "min_gap_hours",
        "quiet_hours",
        "quiet_weekdays",
        "minutes",
        "no_consent_channels",
    }
)
_CAP_KEYS = frozenset({"scope", "key", "period_days", "max_touches", "max_minutes"})


def _fail(path: str, problem: str, fix: str) -> PolicyDocumentError:
    return PolicyDocumentError(f"{path}: {problem}", field=path, fix=fix)


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, "is not a mapping", "write key: value pairs here")
    return value


def _list(value: Any, path: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise _fail(path, "is not a list", "write a list here")
    return value


def _unknown_keys(doc: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    for key in doc:
        if key not in allowed:
            raise _fail(
                f"{path}.{key}" if path else str(key),
                "is not a known setting",
                f"use only: {', '.join(sorted(allowed))}",
            )


def _channel(value: Any, path: str) -> Channel:
    try:
        return Channel(str(value))
    except ValueError:
        raise _fail(
            path,
            f"{str(value)[:40]!r} is not a channel",
            f"use one of: {', '.join(c.value for c in Channel)}",
        ) from None


def _number(value: Any, path: str, *, integer: bool = False, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(path, f"{str(value)[:40]!r} is not a number", "write a number")
    if integer and int(value) != value:
        raise _fail(path, f"{value} is not a whole number", "write a whole number")
    if value < 0 or (positive and value == 0):
        raise _fail(
            path,
            f"{value} is {'negative' if value < 0 else 'zero'}",
            "write a number above zero" if positive else "write zero or more",
        )
    return float(value)


def _time(value: Any, path: str) -> dt.time:
    text = str(value)
    match = _TIME.fullmatch(text)
    if match is None:
        raise _fail(path, f"{text[:20]!r} is not a time of day", 'write HH:MM, e.g. "20:00"')
    return dt.time(int(match.group(1)), int(match.group(2)))


def _zone(value: Any, path: str) -> str:
    text = str(value)
    try:
        zoneinfo.ZoneInfo(text)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise _fail(
            path, f"{text[:60]!r} is not a time zone", 'write an IANA zone, e.g. "Europe/Berlin"'
        ) from None
    return text


def _cap(raw: Any, path: str) -> Cap:
    doc = _mapping(raw, path)
    _unknown_keys(doc, _CAP_KEYS, path)
    try:
        scope = CapScope(str(doc.get("scope", "")))
    except ValueError:
        raise _fail(
            f"{path}.scope", "is missing or unknown", "write all, channel or brand"
        ) from None
    key: str | None = None
    if scope is CapScope.ALL:
        if doc.get("key") is not None:
            raise _fail(f"{path}.key", "a cap over all channels has no key", "remove key")
    elif scope is CapScope.CHANNEL:
        key = _channel(doc.get("key"), f"{path}.key").value
    else:
        key = str(doc.get("key") or "")
        if not _KEY.fullmatch(key):
            raise _fail(f"{path}.key", "is not a brand", "write the brand (1-64 letters, digits)")
    if "period_days" not in doc:
        raise _fail(f"{path}.period_days", "is missing", "write the period in days")
    period = int(_number(doc["period_days"], f"{path}.period_days", integer=True, positive=True))
    if period > _MAX_PERIOD_DAYS:
        raise _fail(f"{path}.period_days", f"{period} is too long", "use at most 366 days")
    touches = doc.get("max_touches")
    minutes = doc.get("max_minutes")
    if touches is None and minutes is None:
        raise _fail(path, "caps nothing", "give max_touches and/or max_minutes")
    return Cap(
        scope=scope,
        period_days=period,
        key=key,
        max_touches=(
            None if touches is None else int(_number(touches, f"{path}.max_touches", integer=True))
        ),
        max_minutes=None if minutes is None else _number(minutes, f"{path}.max_minutes"),
    )


def _caps(raw: Any, path: str) -> tuple[Cap, ...]:
    caps: list[Cap] = []
    seen: dict[tuple[CapScope, str | None, int], int] = {}
    for i, item in enumerate(_list(raw, path)):
        cap = _cap(item, f"{path}[{i}]")
        ident = (cap.scope, cap.key, cap.period_days)
        if ident in seen:
            raise _fail(
                f"{path}[{i}]",
                f"overlaps {path}[{seen[ident]}] (same scope, key and period)",
                "merge the two caps into one",
            )
        seen[ident] = i
        caps.append(cap)
    return tuple(caps)


def _per_channel(raw: Any, path: str) -> dict[Channel, float]:
    return {
        _channel(k, f"{path}.{k}"): _number(v, f"{path}.{k}")
        for k, v in _mapping(raw, path).items()
    }


def _weekdays(raw: Any, path: str) -> frozenset[int]:
    days: set[int] = set()
    for i, item in enumerate(_list(raw, path)):
        name = str(item).strip().lower()
        if name not in WEEKDAYS:
            raise _fail(f"{path}[{i}]", f"{name[:20]!r} is not a weekday", "write e.g. saturday")
        days.add(WEEKDAYS.index(name))
    return frozenset(days)


def _quiet(raw: Any, path: str) -> QuietHours | None:
    if raw is None:
        return None
    doc = _mapping(raw, path)
    _unknown_keys(doc, frozenset({"start", "end"}), path)
    start = _time(doc.get("start"), f"{path}.start")
    end = _time(doc.get("end"), f"{path}.end")
    if start == end:
        raise _fail(f"{path}.end", "equals start", "give different times, or remove quiet_hours")
    return QuietHours(start, end)


def parse_policy(raw: Any, path: str = "") -> ContactPolicy:
    """One market's policy from its document; every problem names its path."""
    doc = _mapping(raw, path or "document")
    _unknown_keys(doc, _POLICY_KEYS, path)
    at = f"{path}." if path else ""
    market = str(doc.get("market") or "").strip().upper()
    if not _MARKET.fullmatch(market):
        raise _fail(f"{at}market", "is missing or not a country code", "write e.g. DE or US")
    minutes = dict(DEFAULT_MINUTES)
    minutes.update(_per_channel(doc.get("minutes", {}), f"{at}minutes"))
    return ContactPolicy(
        market=market,
        time_zone=_zone(doc.get("time_zone") or _MARKET_ZONES.get(market, "UTC"), f"{at}time_zone"),
        caps=_caps(doc.get("caps", []), f"{at}caps"),
        min_gap_hours=_per_channel(doc.get("min_gap_hours", {}), f"{at}min_gap_hours"),
        quiet_hours=_quiet(doc.get("quiet_hours"), f"{at}quiet_hours"),
        quiet_weekdays=_weekdays(doc.get("quiet_weekdays", []), f"{at}quiet_weekdays"),
        minutes=minutes,
        no_consent_channels=frozenset(
            _channel(c, f"{at}no_consent_channels[{i}]")
            for i, c in enumerate(
                _list(doc.get("no_consent_channels", []), f"{at}no_consent_channels")
            )
        ),
    )


def parse_policies(raw: Any) -> list[ContactPolicy]:
    """A document holding one policy, or ``policies:`` a list of them (one per market)."""
    doc = _mapping(raw, "document")
    if "policies" not in doc:
        return [parse_policy(doc)]
    _unknown_keys(doc, frozenset({"policies"}), "")
    policies: list[ContactPolicy] = []
    where: dict[str, int] = {}
    for i, item in enumerate(_list(doc["policies"], "policies")):
        policy = parse_policy(item, f"policies[{i}]")
        if policy.market in where:
            raise _fail(
                f"policies[{i}].market",
                f"{policy.market} is defined twice (also policies[{where[policy.market]}])",
                "keep one policy per market",
            )
        where[policy.market] = i
        policies.append(policy)
    if not policies:
        raise _fail("policies", "is empty", "give at least one market's policy")
    return policies


def _hhmm(value: dt.time) -> str:
    return value.strftime("%H:%M")


def policy_document(policy: ContactPolicy) -> dict[str, Any]:
    """The document form of a policy (what ``parse_policy`` reads back to the same policy)."""
    doc: dict[str, Any] = {
        "market": policy.market,
        "time_zone": policy.time_zone,
        "caps": [
            {
                "scope": c.scope.value,
                **({"key": c.key} if c.key is not None else {}),
                "period_days": c.period_days,
                **({"max_touches": c.max_touches} if c.max_touches is not None else {}),
                **({"max_minutes": c.max_minutes} if c.max_minutes is not None else {}),
            }
            for c in policy.caps
        ],
        "min_gap_hours": {k.value: v for k, v in sorted(policy.min_gap_hours.items())},
        "quiet_weekdays": [WEEKDAYS[d] for d in sorted(policy.quiet_weekdays)],
        "minutes": {k.value: v for k, v in sorted(policy.minutes.items())},
        "no_consent_channels": sorted(c.value for c in policy.no_consent_channels),
    }
    if policy.quiet_hours is not None:
        doc["quiet_hours"] = {
            "start": _hhmm(policy.quiet_hours.start),
            "end": _hhmm(policy.quiet_hours.end),
        }
    return doc
