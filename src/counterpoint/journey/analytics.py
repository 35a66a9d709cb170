"""Journey analytics over the runtime's records: the map with live figures (``figures``).

The transitions and enrollments come from the operational store; what each HCP did after a
send (opened, clicked, registered …: the responses KPIs read) comes from the event log,
through the HCP's identifiers: the interactions on the send's channel, after it and before
the next send on that channel, for the sent content (or without a content id). Reading the
log is one timeline query per HCP, so responses are read for at most ``MAX_RESPONSE_HCPS``
HCPs (the first by id); ``responses.complete`` says whether that covered every HCP sent to.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from counterpoint.errors import NotFoundError
from counterpoint.event.log import EventLog, StoredEvent, TimelineQuery
from counterpoint.journey.figures import EnrollmentRow, ResponseKey, TransitionRow, map_figures
from counterpoint.journey.repository import JourneyRepository
from counterpoint.journey.runtime import JourneyRuntime
from counterpoint.kit.clock import Clock
from counterpoint.profile.service import ProfileService

__all__ = ["MAX_RESPONSE_HCPS", "JourneyAnalytics", "SendRow", "responses_of"]

MAX_RESPONSE_HCPS = 5_000
_TIMELINE_LIMIT = 10_000


class SendRow:
    """A ``sent`` transition: which HCP, when, on which channel, which content."""

    __slots__ = ("at", "channel", "content_id", "hcp_id", "key")

    def __init__(
        self, key: ResponseKey, hcp_id: str, at: dt.datetime, channel: str, content_id: str | None
    ) -> None:
        self.key = key
        self.hcp_id = hcp_id
        self.at = at
        self.channel = channel
        self.content_id = content_id


def responses_of(
    sends: Sequence[SendRow], events: Sequence[StoredEvent]
) -> dict[ResponseKey, frozenset[str]]:
    """The actions each send of one HCP was followed by (pure; see the module doc)."""
    out: dict[ResponseKey, frozenset[str]] = {}
    ordered = sorted(sends, key=lambda s: (s.at, s.key))
    for i, send in enumerate(ordered):
        later = [s.at for s in ordered[i + 1 :] if s.channel == send.channel]
        until = later[0] if later else None
        actions = {
            e.event.action.value
            for e in events
            if e.event.action is not None
            and e.event.channel is not None
            and e.event.channel.value == send.channel
            and e.event.occurred_at >= send.at
            and (until is None or e.event.occurred_at < until)
            and (send.content_id is None or e.event.content_id in (None, send.content_id))
        }
        out[send.key] = frozenset(actions)
    return out


class JourneyAnalytics:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        runtime: JourneyRuntime,
        profiles: ProfileService,
        log: EventLog,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._runtime = runtime
        self._profiles = profiles
        self._log = log
        self._clock = clock

    def map(self, journey_id: str) -> dict[str, Any]:
        """The current version's map with live figures from every version's records."""
        with self._sessions() as session:
            repo = JourneyRepository(session)
            row = repo.find(journey_id)
            if row is None:
                raise NotFoundError(
                    f"no journey {journey_id[:120]!r}",
                    field="journey",
                    fix="list journeys: counterpoint journey list (GET /api/v1/journeys)",
                )
            version, status = row.current_version, row.status
            transitions = repo.transitions_of(journey_id)
            enrollments = repo.enrollments_of(journey_id)
        document = self._runtime.document(journey_id, version)
        if document is None:
            raise NotFoundError(
                f"the journey {journey_id} has no readable version {version}",
                field="version",
                fix="publish the journey again",
            )
        nodes = document.flow.by_id
        trows = [
            TransitionRow(
                t.enrollment_id, t.visit, t.kind, t.node, t.touchpoint, t.stage, t.at, t.detail
            )
            for t in transitions
        ]
        erows = []
        for e in enrollments:
            node = nodes.get(e.node)
            erows.append(
                EnrollmentRow(
                    e.id,
                    e.status,
                    e.node,
                    node.touchpoint if node is not None else None,
                    document.stage_of(node) if node is not None else None,
                )
            )
        sends = [
            SendRow(
                (t.enrollment_id, t.visit),
                t.hcp_id,
                t.at,
                str((t.detail or {}).get("channel")),
                (t.detail or {}).get("content_id"),
            )
            for t in transitions
            if t.kind == "sent"
        ]
        responses, complete, read = self._responses(sends)
        figures = map_figures(document, trows, erows, responses, self._clock.now())
        return {
            "journey": journey_id,
            "title": document.title,
            "brand": document.brand,
            "status": status,
            "version": version,
            "example": document.example,
            **figures.as_dict(),
            "responses": {"hcps_read": read, "complete": complete},
        }

    def _responses(
        self, sends: Sequence[SendRow]
    ) -> tuple[Mapping[ResponseKey, frozenset[str]], bool, int]:
        by_hcp: dict[str, list[SendRow]] = defaultdict(list)
        for send in sends:
            by_hcp[send.hcp_id].append(send)
        chosen = sorted(by_hcp)[:MAX_RESPONSE_HCPS]
        refs = self._profiles.resolve_many(chosen)
        out: dict[ResponseKey, frozenset[str]] = {}
        for hcp_id in chosen:
            ref = refs.get(hcp_id)
            if ref is None or not ref.identifiers:
                continue
            own = by_hcp[hcp_id]
            since = min(s.at for s in own) - dt.timedelta(microseconds=1)
            events = self._log.timeline(
                TimelineQuery(ref.identifiers, limit=_TIMELINE_LIMIT, since=since)
            )
            out.update(responses_of(own, events))
        return out, len(chosen) == len(by_hcp), len(chosen)
