"""Validation of bulk interaction rows (docs/formats.md, "Interactions"). Pure, no I/O.

``validate_event_row`` turns one row of an interaction file into a ``LogEvent`` or returns
every problem of the row as ``RowError`` values. It runs on millions of rows, so lookups are
dictionaries built once and identifier parsing is cached.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import (
    Action,
    ActorType,
    Channel,
    EventKind,
    Function,
    LogEvent,
)
from counterpoint.kit.files import encodable
from counterpoint.profile.identifiers import parse_identifier, parse_user_id
from counterpoint.profile.records import RowError
from counterpoint.profile.validation import (
    check_column_set,
    country_codes,
    market_fix,
    normalise_market,
    parse_bool,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "EVENT_COLUMNS",
    "MAX_FUTURE",
    "check_event_columns",
    "validate_event_row",
    "validate_event_table",
]

EVENT_COLUMNS: dict[str, bool] = {
    "message_id": True,
    "type": False,
    "user_id": False,
    "anonymous_id": False,
    "channel": False,
    "action": False,
    "event": False,
    "timestamp": True,
    "brand": False,
    "content_id": False,
    "slide": False,
    "actor_type": False,
    "actor_id": False,
    "function": False,
    "market": False,
    "properties": False,
    "synthetic": False,
}
"""Column → required, for interaction files."""

MAX_FUTURE = dt.timedelta(days=1)
"""Rows dated later than this after their receipt are refused."""

_E = TypeVar("_E", bound=enum.Enum)
_T = TypeVar("_T")
_KINDS = {"track": EventKind.TRACK, "identify": EventKind.IDENTIFY}
_CHANNELS = {m.value: m for m in Channel}
_ACTIONS = {m.value: m for m in Action}
_ACTOR_TYPES = {m.value: m for m in ActorType}
_FUNCTIONS = {m.value: m for m in Function}
_SCALARS = frozenset({str, bool, int, type(None)})
_MISS = object()
_FAST_BOOLS: dict[object, bool] = {
    None: False,
    "": False,
    True: True,
    False: False,
    **{text: True for word in ("true", "yes", "1") for text in (word, word.upper(), word.title())},
    **{text: False for word in ("false", "no", "0") for text in (word, word.upper(), word.title())},
}


@functools.cache
def _fast_markets() -> dict[object, str | None]:
    """Every valid market code as written (upper or lower case) → the code."""
    table: dict[object, str | None] = {None: None, "": None}
    for code in country_codes():
        table[code] = table[code.lower()] = code
    return table


_UTC = dt.UTC
_MESSAGE_ID_MAX = 200
_TEXT_MAX = 200
_CACHE_SIZE = 1 << 16


class _RefusedError(Exception):
    """A refused value: the reason and the fix."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


def check_event_columns(
    columns: Iterable[str], *, file: str = "", row: int = 0, required: bool = True
) -> list[RowError]:
    """Refuse unknown (and, when ``required``, missing) interaction columns.

    Pass ``required=False`` for NDJSON chunks, whose keys vary from line to line; the row
    validator still refuses rows that lack a required value.
    """
    names = list(columns)
    known = EVENT_COLUMNS if required else dict.fromkeys(EVENT_COLUMNS, False)
    errors = check_column_set(names, known=known, file=file, row=row)
    if required and "user_id" not in names and "anonymous_id" not in names:
        errors.append(RowError(file, row, "user_id", "", "required column is missing", _WHO_FIX))
    return errors


_WHO_FIX = "fill user_id (an HCP identifier, e.g. npi:1234567893) or anonymous_id"


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _user_subject(text: str) -> str | _RefusedError:
    try:
        return parse_user_id(text, field="user_id").key
    except ValidationFailedError as exc:
        return _RefusedError(exc.detail, exc.fix or _WHO_FIX)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _anonymous_subject(text: str) -> str | _RefusedError:
    try:
        return parse_identifier("anon", text, field="anonymous_id").key
    except ValidationFailedError as exc:
        return _RefusedError(exc.detail, exc.fix or "send the anonymous id the source assigned")


def _text(value: object, max_len: int = _TEXT_MAX) -> str | None:
    """A stripped string, or None when missing; raises ``_RefusedError`` for other types."""
    if value is None:
        return None
    if type(value) is str:
        text = value.strip()
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = str(value).strip()
    else:
        raise _RefusedError(f"is a {type(value).__name__}, not text", "write it as text")
    if len(text) > max_len:
        raise _RefusedError(f"is longer than {max_len} characters", "shorten it")
    return text or None


def _code(value: object, codes: Mapping[str, _E], what: str) -> _E | None:
    text = _text(value)
    if text is None:
        return None
    found = codes.get(text) or codes.get(text.lower())
    if found is None:
        listed = list(codes)
        few = ", ".join(listed) if len(listed) <= 8 else ", ".join(listed[:6]) + ", …"
        raise _RefusedError(f"is not a known {what} code", f"use one of {few} (docs/events.md)")
    return found


def _timestamp(value: object, limit: dt.datetime) -> dt.datetime:
    if isinstance(value, str):
        try:
            stamp = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise _RefusedError("is not an ISO 8601 timestamp", _STAMP_FIX) from None
        if stamp.tzinfo is None:
            raise _RefusedError("has no UTC offset", "add Z or an offset, e.g. +01:00")
    elif isinstance(value, dt.datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
    else:
        raise _RefusedError(f"is a {type(value).__name__}, not a timestamp", _STAMP_FIX)
    if stamp.tzinfo is not _UTC:
        try:
            stamp = stamp.astimezone(_UTC) if stamp.utcoffset() else stamp.replace(tzinfo=_UTC)
        except OverflowError:
            raise _RefusedError("is out of range", _STAMP_FIX) from None
    if stamp > limit:
        raise _RefusedError("timestamp is in the future", "check the clock of the source system")
    return stamp


_STAMP_FIX = "write ISO 8601 with an offset, e.g. 2026-03-01T09:30:00Z"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _properties(value: object) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            raise _RefusedError("is not valid JSON", _PROPERTIES_FIX) from None
        if isinstance(parsed, dict):
            if "\\ud" in value.lower() and not encodable(parsed):
                raise _RefusedError("has a \\u escape that is half of a character", _PROPERTIES_FIX)
            return parsed
    raise _RefusedError("is not a JSON object", _PROPERTIES_FIX)


_PROPERTIES_FIX = 'write a JSON object, e.g. {"duration_s": 600}'


def _market(value: object) -> str | None:
    text = _text(value)
    if text is None:
        return None
    code = normalise_market(text)
    if code is None:
        raise _RefusedError("is not an ISO 3166-1 alpha-2 country code", market_fix(text))
    return code


def _synthetic(value: object) -> bool:
    if value is None or value == "" or value is False:
        return False
    parsed = parse_bool(value)
    if parsed is None:
        raise _RefusedError("is not a boolean", "write true or false")
    return parsed


class _Fields:
    """Reads the fields of one row, recording each refused value."""

    __slots__ = ("errors", "file", "number", "row")

    def __init__(self, row: Mapping[str, object], file: str, number: int) -> None:
        self.row = row
        self.file = file
        self.number = number
        self.errors: list[RowError] = []

    def refuse(self, field: str, reason: str, fix: str) -> None:
        value = self.row.get(field)
        shown = "" if value is None else str(value)
        self.errors.append(RowError(self.file, self.number, field, shown[:200], reason, fix))

    def text(self, field: str, max_len: int = _TEXT_MAX) -> str | None:
        value = self.row.get(field)
        if type(value) is str:  # the common case, without a further call
            text = value.strip()
            if len(text) <= max_len:
                return text or None
        try:
            return _text(value, max_len)
        except _RefusedError as exc:
            self.refuse(field, exc.reason, exc.fix)
            return None

    def parsed(
        self,
        field: str,
        parse: Callable[[object], _T],
        fast: Mapping[object, _T] | None = None,
    ) -> _T | None:
        """``parse`` the value, unless ``fast`` already holds the answer for it."""
        value = self.row.get(field)
        if fast is not None and type(value) in _SCALARS:
            found = fast.get(value, _MISS)
            if found is not _MISS:
                return found  # type: ignore[return-value]
        try:
            return parse(value)
        except _RefusedError as exc:
            self.refuse(field, exc.reason, exc.fix)
            return None

    def timestamp(self, limit: dt.datetime) -> dt.datetime | None:
        value = self.row.get("timestamp")
        if _missing(value):
            self.refuse("timestamp", "is required", _STAMP_FIX)
            return None
        try:
            return _timestamp(value, limit)
        except _RefusedError as exc:
            self.refuse("timestamp", exc.reason, exc.fix)
            return None

    def code(self, field: str, codes: Mapping[str, _E], *, required: bool) -> _E | None:
        value = self.row.get(field)
        if type(value) is str:
            found = codes.get(value)
            if found is not None:
                return found
        if _missing(value):
            if required:
                self.refuse(field, "is required for a track row", f"fill {field} (docs/events.md)")
            return None
        try:
            return _code(value, codes, field)
        except _RefusedError as exc:
            self.refuse(field, exc.reason, exc.fix)
            return None

    def subject(self, user_id: str | None, anonymous_id: str | None) -> str:
        if user_id is not None:
            found = _user_subject(user_id)
            if isinstance(found, _RefusedError):
                self.refuse("user_id", found.reason, found.fix)
                return ""
            return found
        if anonymous_id is not None:
            found = _anonymous_subject(anonymous_id)
            if isinstance(found, _RefusedError):
                self.refuse("anonymous_id", found.reason, found.fix)
                return ""
            return found
        self.refuse("user_id", "neither user_id nor anonymous_id is given", _WHO_FIX)
        return ""


def validate_event_row(
    row: Mapping[str, object],
    *,
    row_number: int,
    file: str,
    source: str,
    received_at: dt.datetime,
) -> LogEvent | list[RowError]:
    """One interaction row as a ``LogEvent``, or every problem of the row.

    ``subject`` is the canonical key of ``user_id`` (``npi:…``, ``email:…``), else
    ``anon:<anonymous_id>``. ``payload`` is ``{"properties": …}`` for track rows and
    ``{"traits": …}`` for identify rows. ``received_at`` is when the file was received; rows
    dated more than ``MAX_FUTURE`` after it are refused.
    """
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=_UTC)
    f = _Fields(row, file, row_number)
    message_id = f.text("message_id", _MESSAGE_ID_MAX)
    if message_id is None and not f.errors:
        f.refuse("message_id", "is required", "give every event a unique id")
    kind = f.code("type", _KINDS, required=False) or EventKind.TRACK
    user_id = f.text("user_id")
    anonymous_id = f.text("anonymous_id")
    if kind is EventKind.IDENTIFY and _missing(row.get("user_id")):
        f.refuse("user_id", "is required for an identify row", "fill user_id with the HCP's id")
    subject = f.subject(user_id, anonymous_id)
    track = kind is EventKind.TRACK
    channel = f.code("channel", _CHANNELS, required=track)
    action = f.code("action", _ACTIONS, required=track)
    occurred_at = f.timestamp(received_at + MAX_FUTURE)
    properties = f.parsed("properties", _properties)
    event = LogEvent(
        message_id=message_id or "",
        kind=kind,
        subject=subject,
        occurred_at=occurred_at or received_at,
        received_at=received_at,
        source=source,
        channel=channel,
        action=action,
        event_name=f.text("event"),
        anonymous_id=anonymous_id,
        brand=f.text("brand"),
        content_id=f.text("content_id"),
        slide=f.text("slide"),
        actor_type=f.code("actor_type", _ACTOR_TYPES, required=False),
        actor_id=f.text("actor_id"),
        function=f.code("function", _FUNCTIONS, required=False),
        market=f.parsed("market", _market, _fast_markets()),
        payload={"properties" if track else "traits": properties or {}},
        synthetic=f.parsed("synthetic", _synthetic, _FAST_BOOLS) or False,
    )
    return f.errors or event


def validate_event_table(
    table: pa.Table,
    *,
    file: str,
    source: str,
    received_at: dt.datetime,
    first_row_number: int = 1,
) -> tuple[list[LogEvent], list[RowError]]:
    """Every row of an Arrow table (a Parquet chunk): the valid events and all row errors."""
    events: list[LogEvent] = []
    errors: list[RowError] = []
    for number, row in enumerate(table.to_pylist(), first_row_number):
        result = validate_event_row(
            row, row_number=number, file=file, source=source, received_at=received_at
        )
        if isinstance(result, LogEvent):
            events.append(result)
        else:
            errors.extend(result)
    return events, errors
