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

_WANTED = pa.array(sorted({a.value for a in TOUCH_ACTIONS} | {Action.BOUNCED.value}))
_TOUCHES = pa.array(sorted(a.value for a in TOUCH_ACTIONS))
_CHANNELS = pa.array(sorted(c.value for c in Channel))
_MEDICAL = pa.array(sorted({ActorType.MSL.value, ActorType.MEDICAL_AFFAIRS.value}))
_UTC = pa.timestamp("us", tz="UTC")
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


def _touch_rows(rows: pa.Table) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Touch events → (touch_day rows, touch_last rows), aggregated in Arrow.

    A day is the UTC date of ``occurred_at``; a touch reports minutes only when its payload
    names a sane ``duration_min`` (payloads are parsed only where the text mentions it)."""
    if rows.num_rows == 0:
        return [], []
    at = pc.cast(rows.column("occurred_at"), _UTC)
    channel = rows.column("channel")
    function = rows.column("function")
    medical = pc.or_(
        pc.equal(channel, Channel.MEDICAL_INQUIRY.value),
        pc.fill_null(pc.is_in(rows.column("actor_type"), value_set=_MEDICAL), False),
    )
    promotional = pc.if_else(
        pc.is_valid(function),
        pc.fill_null(pc.equal(function, Function.COMMERCIAL.value), False),
        pc.invert(medical),
    )
    payload = rows.column("payload")
    mentions = pc.fill_null(pc.match_substring(payload, "duration_min"), False)
    minutes: list[float | None] = [None] * rows.num_rows
    if pc.any(mentions).as_py():
        for i in pc.indices_nonzero(mentions).to_pylist():
            minutes[i] = reported_minutes(_properties(payload[i].as_py()))
    reported = pa.array(minutes, pa.float64())
    cells = pa.table(
        {
            "subject": rows.column("subject"),
            "day": pc.cast(at, pa.date32()),
            "channel": channel,
            "brand": pc.fill_null(rows.column("brand"), ""),
            "at": at,
            "reported": pc.cast(pc.is_valid(reported), pa.int64()),
            "minutes": pc.fill_null(reported, 0.0),
            "promotional": pc.cast(promotional, pa.int64()),
        }
    )
    per_day = cells.group_by(["subject", "day", "channel", "brand"], use_threads=False).aggregate(
        [("at", "count"), ("reported", "sum"), ("minutes", "sum"), ("promotional", "sum")]
    )
    days = list(
        zip(
            *(per_day.column(c).to_pylist() for c in ("subject", "day", "channel", "brand")),
            *(
                per_day.column(c).to_pylist()
                for c in ("at_count", "reported_sum", "minutes_sum", "promotional_sum")
            ),
            strict=True,
        )
    )
    latest = cells.group_by(["subject", "channel"], use_threads=False).aggregate([("at", "max")])
    last = list(
        zip(
            latest.column("subject").to_pylist(),
            latest.column("channel").to_pylist(),
            latest.column("at_max").to_pylist(),
            strict=True,
        )
    )
    return days, last


def _hard_bounces(rows: pa.Table) -> dict[tuple[str, str], tuple[dt.datetime, str]]:
    """(subject, consent channel) → (the latest hard bounce, its message id)."""
    bounces: dict[tuple[str, str], tuple[dt.datetime, str]] = {}
    for row in rows.to_pylist():  # bounces are few; each payload is read
        needed = consent_channel(Channel(row["channel"]))
        if needed is None or _properties(row["payload"]).get("bounce_type") != "hard":
            continue
        at = utc(row["occurred_at"])
        key = (row["subject"], needed.value)
        if key not in bounces or bounces[key][0] < at:
            bounces[key] = (at, row["message_id"])
    return bounces


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
        wanted = pc.fill_null(pc.is_in(table.column("action"), value_set=_WANTED), False)
        rows = table.filter(wanted).select(_COLUMNS)
        known = pc.and_(
            pc.fill_null(pc.is_in(rows.column("channel"), value_set=_CHANNELS), False),
            pc.fill_null(pc.not_equal(rows.column("subject"), ""), False),
        )
        rows = rows.filter(known)
        touch = pc.is_in(rows.column("action"), value_set=_TOUCHES)
        days, last = _touch_rows(rows.filter(touch))
        bounces = _hard_bounces(rows.filter(pc.invert(touch)))
        self._write(session, days, last, bounces)

    def after_catch_up(self) -> None:
        """Touches older than the retention go once per catch-up, not once per chunk."""
        with self._sessions.begin() as session:
            self._prune(session)

    @staticmethod
    def _write(
        session: Session,
        days: list[tuple[Any, ...]],
        last: list[tuple[Any, ...]],
        bounces: dict[tuple[str, str], tuple[dt.datetime, str]],
    ) -> None:
        fast_upsert(
            session,
            "touch_day",
            ("subject", "day", "channel", "brand", "touches", "reported_touches",
             "reported_minutes", "promotional"),
            days,
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
            last,
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
