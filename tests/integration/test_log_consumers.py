"""Consumers sharing one process: giving way to the profile projector, and short chunks.

Real stores (both deployments): the log and the checkpoints are the container's own.
"""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest
from sqlalchemy.orm import Session
from tests.conftest import NOW

from counterpoint.container import CONSUMER_CHUNK_S, Container
from counterpoint.event.canonical import EventKind, LogEvent
from counterpoint.event.consumer import LogConsumer


class _Recording(LogConsumer):
    """Records the sizes of the chunks it applies; ``gate`` (if set) holds each apply."""

    def __init__(self, container: Container, name: str) -> None:
        self.name = name
        super().__init__(container.sessions, container.log)
        self.sizes: list[int] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def apply(self, session: Session, table: pa.Table) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        self.sizes.append(table.num_rows)


def _append(container: Container, count: int, tag: str) -> None:
    container.log.append(
        [
            LogEvent(f"{tag}-{i}", EventKind.TRACK, f"crm:C-{i % 50}", NOW, NOW, "tests")
            for i in range(count)
        ]
    )


@pytest.mark.parametrize("gives_way", [True, False])
def test_a_consumer_waits_while_the_one_it_gives_way_to_is_applying(
    container: Container, gives_way: bool
) -> None:
    """While the first consumer is inside a chunk, the second starts none of its own; without
    giving way (the negative control) it does."""
    first, second = _Recording(container, "t-first"), _Recording(container, "t-second")
    first.gate = threading.Event()
    if gives_way:
        second.give_way_to = first
        second.give_way_s = 5.0
    first.catch_up()  # both checkpoints exist: a held chunk then holds no write lock
    second.catch_up()
    _append(container, 10, "a")
    first.start()
    first.wake()
    assert first.entered.wait(5)  # the first is now applying, held by the gate
    second.start()
    try:
        second.wake()
        time.sleep(0.5)
        assert (second.sizes == []) is gives_way
        first.gate.set()
        deadline = time.monotonic() + 5
        while not second.sizes and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sum(second.sizes) == 10  # once the first is idle, the second catches up
    finally:
        first.gate.set()
        second.stop()
        first.stop()


def test_a_caller_that_needs_the_result_now_does_not_give_way(container: Container) -> None:
    """``catch_up(give_way=False)`` (the delivery worker settling its touches) applies while
    the consumer given way to is busy; the same call giving way waits for it."""
    first, second = _Recording(container, "t-first"), _Recording(container, "t-second")
    first.gate = threading.Event()
    second.give_way_to = first
    second.give_way_s = 5.0
    first.catch_up()
    second.catch_up()
    _append(container, 10, "c")
    first.start()
    first.wake()
    assert first.entered.wait(5)
    try:
        started = time.monotonic()
        assert second.catch_up(give_way=False) == 10
        assert time.monotonic() - started < 2.0
        _append(container, 5, "d")
        waiter = threading.Thread(target=second.catch_up)
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # giving way: still waiting while the first is busy
        first.gate.set()
        waiter.join(5)
        assert not waiter.is_alive()
        assert sum(second.sizes) == 15
    finally:
        first.gate.set()
        first.stop()


def test_chunks_shrink_while_slow_and_grow_while_quick_only_when_sharing(
    container: Container,
) -> None:
    first, second = _Recording(container, "t-first"), _Recording(container, "t-second")
    second.give_way_to = first
    second.chunk_seconds = 0.2
    _append(container, 7_000, "b")
    # alone (the first is not running): whole chunks, whatever the timing
    assert second._next_rows() == second.chunk_size
    second._timed(second.chunk_size, 10.0)
    assert second._next_rows() == second.chunk_size
    first.start()
    try:
        assert second._next_rows() == 1_000  # sharing: start short
        second._timed(1_000, 0.01)
        second._timed(2_000, 0.01)
        assert second._next_rows() == 4_000  # quick chunks double
        second._timed(4_000, 0.1)
        assert second._next_rows() == 4_000  # within the target: kept
        second._timed(4_000, 0.5)
        assert second._next_rows() == 2_000  # too slow: halved
        for _ in range(5):
            second._timed(1_000, 5.0)
        assert second._next_rows() == 1_000  # never below the smallest chunk
        second._timed(300, 0.01)
        assert second._next_rows() == 1_000  # a short read (caught up) does not grow it
        assert second.catch_up() == 7_000
        assert second.sizes[0] == 1_000
        assert max(second.sizes) <= 4_000
    finally:
        first.stop()


def test_the_container_makes_every_other_consumer_give_way_to_the_projector(
    container: Container,
) -> None:
    others = [*container.consumers, container.journey_runtime.consumer]
    assert others
    for consumer in others:
        assert consumer.give_way_to is container.projector
        assert consumer.chunk_seconds == CONSUMER_CHUNK_S
    assert container.projector.give_way_to is None


class _Slow(_Recording):
    """Takes a while per chunk, like a consumer far behind after a bulk import."""

    def apply(self, session: Session, table: pa.Table) -> None:
        time.sleep(0.05)
        super().apply(session, table)


@pytest.mark.parametrize("stops_between_chunks", [True, False])
def test_stopping_a_consumer_ends_its_catch_up_after_the_current_chunk(
    container: Container, monkeypatch: pytest.MonkeyPatch, stops_between_chunks: bool
) -> None:
    """``stop`` while a long backlog is applied returns after the chunk in hand; the checkpoint
    holds what was applied and a later catch-up does the rest. Without the check between
    chunks (the negative control) ``stop`` waits for the whole backlog."""
    consumer = _Slow(container, "t-backlog")
    consumer.chunk_size = 10
    consumer.catch_up()
    _append(container, 400, "b")  # 40 chunks, about 2 s
    if not stops_between_chunks:
        monkeypatch.setattr(consumer, "_stopping", lambda: False)
    consumer.start()
    consumer.wake()
    assert consumer.entered.wait(5)
    consumer.stop()
    applied = sum(consumer.sizes)
    if stops_between_chunks:
        assert 0 < applied < 100
        assert consumer.catch_up() == 400 - applied  # resumes from the checkpoint
        assert sum(consumer.sizes) == 400
    else:
        assert applied == 400
