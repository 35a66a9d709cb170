"""Conversion between ``LogEvent`` records and Arrow tables (the log's bulk format)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

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


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)


def events_to_arrow(events: Sequence[LogEvent]) -> pa.Table:
    cols: dict[str, list[Any]] = {name: [] for name in LOG_COLUMNS}
    for e in events:
        cols["message_id"].append(e.message_id)
        cols["kind"].append(e.kind.value)
        cols["subject"].append(e.subject)
        cols["occurred_at"].append(e.occurred_at)
        cols["received_at"].append(e.received_at)
        cols["source"].append(e.source)
        cols["channel"].append(e.channel.value if e.channel else None)
        cols["action"].append(e.action.value if e.action else None)
        cols["event_name"].append(e.event_name)
        cols["anonymous_id"].append(e.anonymous_id)
        cols["brand"].append(e.brand)
        cols["content_id"].append(e.content_id)
        cols["slide"].append(e.slide)
        cols["actor_type"].append(e.actor_type.value if e.actor_type else None)
        cols["actor_id"].append(e.actor_id)
        cols["function"].append(e.function.value if e.function else None)
        cols["market"].append(e.market)
        cols["payload"].append(_dumps(e.payload))
        cols["synthetic"].append(e.synthetic)
    return pa.Table.from_pydict(cols, schema=LOG_SCHEMA)


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
