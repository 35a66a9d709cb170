"""The group committer under concurrency, on failure, and the "zero lost acknowledged events"
guarantee (with a negative control showing the check can fail)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import pyarrow as pa
import pytest

from counterpoint.container import Container, open_container
from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent
from counterpoint.event.committer import GroupCommitter
from counterpoint.event.log import AppendResult, EventLog, QuarantineEntry
from counterpoint.kit.clock import FixedClock
from counterpoint.settings import Settings

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
TIMEOUT = 30


def _event(message_id: str) -> LogEvent:
    return LogEvent(
        message_id=message_id,
        kind=EventKind.TRACK,
        subject="npi:1234567893",
        occurred_at=NOW,
        received_at=NOW,
        source="wk_test",
        channel=Channel.CAMPAIGN_EMAIL,
        action=Action.OPENED,
        event_name="Email Opened",
    )


def _quarantine() -> QuarantineEntry:
    return QuarantineEntry(
        received_at=NOW,
        source="wk_test",
        reason_code="missing_identity",
        field=None,
        detail="neither userId nor anonymousId is given",
        fix="send userId",
        raw="{}",
    )


def _run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a submitting thread hung"
    assert not errors, errors


# --- concurrency ------------------------------------------------------------------------


def test_concurrent_requests_each_get_their_own_counts(container: Container) -> None:
    container.start_background()
    threads, requests, per_request, pool = 12, 15, 6, 400
    results: list[tuple[list[str], AppendResult]] = []
    lock = threading.Lock()

    def submit(index: int) -> None:
        for r in range(requests):
            # Overlapping ids across threads and repeats inside one request.
            ids = [f"m{(index * 37 + r * 11 + k * 53) % pool}" for k in range(per_request)]
            ids.append(ids[0])
            result = container.committer.submit([_event(i) for i in ids]).result(TIMEOUT)
            with lock:
                results.append((ids, result))

    _run_threads(threads, submit)

    assert len(results) == threads * requests
    for ids, result in results:
        assert result.accepted + result.duplicates == len(ids)
        assert result.duplicates >= 1  # the repeated first id
        assert result.quarantined == 0
    distinct = {i for ids, _ in results for i in ids}
    assert sum(r.accepted for _, r in results) == len(distinct)
    assert container.log.count() == len(distinct)
    stored = container.log.read_after(0, 10_000).column("message_id").to_pylist()
    assert sorted(stored) == sorted(distinct)


def test_the_same_id_from_two_concurrent_requests_is_accepted_once(
    container: Container,
) -> None:
    container.start_background()
    rounds = 25
    outcomes: dict[int, list[AppendResult]] = {r: [] for r in range(rounds)}
    barrier = threading.Barrier(2)
    lock = threading.Lock()

    def submit(index: int) -> None:
        for r in range(rounds):
            barrier.wait(TIMEOUT)
            events = [_event(f"shared-{r}"), _event(f"own-{index}-{r}")]
            result = container.committer.submit(events).result(TIMEOUT)
            with lock:
                outcomes[r].append(result)

    _run_threads(2, submit)

    for r, pair in outcomes.items():
        assert len(pair) == 2, r
        # Each request's own event is new; the shared one is accepted by exactly one of them.
        assert sorted(result.accepted for result in pair) == [1, 2], (r, pair)
        assert sorted(result.duplicates for result in pair) == [0, 1], (r, pair)
    assert container.log.count() == rounds * 3


def test_quarantine_entries_are_acknowledged_with_their_request(container: Container) -> None:
    container.start_background()
    result = container.committer.submit([_event("q-ok")], [_quarantine(), _quarantine()]).result(
        TIMEOUT
    )
    assert (result.accepted, result.duplicates, result.quarantined) == (1, 0, 2)
    assert len(container.log.quarantined(None, 0, 10)) == 2


def test_submit_before_start_is_refused(container: Container) -> None:
    with pytest.raises(RuntimeError, match="not running"):
        container.committer.submit([_event("early")])
    assert container.log.count() == 0


# --- failure ----------------------------------------------------------------------------


class FailingOnceLog:
    """The real log, whose first ``append`` raises before writing anything."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self.calls = 0

    def append_arrow(
        self,
        events: pa.Table,
        quarantine: Sequence[QuarantineEntry] = (),
        *,
        report_stored: bool = False,
    ) -> AppendResult:
        self.calls += 1
        if self.calls == 1:
            raise OSError("disk full")
        return self._log.append_arrow(events, quarantine, report_stored=report_stored)

    def __getattr__(self, name: str) -> object:
        return getattr(self._log, name)


def test_a_failed_append_fails_every_waiting_request(container: Container) -> None:
    failing = FailingOnceLog(container.log)
    acknowledged: list[int] = []
    committer = GroupCommitter(
        failing,  # type: ignore[arg-type]
        window_s=0.3,
        on_commit=acknowledged.append,
    )
    committer.start()
    try:
        # Submitted well within one commit window: one group, one append, one failure.
        futures = [committer.submit([_event(f"f{i}"), _event(f"g{i}")]) for i in range(5)]
        futures.append(committer.submit([], [_quarantine()]))
        for future in futures:
            with pytest.raises(OSError, match="disk full"):
                future.result(TIMEOUT)
        assert failing.calls == 1
        assert acknowledged == []
        assert container.log.count() == 0
        assert container.log.quarantined(None, 0, 10) == []

        # The writer survives; the same events sent again are new, not duplicates.
        retry = committer.submit([_event("f0"), _event("g0")]).result(TIMEOUT)
        assert (retry.accepted, retry.duplicates) == (2, 0)
        assert container.log.count() == 2
        assert acknowledged == [retry.last_seq]
    finally:
        committer.stop()


def test_stop_commits_what_is_queued(container: Container) -> None:
    committer = GroupCommitter(container.log, window_s=0.5)
    committer.start()
    futures = [committer.submit([_event(f"s{i}")]) for i in range(10)]
    committer.stop()
    assert all(f.done() for f in futures)
    assert sum(f.result(0).accepted for f in futures) == 10
    assert container.log.count() == 10


# --- zero lost acknowledged events --------------------------------------------------------


class AckBeforeAppendCommitter(GroupCommitter):
    """Deliberately broken: answers every request as if accepted, and never appends."""

    def _commit(self, group: list) -> None:  # type: ignore[type-arg]
        for pending in group:
            pending.future.set_result(
                AppendResult(
                    accepted=len(pending.events),
                    duplicates=0,
                    quarantined=len(pending.quarantine),
                    last_seq=0,
                )
            )
        # … and the batch is dropped on the floor.


def lost_acknowledged_events(
    settings: Settings, make_committer: Callable[[EventLog], GroupCommitter]
) -> set[str]:
    """Send events from many threads, remember every acknowledged id, re-open the store
    and return the acknowledged ids that are not in the log."""
    clock = FixedClock(NOW)
    acknowledged: set[str] = set()
    lock = threading.Lock()
    built = open_container(settings, clock=clock)
    try:
        committer = make_committer(built.log)
        committer.start()

        def submit(index: int) -> None:
            for r in range(10):
                ids = [f"z-{index}-{r}-{k}" for k in range(3)] + [f"z-shared-{r}"]
                future: Future[AppendResult] = committer.submit([_event(i) for i in ids])
                try:
                    future.result(TIMEOUT)
                except (OSError, FutureTimeout):
                    continue  # not acknowledged: the client would retry
                with lock:
                    acknowledged.update(ids)

        _run_threads(8, submit)
        committer.stop()
    finally:
        built.close()
    assert acknowledged, "the harness acknowledged nothing: it would prove nothing"

    reopened = open_container(settings, clock=clock)
    try:
        stored = set(reopened.log.read_after(0, 1_000_000).column("message_id").to_pylist())
    finally:
        reopened.close()
    return acknowledged - stored


def test_no_acknowledged_event_is_lost(settings: Settings) -> None:
    lost = lost_acknowledged_events(settings, lambda log: GroupCommitter(log, window_s=0.002))
    assert lost == set()


def test_the_harness_detects_acknowledging_before_appending(settings: Settings) -> None:
    """Negative control: the same harness reports the loss of a broken committer."""
    lost = lost_acknowledged_events(
        settings, lambda log: AckBeforeAppendCommitter(log, window_s=0.002)
    )
    assert len(lost) == 8 * 10 * 3 + 10
