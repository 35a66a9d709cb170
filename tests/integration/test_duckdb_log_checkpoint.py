"""An erasure's redaction and a quarantine purge write the embedded log's file through (a
checkpoint), so the overwritten values leave the write-ahead log, even while another thread is
in the middle of a read. The read is neither aborted nor shown the change. A negative control
shows the plain checkpoint refusing in the same situation."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

import counterpoint.event.duckdb_log as duckdb_log
from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent
from counterpoint.event.duckdb_log import DuckDBEventLog
from counterpoint.event.log import QuarantineEntry

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
SUBJECT = "npi:1234567893"
HOLD_SECONDS = 0.5


def _event(n: int) -> LogEvent:
    return LogEvent(
        message_id=f"m-{n}",
        kind=EventKind.TRACK,
        subject=SUBJECT,
        occurred_at=NOW - dt.timedelta(minutes=n),
        received_at=NOW,
        source="wk_test",
        channel=Channel.CAMPAIGN_EMAIL,
        action=Action.OPENED,
        event_name=f"synthetic open {n}",
        payload={"n": n},
    )


@pytest.fixture
def log(tmp_path: Path) -> Iterator[DuckDBEventLog]:
    opened = DuckDBEventLog(tmp_path / "events.duckdb")
    quarantine = QuarantineEntry(
        received_at=NOW,
        source="wk_test",
        reason_code="bad_field",
        field="timestamp",
        detail="synthetic: not a time",
        fix="send ISO 8601",
        raw='{"email": "zephyrine.quillfeather@example-clinic.org"}',
    )
    opened.append([_event(n) for n in range(20)], [quarantine])
    try:
        yield opened
    finally:
        opened.close()


class _Reader:
    """Another thread's read, open for ``HOLD_SECONDS`` (as the projector's is while it reads)."""

    def __init__(self, log: DuckDBEventLog) -> None:
        self._cursor = log._con.cursor()  # a second client of the same file
        self._cursor.execute("BEGIN TRANSACTION")
        self.before = self._names()
        self.during: list[str | None] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._hold)
        self._thread.start()

    def _names(self) -> list[str | None]:
        rows = self._cursor.execute("SELECT event_name FROM event_log ORDER BY seq").fetchall()
        return [r[0] for r in rows]

    def _hold(self) -> None:
        try:
            time.sleep(HOLD_SECONDS)
            self.during = self._names()
            self._cursor.execute("COMMIT")
        except BaseException as error:  # reported to the test, not lost in the thread
            self.error = error

    def join(self) -> None:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()
        self._cursor.close()


def _wal(log: DuckDBEventLog, tmp_path: Path) -> int:
    wal = tmp_path / "events.duckdb.wal"
    return wal.stat().st_size if wal.exists() else 0


def _redact(log: DuckDBEventLog) -> int:
    return log.redact([SUBJECT], "erased:0123456789abcdef")


def _purge(log: DuckDBEventLog) -> int:
    return log.purge_quarantined(["zephyrine.quillfeather@example-clinic.org"])


@pytest.mark.parametrize("change", [_redact, _purge], ids=["redact", "purge"])
def test_the_change_is_written_through_while_another_thread_reads(
    log: DuckDBEventLog, tmp_path: Path, change: Callable[[DuckDBEventLog], int]
) -> None:
    reader = _Reader(log)
    changed = change(log)
    reader.join()
    assert reader.error is None  # the read was not aborted
    assert reader.during == reader.before  # and saw its own snapshot throughout
    assert changed == (20 if change is _redact else 1)
    assert _wal(log, tmp_path) == 0  # nothing of the old values is left in the WAL
    names = {r["event_name"] for r in log.read_after(0, 100).to_pylist()}
    assert names == ({None} if change is _redact else {f"synthetic open {n}" for n in range(20)})


def test_negative_control_a_plain_checkpoint_refuses_while_another_thread_reads(
    log: DuckDBEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duckdb_log, "_checkpoint", lambda cur: cur.execute("CHECKPOINT"))
    reader = _Reader(log)
    try:
        with pytest.raises(duckdb.TransactionException, match="CHECKPOINT"):
            _redact(log)
    finally:
        reader.join()
    assert reader.error is None
