"""Builds the parts of a running Counterpoint from its settings (one per process)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.channel.base import AdapterContext
from counterpoint.consent.consumer import ConsentConsumer
from counterpoint.consent.links import ConsentLinks
from counterpoint.consent.service import ConsentService
from counterpoint.content.catalog import ContentCatalog
from counterpoint.content.eligible_service import EligibleContent
from counterpoint.content.service import ContentService
from counterpoint.delivery.compose import Composer
from counterpoint.delivery.receipts import DeliveryReceipts
from counterpoint.delivery.routing import Routes, load_routes
from counterpoint.delivery.service import DeliveryService
from counterpoint.delivery.tracking import TrackingLinks
from counterpoint.delivery.worker import DeliveryWorker
from counterpoint.errors import CounterpointError
from counterpoint.event.committer import GroupCommitter
from counterpoint.event.consumer import LogConsumer
from counterpoint.event.duckdb_log import DuckDBEventLog
from counterpoint.event.keys import WriteKeys
from counterpoint.event.log import EventLog
from counterpoint.event.mappers import MappingPool
from counterpoint.event.postgres_log import PostgresEventLog
from counterpoint.event.service import ImportReport, IngestService
from counterpoint.journey.analytics import JourneyAnalytics
from counterpoint.journey.context import SystemContext
from counterpoint.journey.oracle import World
from counterpoint.journey.runtime import JourneyRuntime
from counterpoint.journey.service import JourneyService
from counterpoint.kit import migrate
from counterpoint.kit.clock import Clock, SystemClock
from counterpoint.kit.db import make_engine, make_sessionmaker
from counterpoint.kit.periodic import Periodic
from counterpoint.policy.audit import AuditTrail
from counterpoint.policy.contact_service import ContactService
from counterpoint.policy.guard_service import GuardService
from counterpoint.policy.tokens import ApiTokens, Users
from counterpoint.policy.touches import TouchCounter
from counterpoint.privacy.service import ErasureIndex, PrivacyService
from counterpoint.profile.projector import ProfileProjector
from counterpoint.profile.records import specialty_codes
from counterpoint.profile.service import ProfileService
from counterpoint.segment.consumer import SegmentConsumer, refresh_all
from counterpoint.segment.facts import SegmentFacts
from counterpoint.segment.service import SegmentService
from counterpoint.settings import Deployment, Settings
from counterpoint.transparency.service import TransferService

__all__ = ["Container", "EventLogBusyError", "open_container"]

CONSUMER_CHUNK_S = 0.25
"""How long a chunk of a consumer other than the profile projector may take to apply while
they share a process: the longest the projector waits for one (``LogConsumer``)."""


class EventLogBusyError(CounterpointError):
    status = 409
    code = "event_log_busy"


@dataclass
class Container:
    settings: Settings
    clock: Clock
    engine: Engine
    sessions: sessionmaker[Session]
    log: EventLog
    committer: GroupCommitter
    projector: ProfileProjector
    write_keys: WriteKeys
    audit: AuditTrail
    users: Users
    tokens: ApiTokens
    ingest: IngestService
    profiles: ProfileService
    consents: ConsentService
    contact: ContactService = field(init=False)
    guard: GuardService = field(init=False)
    content: ContentService = field(init=False)
    catalog: ContentCatalog = field(init=False)
    eligible: EligibleContent = field(init=False)
    transfers: TransferService = field(init=False)
    privacy: PrivacyService = field(init=False)
    routes: Routes = field(init=False)
    tracking: TrackingLinks = field(init=False)
    delivery: DeliveryService = field(init=False)
    delivery_worker: DeliveryWorker = field(init=False)
    receipts: DeliveryReceipts = field(init=False)
    segments: SegmentService = field(init=False)
    composer: Composer = field(init=False)
    journey_runtime: JourneyRuntime = field(init=False)
    journeys: JourneyService = field(init=False)
    journey_analytics: JourneyAnalytics = field(init=False)
    mapping: MappingPool | None = None
    """Processes that map tracking requests (``mapping_processes``), started with the rest."""
    housekeeping: list[Periodic] = field(default_factory=list)
    """Jobs run every few seconds beside the workers (content expiry)."""

    consumers: list[LogConsumer] = field(default_factory=list)
    """Consumers of the log besides the profile projector (which runs first)."""

    def wake_consumers(self, position: int = 0) -> None:
        self.projector.wake(position)
        for consumer in self.consumers:
            consumer.wake(position)

    def catch_up(self) -> int:
        """Apply the log to every consumer, profiles first; returns events read."""
        applied = self.projector.catch_up()
        for consumer in self.consumers:
            applied += consumer.catch_up()
        return applied

    def import_events(
        self,
        path: Path,
        *,
        progress: Callable[[int], None] | None = None,
        profiles: Callable[[int], None] | None = None,
    ) -> ImportReport:
        """Bulk import of an interaction file with the profile update.

        The projector follows the append in a second thread (the append spends most of its
        time inside DuckDB, which releases the interpreter lock), then catches up on the
        rest. ``progress`` counts rows read; ``profiles`` counts the events the projector
        applied, in both phases. Where the projector already runs in the background (the API
        process), that thread applies the events and is only woken as chunks land.
        """
        landed, finished = threading.Event(), threading.Event()
        failures: list[BaseException] = []

        def advanced(rows: int) -> None:
            landed.set()
            self.projector.wake()
            if progress is not None:
                progress(rows)

        if self.projector.running:
            report = self.ingest.import_file(path, progress=advanced)
            self.projector.catch_up(profiles)
            return report

        def follow() -> None:
            while not finished.is_set():
                landed.wait(timeout=0.5)
                landed.clear()
                try:
                    self.projector.catch_up(profiles)
                except BaseException as exc:  # re-raised by the importing thread
                    failures.append(exc)
                    return

        follower = threading.Thread(target=follow, name="import-profiles", daemon=True)
        follower.start()
        try:
            report = self.ingest.import_file(path, progress=advanced)
        finally:
            finished.set()
            landed.set()
            follower.join()
        if failures:
            raise failures[0]
        self.projector.catch_up(profiles)
        return report

    def start_background(self) -> None:
        """Start the writer and the log consumers (the API process does this)."""
        self.committer.start()
        if self.mapping is not None:
            self.mapping.start()
        if self.settings.run_consumers:
            self.projector.start()
            for consumer in self.consumers:
                consumer.start()
            self.wake_consumers()
        if self.settings.run_delivery:
            self.delivery_worker.start()
            for job in self.housekeeping:
                job.start()
        if self.settings.run_journeys:
            self.journey_runtime.start()

    def close(self) -> None:
        self.journey_runtime.stop()
        for job in self.housekeeping:
            job.stop()
        self.delivery_worker.stop()
        self.committer.stop()
        if self.mapping is not None:
            self.mapping.stop()
        self.projector.stop()
        for consumer in self.consumers:
            consumer.stop()
        self.segments.bulk.close()
        self.log.close()
        self.engine.dispose()


def _open_log(settings: Settings, engine: Engine) -> EventLog:
    if settings.deployment is Deployment.SERVER:
        return PostgresEventLog(engine)
    try:
        return DuckDBEventLog(
            settings.event_log_path,
            memory_limit=settings.duckdb_memory_limit,
            checkpoint_threshold=settings.duckdb_checkpoint_threshold,
        )
    except duckdb.IOException as exc:
        raise EventLogBusyError(
            f"the event log {settings.event_log_path} is in use by another process: {exc}",
            field="data_dir",
            fix="stop `counterpoint serve` (the embedded deployment is one process), "
            "or send events through the API",
        ) from None


def open_container(settings: Settings, *, clock: Clock | None = None) -> Container:
    """Open stores (migrating the schema to head) and build every service."""
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    log = _open_log(settings, engine)
    projector = ProfileProjector(sessions, log, clock)
    wakers: list[Callable[[int], None]] = [projector.wake]

    def wake_all(position: int) -> None:
        for wake in wakers:
            wake(position)

    committer = GroupCommitter(log, window_s=settings.commit_window_ms / 1000, on_commit=wake_all)
    write_keys = WriteKeys(sessions, clock)
    audit = AuditTrail(sessions, clock, secret=settings.secret_key.get_secret_value())
    profiles = ProfileService(
        sessions,
        log,
        projector,
        clock,
        specialties=specialty_codes(settings.extra_specialties),
        audit=audit,
        medical_visible_to_commercial=settings.medical_visible_to_commercial,
    )
    built = Container(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=sessions,
        log=log,
        committer=committer,
        projector=projector,
        write_keys=write_keys,
        audit=audit,
        users=Users(sessions, clock, audit),
        tokens=ApiTokens(sessions, clock, audit),
        ingest=IngestService(
            log,
            committer,
            write_keys,
            clock,
            max_event_bytes=settings.max_event_bytes,
            max_batch_bytes=settings.max_batch_bytes,
        ),
        profiles=profiles,
        consents=ConsentService(sessions, profiles, audit, clock),
    )
    built.contact = ContactService(sessions, audit, clock)
    built.guard = GuardService(sessions, profiles, built.consents, built.contact, log, clock)
    built.content = ContentService(sessions, clock, audit, built.users)
    built.catalog = ContentCatalog(engine, clock)
    built.guard.content_checks.append(built.catalog.check)
    built.guard.batch_scopes.append(built.catalog.pinned)
    built.eligible = EligibleContent(profiles, built.catalog, built.guard, clock)
    built.transfers = TransferService(sessions, profiles, audit, clock)
    erased = ErasureIndex(sessions, settings.secret_key.get_secret_value())
    built.privacy = PrivacyService(
        sessions, log, projector, profiles, built.consents, built.transfers, audit, clock, erased
    )
    profiles.set_erasure_check(erased.is_erased)
    if settings.mapping_processes:
        built.mapping = MappingPool(settings.mapping_processes)
        built.ingest.set_mapping_pool(built.mapping)
    built.ingest.set_erasure_filter(
        erased.filter_events, erased.filter_arrow, erased.filter_quarantine
    )
    # Consumers of the log beside the profile projector; each wakes after every commit.
    built.consumers.extend(
        [
            ConsentConsumer(sessions, log, built.consents, profiles, clock),
            TouchCounter(sessions, log, clock),
        ]
    )
    wakers.extend(c.wake for c in built.consumers)
    built.segments = SegmentService(
        sessions,
        engine,
        log,
        profiles,
        SegmentFacts(profiles, built.consents, log),
        audit,
        clock,
        wake=built.wake_consumers,
    )
    # membership events committed but not yet in the log (after a crash) are appended
    built.housekeeping.append(Periodic("segment-events", 30.0, built.segments.flush))
    # segments follow arriving interactions, and windows that slide with the clock
    segment_consumer = SegmentConsumer(sessions, log, built.segments)
    built.consumers.append(segment_consumer)
    wakers.append(segment_consumer.wake)
    segments = built.segments
    built.housekeeping.append(
        Periodic("segment-refresh", settings.segment_refresh_s, lambda: refresh_all(segments))
    )
    try:
        _delivery(built)
    except BaseException:  # a bad channels document: close what is open, then report it
        log.close()
        engine.dispose()
        raise
    _journeys(built)
    wakers.append(built.journey_runtime.wake)
    # the other consumers give way to the profile projector, whose freshness is promised,
    # and take turns between them (one chunk at a time: SQLite has one writer anyway)
    lane = threading.Lock()
    for consumer in [*built.consumers, built.journey_runtime.consumer]:
        consumer.give_way_to = projector
        consumer.chunk_seconds = CONSUMER_CHUNK_S
        consumer.lane = lane
    return built


def _journeys(built: Container) -> None:
    """The journey runtime (entry, timers, events) and the journey use cases."""
    settings, sessions, clock = built.settings, built.sessions, built.clock
    world = World(
        built.profiles,
        SegmentFacts(built.profiles, built.consents, built.log),
        built.guard,
        built.contact,
        built.catalog,
        built.composer,
        built.users,
    )
    built.journey_runtime = JourneyRuntime(
        sessions,
        built.log,
        world,
        built.segments,
        clock,
        projected=built.projector.position,
        batch=settings.journey_batch,
        entry_interval_s=settings.journey_entry_interval_s,
        wake_delivery=built.delivery_worker.wake,
        wake_consumers=built.wake_consumers,
        settle=built.catch_up,
    )
    built.journeys = JourneyService(
        sessions,
        built.journey_runtime,
        SystemContext(built.catalog, built.segments, clock),
        built.audit,
        clock,
    )
    built.journey_analytics = JourneyAnalytics(
        sessions, built.journey_runtime, built.profiles, built.log, clock
    )


def _delivery(built: Container) -> None:
    """The outbox's parts: routing, composing, the worker and the sending service."""
    settings, sessions, clock = built.settings, built.sessions, built.clock
    built.routes = load_routes(settings.channels_file)
    built.tracking = TrackingLinks.from_settings(settings, clock)
    composer = Composer(
        sessions, built.profiles, ConsentLinks.from_settings(settings, clock), built.tracking
    )
    built.composer = composer
    touches = next(c for c in built.consumers if isinstance(c, TouchCounter))
    built.delivery_worker = DeliveryWorker(
        sessions,
        built.guard,
        built.profiles,
        composer,
        built.routes,
        AdapterContext(sessions, settings.data_dir, clock),
        built.log,
        clock,
        settle=lambda: touches.catch_up(give_way=False),  # the next pass's caps need it now
    )
    built.delivery = DeliveryService(
        sessions,
        built.profiles,
        built.guard,
        built.audit,
        clock,
        composer,
        wake=built.delivery_worker.wake,
    )
    # approved content past its valid-until shows as expired (the guard refuses it anyway)
    built.housekeeping.append(Periodic("content-expiry", 60.0, built.content.expire_due))
    built.receipts = DeliveryReceipts(
        sessions, built.profiles, built.log, clock, wake=built.wake_consumers
    )
