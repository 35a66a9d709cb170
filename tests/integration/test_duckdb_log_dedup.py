"""The embedded log's de-duplication: its ``SeenKeys`` leaves out repeats and the new rows take
a plain insert. The set is read from the file, and learns what another log on the same file
appended. The log must store each message id once, keep the first occurrence and keep the
batch's order. The same harness, with the set made wrong, must find the repeats it stores
(negative controls). A file of schema version 1 keeps its unique index as a second guard.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import counterpoint.event.duckdb_log as duckdb_log
from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent
from counterpoint.event.duckdb_log import DuckDBEventLog
from counterpoint.event.log import QuarantineEntry
from counterpoint.event.seen import Halves, SeenKeys

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


@contextmanager
def _opened(path: Path) -> Iterator[DuckDBEventLog]:
    log = DuckDBEventLog(path)
    try:
        yield log
    finally:
        log.close()


def _event(message_id: str, n: int) -> LogEvent:
    return LogEvent(
        message_id=message_id,
        kind=EventKind.TRACK,
        subject="npi:1234567893",
        occurred_at=NOW - dt.timedelta(seconds=n),
        received_at=NOW,
        source="wk_test",
        channel=Channel.CAMPAIGN_EMAIL,
        action=Action.OPENED,
        event_name=f"occurrence {n}",
        payload={"n": n},
    )


def _stored(log: DuckDBEventLog) -> list[tuple[str, str | None]]:
    """(message id, event name) in sequence order."""
    table = log.read_after(0, 1_000_000)
    return list(
        zip(
            table.column("message_id").to_pylist(),
            table.column("event_name").to_pylist(),
            strict=True,
        )
    )


def _problems(log: DuckDBEventLog, batches: list[list[str]]) -> list[str]:
    """Append the batches, then compare the log and each result with the rule: every id is
    stored once, as its first occurrence, in the order first seen."""
    problems: list[str] = []
    expected: list[tuple[str, str]] = []
    known: set[str] = set()
    n = 0
    for batch in batches:
        events = []
        flags = []
        for message_id in batch:
            events.append(_event(message_id, n))
            flags.append(message_id not in known)
            if message_id not in known:
                known.add(message_id)
                expected.append((message_id, f"occurrence {n}"))
            n += 1
        result = log.append(events, report_stored=True)
        new = sum(flags)
        if (result.accepted, result.duplicates) != (new, len(batch) - new):
            problems.append(f"batch {batch}: {result.accepted} accepted, {new} new")
        if result.stored != tuple(flags):
            problems.append(f"batch {batch}: stored flags {result.stored}, expected {flags}")
    stored = _stored(log)
    if stored != expected:
        problems.append(f"stored {stored}, expected {expected}")
    return problems


_IDS = st.lists(st.lists(st.sampled_from([f"m{i}" for i in range(12)]), max_size=8), max_size=8)


@given(_IDS)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_each_id_is_stored_once_first_occurrence_in_order(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[str]]
) -> None:
    with _opened(tmp_path_factory.mktemp("log") / "events.duckdb") as log:
        assert _problems(log, batches) == []


def test_repeats_are_left_out_before_the_plain_insert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[tuple[str, int]] = []
    insert = duckdb_log._insert

    def spy(cur: duckdb.DuckDBPyConnection, sql: str) -> int:
        table = "fresh" if "FROM fresh" in sql else "incoming"  # the rows the INSERT reads
        rows = cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        used.append(("index" if "ON CONFLICT" in sql else "plain", rows))
        return insert(cur, sql)

    monkeypatch.setattr(duckdb_log, "_insert", spy)
    with _opened(tmp_path / "events.duckdb") as log:
        log.append([_event("a", 0), _event("b", 1)])
        assert used == [("plain", 2)]
        used.clear()
        # Two repeats (one of a stored id, one within the batch) never reach the database.
        result = log.append([_event("c", 2), _event("a", 3), _event("d", 4), _event("c", 5)])
        assert used == [("plain", 2)]
        assert (result.accepted, result.duplicates) == (2, 2)
        assert [m for m, _ in _stored(log)] == ["a", "b", "c", "d"]


def test_reopened_log_knows_its_ids(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    first = DuckDBEventLog(path)
    first.append([_event(f"m{i}", i) for i in range(500)])
    first.close()
    with _opened(path) as second:
        again = second.append([_event(f"m{i}", i) for i in range(495, 505)])
        assert (again.accepted, again.duplicates) == (5, 5)
        assert second.count() == 505


def test_a_second_log_on_the_same_file_learns_what_the_first_appended(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    with _opened(path) as first, _opened(path) as second:
        second.append([_event("z", 0)])  # reads its set now: "a" is not yet stored
        first.append([_event("a", 1), _event("b", 2)])
        result = second.append([_event("a", 3), _event("c", 4), _event("b", 5)], report_stored=True)
        assert result.stored == (False, True, False)
        assert [m for m, _ in _stored(second)] == ["z", "a", "b", "c"]
        assert first.append([_event("c", 6), _event("z", 7)]).duplicates == 2
        assert first.head() == second.head() == result.last_seq


def test_negative_control_a_second_log_that_does_not_look_stores_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duckdb_log, "_NEWER", duckdb_log._NEWER + " AND false")
    path = tmp_path / "events.duckdb"
    with _opened(path) as first, _opened(path) as second:
        second.append([_event("z", 0)])
        first.append([_event("a", 1), _event("b", 2)])
        second.append([_event("a", 3), _event("c", 4), _event("b", 5)])
        # (its rows even take numbers the first log's rows hold)
        assert sorted(m for m, _ in _stored(second)) == ["a", "a", "b", "b", "c", "z"]


def _race(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Two logs on one file append the same ids from two threads. Each append waits (at most
    2 s) after looking at the file until the other has looked too, so without a lock shared
    by both logs, both find the ids new. Returns the message ids stored."""
    barrier = threading.Barrier(2, timeout=2.0)
    look = DuckDBEventLog._current_seen

    def looked(self: DuckDBEventLog, cur: duckdb.DuckDBPyConnection) -> SeenKeys:
        seen = look(self, cur)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return seen

    with _opened(path) as first, _opened(path) as second:
        first.append([_event("warm-1", 0)])  # both have read their sets before the race
        second.append([_event("warm-2", 1)])
        monkeypatch.setattr(DuckDBEventLog, "_current_seen", looked)
        threads = [
            threading.Thread(target=log.append, args=([_event(f"x{i}", i) for i in range(5)],))
            for log in (first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [m for m, _ in _stored(first)]


def test_two_logs_appending_at_once_store_each_id_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = _race(tmp_path / "events.duckdb", monkeypatch)
    assert sorted(stored) == sorted({"warm-1", "warm-2", *(f"x{i}" for i in range(5))})


def test_negative_control_without_the_shared_lock_a_race_stores_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duckdb_log, "_shared_file", lambda path: duckdb_log._SharedFile())
    stored = _race(tmp_path / "events.duckdb", monkeypatch)
    assert len(stored) == 2 + 2 * 5  # every x-id twice


class _CallsEverythingNew(SeenKeys):
    def new(self, hi: Halves, lo: Halves) -> np.ndarray:
        return np.ones(len(hi), dtype=np.bool_)


def test_negative_control_with_a_wrong_set_repeats_are_stored(tmp_path: Path) -> None:
    with _opened(tmp_path / "events.duckdb") as log:
        log._seen = _CallsEverythingNew()
        problems = _problems(log, [["a", "b"], ["a", "c", "c"]])
        assert problems  # the harness sees the repeats stored
        assert [m for m, _ in _stored(log)] == ["a", "b", "a", "c", "c"]


_VERSION_1 = duckdb_log._DDL.replace("mid UHUGEINT NOT NULL,", "mid UHUGEINT NOT NULL UNIQUE,")


def test_a_version_1_file_keeps_working_and_its_index_still_refuses_a_repeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _VERSION_1 != duckdb_log._DDL
    path = tmp_path / "events.duckdb"
    with monkeypatch.context() as patched:
        patched.setattr(duckdb_log, "_DDL", _VERSION_1)
        DuckDBEventLog(path).close()
    with _opened(path) as log:  # opened by today's code
        assert _problems(log, [["a", "b"], ["a", "c", "c"], ["b", "d"]]) == []
        log._seen = _CallsEverythingNew()
        with pytest.raises(duckdb.ConstraintException):
            log.append([_event("e", 10), _event("a", 11)])
        assert [m for m, _ in _stored(log)] == ["a", "b", "c", "d"]  # the append failed whole


# --- reading across gaps in the sequence -----------------------------------------------------
_REFUSED = QuarantineEntry(NOW, "wk_test", None, None, "x", None, "{}")  # type: ignore[arg-type]


def _seqs(table: pa.Table) -> list[int]:
    return [int(s) for s in table.column("seq").to_pylist()]


def test_an_append_rolled_back_uses_no_sequence_number(tmp_path: Path) -> None:
    with _opened(tmp_path / "events.duckdb") as log:
        log.append([_event(f"a{i}", i) for i in range(3)])
        # inserted, then rolled back: a quarantine entry the table refuses
        with pytest.raises(duckdb.ConstraintException):
            log.append([_event("gone", 3)], [_REFUSED])
        assert log.head() == 3
        after = log.append([_event("gone", 4), _event("b", 5)])
        assert (after.accepted, after.last_seq) == (2, 5)
        assert _seqs(log.read_after(0, 100)) == [1, 2, 3, 4, 5]
        assert [m for m, _ in _stored(log)] == ["a0", "a1", "a2", "gone", "b"]


def test_reading_after_any_position_skips_nothing_across_gaps(tmp_path: Path) -> None:
    """``read_after`` reads a range of sequence numbers. Files written before schema version 3
    have gaps in them where an append rolled back (made here by removing rows). Whatever the
    position and limit, the result is the next ``limit`` events."""
    path = tmp_path / "events.duckdb"
    with _opened(path) as log:
        for round_ in range(4):
            log.append([_event(f"r{round_}-{i}", 6 * round_ + i) for i in range(6)])
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM event_log WHERE seq % 6 = 0")
    con.close()
    with _opened(path) as log:
        every = _seqs(log.read_after(0, 1_000))
        assert len(every) == 20
        gaps = [b for a, b in itertools.pairwise(every) if b != a + 1]
        assert gaps, "the rolled-back appends left no gap: the test would prove nothing"
        wrong = []
        for position in range(every[-1] + 1):
            for limit in (1, 2, 3, 5, 8, 100):
                expected = [s for s in every if s > position][:limit]
                if _seqs(log.read_after(position, limit)) != expected:
                    wrong.append((position, limit))
        assert wrong == []
        # Negative control: the range alone comes back short before a gap.
        position = gaps[0] - 6
        short = log._cursor().sql(duckdb_log._RANGE, params=[position, position + 5])
        assert short.to_arrow_table().num_rows < 5
