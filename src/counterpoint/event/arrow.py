"""Conversion between ``LogEvent`` records and Arrow tables (the log's bulk format)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec
import pyarrow as pa

from counterpoint.event.canonical import (
    LOG_COLUMNS,
    Action,
    ActorType,
    Channel,
    EventKind,
    Function,
    LogEvent,
)
from counterpoint.kit.clock import utc

__all__ = ["LOG_SCHEMA", "event_from_row", "events_to_arrow"]

_TS = pa.timestamp("us", tz="UTC")

LOG_SCHEMA = pa.schema(
    [
        ("message_id", pa.string()),
        ("kind", pa.string()),
        ("subject", pa.string()),
        ("occurred_at", _TS),
        ("received_at", _TS),
        ("source", pa.string()),
        ("channel", pa.string()),
        ("action", pa.string()),
        ("event_name", pa.string()),
        ("anonymous_id", pa.string()),
        ("brand", pa.string()),
        ("content_id", pa.string()),
        ("slide", pa.string()),
        ("actor_type", pa.string()),
        ("actor_id", pa.string()),
        ("function", pa.string()),
        ("market", pa.string()),
        ("payload", pa.string()),
        ("synthetic", pa.bool_()),
    ]
)
assert tuple(LOG_SCHEMA.names) == LOG_COLUMNS


_ENCODE = msgspec.json.Encoder(enc_hook=str).encode
"""JSON text of a payload (and of a file's properties, ``bulk._properties_json``): compact,
UTF-8, a value JSON has no type for written as its ``str``. msgspec's encoder takes a tenth of
the time of the standard library's; the group commit encodes every event's payload while it
holds the interpreter lock."""


def _dumps(payload: dict[str, Any]) -> str:
    return _ENCODE(payload).decode()


def events_to_arrow(events: Sequence[LogEvent]) -> pa.Table:
    # column by column; the enums are ``StrEnum`` members, which Arrow takes as strings
    return pa.Table.from_arrays(
        [
            pa.array([e.message_id for e in events], pa.string()),
            pa.array([e.kind for e in events], pa.string()),
            pa.array([e.subject for e in events], pa.string()),
            pa.array([e.occurred_at for e in events], _TS),
            pa.array([e.received_at for e in events], _TS),
            pa.array([e.source for e in events], pa.string()),
            pa.array([e.channel for e in events], pa.string()),
            pa.array([e.action for e in events], pa.string()),
            pa.array([e.event_name for e in events], pa.string()),
            pa.array([e.anonymous_id for e in events], pa.string()),
            pa.array([e.brand for e in events], pa.string()),
            pa.array([e.content_id for e in events], pa.string()),
            pa.array([e.slide for e in events], pa.string()),
            pa.array([e.actor_type for e in events], pa.string()),
            pa.array([e.actor_id for e in events], pa.string()),
            pa.array([e.function for e in events], pa.string()),
            pa.array([e.market for e in events], pa.string()),
            pa.array([_ENCODE(e.payload).decode() for e in events], pa.string()),
            pa.array([e.synthetic for e in events], pa.bool_()),
        ],
        schema=LOG_SCHEMA,
    )


def _opt(enum_type: Any, value: str | None) -> Any:
    return enum_type(value) if value is not None else None


def event_from_row(row: dict[str, Any]) -> LogEvent:
    """Rebuild a ``LogEvent`` from one row read back from a log table."""
    payload = row.get("payload")
    return LogEvent(
        message_id=row["message_id"],
        kind=EventKind(row["kind"]),
        subject=row["subject"],
        occurred_at=utc(row["occurred_at"]),
        received_at=utc(row["received_at"]),
        source=row["source"],
        channel=_opt(Channel, row.get("channel")),
        action=_opt(Action, row.get("action")),
        event_name=row.get("event_name"),
        anonymous_id=row.get("anonymous_id"),
        brand=row.get("brand"),
        content_id=row.get("content_id"),
        slide=row.get("slide"),
        actor_type=_opt(ActorType, row.get("actor_type")),
        actor_id=row.get("actor_id"),
        function=_opt(Function, row.get("function")),
        market=row.get("market"),
        payload=json.loads(payload) if isinstance(payload, str) else (payload or {}),
        synthetic=bool(row.get("synthetic")),
    )
