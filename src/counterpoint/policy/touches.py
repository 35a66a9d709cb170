"""The ``touches`` consumer of the event log: the contact budget spent, and hard bounces.

Per identifier, UTC day, channel and brand it counts touches (events whose action is in
``TOUCH_ACTIONS``: a rep visit, a webinar attended and an e-mail sent all spend the same
budget), with the minutes the events reported (``properties.duration_min``); per identifier and
channel it keeps the last touch. Of each day's touches it also counts the *promotional* ones:
touches whose ``function`` is commercial (an event without a function counts as commercial
unless it is a medical inquiry or by an MSL or medical affairs, the same default as the
tracking API), which the HCP's own frequency limit reads. A ``bounced`` event with
``properties.bounce_type == "hard"`` suppresses that consent channel for the identifier until
operations lift it. Touches older than the retention (the longest cap period of any stored
policy, at least 90 days) are pruned.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.consent.ledger import consent_channel
from counterpoint.errors import CounterpointError
from counterpoint.event.canonical import TOUCH_ACTIONS, Action, ActorType, Channel, Function
from counterpoint.event.consumer import LogConsumer
from counterpoint.event.log import EventLog
from counterpoint.kit.clock import Clock, utc
from counterpoint.kit.db import fast_upsert
from counterpoint.policy.contact import MIN_RETENTION_DAYS, parse_policy
from counterpoint.policy.policy_models import (
    ContactPolicyVersion,
    TouchDayRow,
    TouchLast,
)

__all__ = ["TouchCounter", "is_promotional", "reported_minutes"]

_WANTED = sorted({a.value for a in TOUCH_ACTIONS} | {Action.BOUNCED.value})
_TOUCH = frozenset(a.value for a in TOUCH_ACTIONS)
_COLUMNS = ["message_id", "subject", "occurred_at", "channel", "action", "brand", "function",
            "actor_type", "payload"]  # fmt: skip
_MEDICAL_ACTORS = frozenset({ActorType.MSL.value, ActorType.MEDICAL_AFFAIRS.value})


def is_promotional(function: str | None, channel: Channel, actor_type: str | None) -> bool:
    """Whether a touch counts against the HCP's own limit on promotional contacts: its
    function is commercial; without a function, commercial unless the touch is a medical
    inquiry or by medical staff (the tracking API's default)."""
    if function is not None:
        return function == Function.COMMERCIAL.value
    return channel is not Channel.MEDICAL_INQUIRY and actor_type not in _MEDICAL_ACTORS


def _properties(payload: Any) -> dict[str, Any]:
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return {}
    props = payload.get("properties") if isinstance(payload, dict) else None
    return props if isinstance(props, dict) else {}


def reported_minutes(props: dict[str, Any]) -> float | None:
    """The duration an event reports, in minutes (``duration_min``), if a sane number."""
    value = props.get("duration_min", props.get("duration_minutes"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= 24 * 60 else None


def _channel(value: str | None) -> Channel | None:
    try:
        return Channel(value) if value else None
    except ValueError:
        return None


class TouchCounter(LogConsumer):
    name = "touches"

    def __init__(self, sessions: sessionmaker[Session], log: EventLog, clock: Clock) -> None:
        super().__init__(sessions, log)
        self._clock = clock

    def reset(self, session: Session) -> None:
        """Touches are rebuilt from the log; suppressions (and their lifts) are kept."""
        session.execute(delete(TouchDayRow))
        session.execute(delete(TouchLast))

    def apply(self, session: Session, table: pa.Table) -> None:
        mask = pc.is_in(table.column("action"), value_set=pa.array(_WANTED))
        rows = table.filter(pc.fill_null(mask, False)).select(_COLUMNS)
        # per (subject, day, channel, brand): touches, reported, minutes, promotional
        days: dict[tuple[str, dt.date, str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0, 0])
        last: dict[tuple[str, str], dt.datetime] = {}
        bounces: dict[tuple[str, str], tuple[dt.datetime, str]] = {}
        for row in rows.to_pylist():
            channel = _channel(row["channel"])
            if channel is None or not row["subject"]:
                continue
            at = utc(row["occurred_at"])
            props = _properties(row["payload"])
            if row["action"] in _TOUCH:
                cell = days[(row["subject"], at.date(), channel.value, row["brand"] or "")]
                cell[0] += 1
                minutes = reported_minutes(props)
                if minutes is not None:
                    cell[1] += 1
                    cell[2] += minutes
                if is_promotional(row["function"], channel, row["actor_type"]):
                    cell[3] += 1
                key = (row["subject"], channel.value)
                if key not in last or last[key] < at:
                    last[key] = at
            elif props.get("bounce_type") == "hard" and (needed := consent_channel(channel)):
                skey = (row["subject"], needed.value)
                if skey not in bounces or bounces[skey][0] < at:
                    bounces[skey] = (at, row["message_id"])
        self._write(session, days, last, bounces)
        self._prune(session)

    @staticmethod
    def _write(
        session: Session,
        days: dict[tuple[str, dt.date, str, str], list[float]],
        last: dict[tuple[str, str], dt.datetime],
        bounces: dict[tuple[str, str], tuple[dt.datetime, str]],
    ) -> None:
        fast_upsert(
            session,
            "touch_day",
            ("subject", "day", "channel", "brand", "touches", "reported_touches",
             "reported_minutes", "promotional"),
            [(*k, int(v[0]), int(v[1]), float(v[2]), int(v[3])) for k, v in days.items()],
            keys=("subject", "day", "channel", "brand"),
            set_sql="touches = touch_day.touches + excluded.touches, "
            "reported_touches = touch_day.reported_touches + excluded.reported_touches, "
            "reported_minutes = touch_day.reported_minutes + excluded.reported_minutes, "
            "promotional = touch_day.promotional + excluded.promotional",
        )  # fmt: skip
        fast_upsert(
            session,
            "touch_last",
            ("subject", "channel", "last_at"),
            [(*k, v) for k, v in last.items()],
            keys=("subject", "channel"),
            set_sql="last_at = excluded.last_at",
            where_sql="excluded.last_at > touch_last.last_at",
        )
        # A newer hard bounce suppresses again, even after a lift; a replay changes nothing.
        fast_upsert(
            session,
            "contact_suppression",
            ("subject", "channel", "since", "message_id"),
            [(*k, at, mid) for k, (at, mid) in bounces.items()],
            keys=("subject", "channel"),
            set_sql="since = excluded.since, message_id = excluded.message_id, "
            "lifted_at = NULL, lifted_by = NULL, lift_reason = NULL",
            where_sql="excluded.since > contact_suppression.since",
        )

    def retention_days(self, session: Session) -> int:
        longest = MIN_RETENTION_DAYS
        documents = session.scalars(select(ContactPolicyVersion.document))
        for document in documents:
            try:
                longest = max(longest, parse_policy(document).longest_period_days)
            except CounterpointError:
                continue
        return longest

    def _prune(self, session: Session) -> None:
        keep = self.retention_days(session)
        before = self._clock.now().date() - dt.timedelta(days=keep)
        session.execute(delete(TouchDayRow).where(TouchDayRow.day < before))
