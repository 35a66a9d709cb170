"""Use cases of journeys: validate, publish, pause, resume, stop, move, status. See
docs/journeys.md ("Running journeys").

Publishing creates version n+1 of the journey, immutable; HCPs already in the journey stay on
the version they entered (``move`` is the documented way to bring waiting HCPs onto a new
version). Only roles holding ``journey: write`` (brand manager, marketing operations, admin)
change journeys, within their brands and markets; every change is in the audit trail, in the
transaction that makes it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from counterpoint.errors import ConflictError, CounterpointError, NotFoundError
from counterpoint.journey.context import SystemContext
from counterpoint.journey.definition import JourneyDocument, WaitForEventNode, WaitNode
from counterpoint.journey.loader import JourneyInvalidError
from counterpoint.journey.models import Journey, JourneyVersion
from counterpoint.journey.repository import JourneyRepository, TransitionRow
from counterpoint.journey.runtime import JourneyRuntime
from counterpoint.journey.validation import ValidationReport, validate
from counterpoint.kit.clock import Clock
from counterpoint.policy.access import Principal, Resource, Verb, is_allowed
from counterpoint.policy.audit import Actor, AuditTrail

__all__ = ["MAX_LISTED", "JourneyForbiddenError", "JourneyService", "require_journey_writer"]

MAX_LISTED = 1000
"""At most this many enrollments are named one by one in a ``move`` report."""
_ACTIVE, _PAUSED, _STOPPED = "active", "paused", "stopped"
_FIX_LIST = "list journeys: counterpoint journey list (GET /api/v1/journeys)"


class JourneyForbiddenError(CounterpointError):
    status = 403
    code = "forbidden"


def require_journey_writer(principal: Principal, document: JourneyDocument | None = None) -> None:
    """403 unless the role may change journeys (and, given a document, the user's brands and
    markets cover it)."""
    if not is_allowed(principal.role, Resource.JOURNEY, Verb.WRITE):
        raise JourneyForbiddenError(
            f"the role {principal.role.value} may not change journeys",
            field="user",
            fix="act as a brand manager, marketing operations or an administrator",
            extra={"resource": Resource.JOURNEY.value, "verb": Verb.WRITE.value},
        )
    if document is None:
        return
    if principal.brands and document.brand not in principal.brands:
        raise JourneyForbiddenError(
            f"the brand {document.brand} is outside your brands",
            field="brand",
            fix="act only for your brands: " + ", ".join(sorted(principal.brands)),
        )
    outside = sorted(set(document.markets) - set(principal.markets)) if principal.markets else []
    if outside:
        raise JourneyForbiddenError(
            f"the markets {', '.join(outside)} are outside yours",
            field="markets",
            fix="act only for your markets: " + ", ".join(sorted(principal.markets)),
        )


def _journey_dict(row: Journey) -> dict[str, Any]:
    return {
        "id": row.id,
        "title": row.title,
        "brand": row.brand,
        "markets": list(row.markets),
        "status": row.status,
        "current_version": row.current_version,
        "example": row.example,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _version_dict(row: JourneyVersion) -> dict[str, Any]:
    return {
        "version": row.version,
        "sha256": row.sha256,
        "published_at": row.published_at,
        "published_by": row.published_by,
    }


class JourneyService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        runtime: JourneyRuntime,
        context: SystemContext,
        audit: AuditTrail,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._runtime = runtime
        self._context = context
        self._audit = audit
        self._clock = clock

    # --- definitions --------------------------------------------------------------------------
    def validate(self, text: str, source: str = "<journey>") -> ValidationReport:
        """Every problem of the document (model, graph, content, segments, consent coverage)."""
        return validate(text, source, self._context, self._clock.now().date())

    def publish(
        self, text: str, principal: Principal, origin: str, *, source: str = "<journey>"
    ) -> dict[str, Any]:
        """Validate, then store the document as the journey's next version (refused with every
        error when it has one; ``changed`` false when it is the current version unchanged).
        New HCPs enter the new version; those in it stay on theirs."""
        require_journey_writer(principal)
        report = self.validate(text, source)
        if not report.ok or report.document is None:
            raise JourneyInvalidError(report.errors or report.problems)
        document = report.document
        require_journey_writer(principal, document)
        actor = Actor.of(principal, origin)
        digest = hashlib.sha256(text.encode()).hexdigest()
        now = self._clock.now()
        with self._sessions.begin() as session:
            repo = JourneyRepository(session)
            row = repo.find(document.journey, lock=True)
            if row is None:
                row = Journey(id=document.journey, status=_ACTIVE, current_version=0)
                row.created_at = now
                session.add(row)
            elif row.status == _STOPPED:
                raise ConflictError(
                    f"the journey {row.id} was stopped; a stopped journey does not start again",
                    field="journey",
                    fix="publish it under a new journey id",
                )
            else:
                current = repo.version(row.id, row.current_version)
                if current is not None and current.sha256 == digest:
                    return {**_journey_dict(row), "changed": False, "report": report.as_dict()}
            before = _journey_dict(row) if row.current_version else None
            row.current_version += 1
            row.title, row.brand = document.title, document.brand
            row.markets, row.example, row.updated_at = list(document.markets), document.example, now
            repo.add(row)
            repo.add(
                JourneyVersion(
                    journey_id=row.id,
                    version=row.current_version,
                    document=document.model_dump(mode="json", by_alias=True, exclude_none=True),
                    source=text,
                    sha256=digest,
                    published_at=now,
                    published_by=actor.name[:200],
                )
            )
            after = _journey_dict(row)
            self._audit.record(
                session, actor, "journey.publish", "journey", row.id, before=before, after=after
            )
        self._runtime.request_entry(document.journey)
        return {**after, "changed": True, "report": report.as_dict()}

    # --- life cycle ---------------------------------------------------------------------------
    def pause(self, journey_id: str, principal: Principal, origin: str) -> dict[str, Any]:
        """Timers and events wait (timers fire late after resume; nothing is lost) and no HCP
        enters."""
        return self._change(journey_id, principal, origin, {_ACTIVE}, _PAUSED, "journey.pause")

    def resume(self, journey_id: str, principal: Principal, origin: str) -> dict[str, Any]:
        """Back to active: due timers fire, interactions that arrived meanwhile are taken from
        the log, the audience is evaluated again."""
        with self._sessions() as session:
            paused_since = self._get(JourneyRepository(session), journey_id).updated_at
        result = self._change(journey_id, principal, origin, {_PAUSED}, _ACTIVE, "journey.resume")
        result["caught_up"] = self._runtime.catch_up_paused(journey_id, paused_since)
        self._runtime.request_entry(journey_id)
        return result

    def stop(self, journey_id: str, principal: Principal, origin: str) -> dict[str, Any]:
        """Final: every waiting HCP exits (``journey_stopped``), no HCP enters again."""
        return self._change(
            journey_id, principal, origin, {_ACTIVE, _PAUSED}, _STOPPED, "journey.stop"
        )

    def _change(
        self,
        journey_id: str,
        principal: Principal,
        origin: str,
        allowed: set[str],
        to: str,
        action: str,
    ) -> dict[str, Any]:
        require_journey_writer(principal)
        actor = Actor.of(principal, origin)
        now = self._clock.now()
        with self._runtime.lock, self._sessions.begin() as session:
            repo = JourneyRepository(session)
            repo.touch(journey_id, now)
            row = self._get(repo, journey_id, lock=True)
            self._scope(principal, row)
            if row.status not in allowed:
                raise ConflictError(
                    f"the journey {journey_id} is {row.status}; it cannot be {to} now",
                    field="journey",
                    fix="pause an active journey, resume a paused one; a stopped one is final",
                )
            before = _journey_dict(row)
            row.status, row.updated_at = to, now
            session.flush()
            ended = 0
            if to == _STOPPED:
                ended = self._runtime.end_waiting(session, journey_id, "journey_stopped")
            after = _journey_dict(row)
            self._audit.record(
                session,
                actor,
                action,
                "journey",
                journey_id,
                before=before,
                after={**after, "exited": ended} if to == _STOPPED else after,
            )
        return {**after, "exited": ended}

    def move(
        self,
        journey_id: str,
        principal: Principal,
        origin: str,
        *,
        from_version: int,
        to_version: int | None = None,
    ) -> dict[str, Any]:
        """Move the HCPs waiting in ``from_version`` onto ``to_version`` (default: the current
        one): an HCP waiting at a node whose id is in the new version, where it waits too,
        moves (same node, timer kept); the others stay on their version and are listed."""
        require_journey_writer(principal)
        actor = Actor.of(principal, origin)
        now = self._clock.now()
        with self._runtime.lock, self._sessions.begin() as session:
            repo = JourneyRepository(session)
            repo.touch(journey_id, now)
            row = self._get(repo, journey_id, lock=True)
            self._scope(principal, row)
            target = to_version if to_version is not None else row.current_version
            old = self._document(journey_id, from_version)
            new = self._document(journey_id, target)
            if from_version == target:
                raise ConflictError(
                    f"the HCPs are on version {target} already",
                    field="to_version",
                    fix="name another version",
                )
            waiting = repo.waiting_in(journey_id, version=from_version)
            moving: list[str] = []
            staying: list[dict[str, Any]] = []
            nodes = new.flow.by_id
            for state in waiting:
                node = nodes.get(state.node)
                was = old.flow.by_id.get(state.node)
                if node is None:
                    why = "node_not_in_new_version"
                elif not isinstance(node, WaitNode | WaitForEventNode) or type(node) is not type(
                    was
                ):
                    why = "node_waits_differently"
                else:
                    moving.append(state.id)
                    continue
                staying.append(
                    {
                        "enrollment": state.id,
                        "hcp_id": state.hcp_id,
                        "node": state.node,
                        "reason": why,
                    }
                )
            moved = repo.move(moving, target, now)
            chosen = set(moving)
            repo.add_transitions(
                [
                    TransitionRow(
                        enrollment_id=state.id,
                        visit=state.visits,
                        kind="moved",
                        journey_id=journey_id,
                        version=target,
                        hcp_id=state.hcp_id,
                        node=state.node,
                        touchpoint=nodes[state.node].touchpoint,
                        stage=new.stage_of(nodes[state.node]),
                        at=now,
                        detail={"from_version": from_version, "to_version": target},
                    )
                    for state in waiting
                    if state.id in chosen
                ]
            )
            summary = {
                "journey": journey_id,
                "from_version": from_version,
                "to_version": target,
                "moved": moved,
                "stayed": len(staying),
            }
            self._audit.record(session, actor, "journey.move", "journey", journey_id, after=summary)
        return {**summary, "staying": staying[:MAX_LISTED]}

    # --- reading ------------------------------------------------------------------------------
    def all(self) -> list[dict[str, Any]]:
        with self._sessions() as session:
            return [_journey_dict(r) for r in JourneyRepository(session).journeys()]

    def get(self, journey_id: str) -> dict[str, Any]:
        """The journey, its versions, and the current version's document."""
        with self._sessions() as session:
            repo = JourneyRepository(session)
            row = self._get(repo, journey_id)
            versions = [_version_dict(v) for v in repo.versions(journey_id)]
            current = repo.version(journey_id, row.current_version)
            return {
                **_journey_dict(row),
                "versions": versions,
                "document": current.document if current is not None else None,
            }

    def source(self, journey_id: str, version: int | None = None) -> str:
        with self._sessions() as session:
            repo = JourneyRepository(session)
            row = self._get(repo, journey_id)
            found = repo.version(journey_id, version or row.current_version)
            if found is None:
                raise self._no_version(journey_id, version or row.current_version)
            return found.source

    def status(self, journey_id: str) -> dict[str, Any]:
        """Per node, touchpoint and stage of every version: HCPs waiting there, completed and
        exited there, contacts refused there (with the guard's codes), sends and tasks."""
        with self._sessions() as session:
            repo = JourneyRepository(session)
            row = self._get(repo, journey_id)
            journey = _journey_dict(row)
            enrollments = repo.enrollment_counts(journey_id)
            transitions = repo.transition_counts(journey_id)
            refused = repo.transitions_of(journey_id, kinds={"refused"})
        figures: dict[tuple[int, str], dict[str, Any]] = defaultdict(_blank)
        for version, node, status, n in enrollments:
            if status in ("waiting", "completed", "exited"):
                figures[(version, node)][status] += n
        for version, node, kind, n in transitions:
            key = {"refused": "refused", "sent": "sent", "task": "tasks", "goal": "goals"}.get(kind)
            if key is not None:
                figures[(version, node)][key] += n
        for r in refused:
            codes = (r.detail or {}).get("codes") or ["unknown"]
            target = figures[(r.version, r.node)]["refusals"]
            for code in codes:
                target[str(code)] = target.get(str(code), 0) + 1
        nodes = self._node_rows(journey_id, figures)
        return {
            **journey,
            "totals": _sum(nodes),
            "stages": _grouped(nodes, "stage"),
            "touchpoints": _grouped(nodes, "touchpoint"),
            "nodes": nodes,
        }

    def _node_rows(
        self, journey_id: str, figures: Mapping[tuple[int, str], dict[str, Any]]
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        versions = sorted({v for v, _ in figures})
        for version in versions:
            document = self._runtime.document(journey_id, version)
            known = document.flow.by_id if document is not None else {}
            order = list(known) + sorted(n for v, n in figures if v == version and n not in known)
            for node_id in order:
                node = known.get(node_id)
                rows.append(
                    {
                        "version": version,
                        "node": node_id,
                        "type": node.type if node is not None else None,
                        "touchpoint": node.touchpoint if node is not None else None,
                        "stage": document.stage_of(node) if node and document else None,
                        **figures.get((version, node_id), _blank()),
                    }
                )
        return rows

    # --- helpers ------------------------------------------------------------------------------
    def _document(self, journey_id: str, version: int) -> JourneyDocument:
        document = self._runtime.document(journey_id, version)
        if document is None:
            raise self._no_version(journey_id, version)
        return document

    @staticmethod
    def _no_version(journey_id: str, version: int) -> NotFoundError:
        return NotFoundError(
            f"the journey {journey_id} has no version {version}",
            field="version",
            fix=f"list its versions: counterpoint journey status {journey_id}",
        )

    @staticmethod
    def _get(repo: JourneyRepository, journey_id: str, *, lock: bool = False) -> Journey:
        row = repo.find(journey_id, lock=lock)
        if row is None:
            raise NotFoundError(f"no journey {journey_id[:120]!r}", field="journey", fix=_FIX_LIST)
        return row

    @staticmethod
    def _scope(principal: Principal, row: Journey) -> None:
        """A user scoped to brands or markets changes only journeys within them."""
        if principal.brands and row.brand not in principal.brands:
            raise JourneyForbiddenError(
                f"the brand {row.brand} is outside your brands",
                field="brand",
                fix="act only for your brands: " + ", ".join(sorted(principal.brands)),
            )
        outside = sorted(set(row.markets) - principal.markets) if principal.markets else []
        if outside:
            raise JourneyForbiddenError(
                f"the markets {', '.join(outside)} are outside yours",
                field="markets",
                fix="act only for your markets: " + ", ".join(sorted(principal.markets)),
            )


_FIGURES = ("waiting", "completed", "exited", "refused", "sent", "tasks", "goals")


def _blank() -> dict[str, Any]:
    return {**dict.fromkeys(_FIGURES, 0), "refusals": {}}


def _sum(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total = _blank()
    for r in rows:
        for name in _FIGURES:
            total[name] += r[name]
        for code, n in r["refusals"].items():
            total["refusals"][code] = total["refusals"].get(code, 0) + n
    return total


def _grouped(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r[by] is not None:
            groups.setdefault(r[by], []).append(r)
    return [{by: key, **_sum(members)} for key, members in groups.items()]
