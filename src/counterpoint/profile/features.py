"""Engagement features of one HCP, computed from daily counts at read time. Pure.

Windows slide with the clock, so features are always fresh: nothing is recomputed nightly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from counterpoint.event.canonical import ENGAGEMENT_ACTIONS, TOUCH_ACTIONS

__all__ = ["WINDOWS", "ContentCount", "DayCount", "LastEvent", "engagement_features"]

WINDOWS = (7, 30, 90)
_TOUCH = frozenset(a.value for a in TOUCH_ACTIONS)
_ENGAGE = frozenset(a.value for a in ENGAGEMENT_ACTIONS)


@dataclass(frozen=True, slots=True)
class DayCount:
    day: dt.date
    channel: str
    action: str
    function: str
    count: int


@dataclass(frozen=True, slots=True)
class LastEvent:
    channel: str
    at: dt.datetime
    action: str


@dataclass(frozen=True, slots=True)
class ContentCount:
    content_id: str
    brand: str | None
    count: int
    last_at: dt.datetime


def engagement_features(
    days: Iterable[DayCount],
    last: Iterable[LastEvent],
    content: Iterable[ContentCount],
    today: dt.date,
    *,
    include_medical: bool = True,
) -> dict[str, Any]:
    """Counts over 7/30/90 days, touches, response rates, preferred channel, content.

    ``response_rate`` of a channel is engagement actions (opened, clicked, attended, …) per
    touch (sent, call completed, …) over 90 days; None where the channel had no touch.
    """
    content = list(content)
    events = dict.fromkeys(WINDOWS, 0)
    touches = dict.fromkeys(WINDOWS, 0)
    per_channel: dict[str, dict[str, Any]] = {}
    for d in days:
        if not include_medical and d.function == "medical":
            continue
        age = (today - d.day).days
        if age < 0 or age >= max(WINDOWS):
            continue
        stats = per_channel.setdefault(
            d.channel,
            {
                "events": dict.fromkeys(WINDOWS, 0),
                "touches": dict.fromkeys(WINDOWS, 0),
                "responses_90d": 0,
            },
        )
        for w in WINDOWS:
            if age < w:
                events[w] += d.count
                stats["events"][w] += d.count
                if d.action in _TOUCH:
                    touches[w] += d.count
                    stats["touches"][w] += d.count
        if d.action in _ENGAGE:
            stats["responses_90d"] += d.count
    channels: dict[str, Any] = {}
    for name, stats in sorted(per_channel.items()):
        t90 = stats["touches"][90]
        channels[name] = {
            "events": {f"{w}d": n for w, n in stats["events"].items()},
            "touches": {f"{w}d": n for w, n in stats["touches"].items()},
            "responses_90d": stats["responses_90d"],
            "response_rate_90d": round(stats["responses_90d"] / t90, 4) if t90 else None,
        }
    for item in last:
        channels.setdefault(item.channel, {})["last"] = {"at": item.at, "action": item.action}
    engaged = {c: s["responses_90d"] for c, s in per_channel.items() if s["responses_90d"]}
    preferred = min(engaged, key=lambda c: (-engaged[c], c)) if engaged else None
    top = sorted(content, key=lambda c: (-c.count, c.content_id))[:10]
    return {
        "events": {f"{w}d": n for w, n in events.items()},
        "touches": {f"{w}d": n for w, n in touches.items()},
        "preferred_channel": preferred,
        "channels": channels,
        "content": [
            {"content_id": c.content_id, "brand": c.brand, "count": c.count, "last_at": c.last_at}
            for c in top
        ],
        "brands": sorted({c.brand for c in content if c.brand}),
    }
