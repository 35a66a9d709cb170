"""Mapping processes: a request mapped in one gives exactly what the in-process mapping gives,
its errors arrive as the same problems, a process that dies costs only its requests in flight
(refused, never acknowledged), and stopping leaves no process behind."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gzip
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import NOW

from counterpoint.container import Container
from counterpoint.errors import CounterpointError
from counterpoint.event.arrow import events_to_arrow
from counterpoint.event.keys import KeyInfo
from counterpoint.event.mappers import MappingPool
from counterpoint.event.requests import RequestLimits, RequestToMap, map_request

KEY = KeyInfo("wk_tests", "tests (synthetic)", trusted=False)
LIMITS = RequestLimits(max_event_bytes=32 * 1024, max_batch_bytes=500 * 1024)
NPI = "1234567893"


def _request(body: bytes, encoding: str | None = None, implied: str | None = None) -> RequestToMap:
    return RequestToMap(body, encoding, implied, KEY, NOW, LIMITS)


def _track(message_id: str, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "messageId": message_id,
        "userId": f"npi:{NPI}",
        "event": "Email Opened",
        "timestamp": "2026-11-20T09:00:00Z",
        "properties": {"brand": "ZENTROVA", "synthetic": True},
    }
    event.update(extra)
    return event


def _batch(*events: Any, sent_at: str | None = "2026-11-20T09:00:05Z") -> bytes:
    body: dict[str, Any] = {"batch": list(events)}
    if sent_at is not None:
        body["sentAt"] = sent_at
    return json.dumps(body, ensure_ascii=False).encode()


CASES: list[tuple[str, bytes, str | None, str | None]] = [
    (
        "valid, repeated and refused events",
        _batch(
            _track("m1"),
            _track("m2", properties={"channel": "f2f_call", "action": "call_completed"}),
            _track("m1"),
            {"type": "track", "messageId": "no-identity"},
            "not an object",
            _track("m3", userId="npi:1234567894"),
            _track("m4", timestamp="yesterday"),
        ),
        None,
        None,
    ),
    (
        "text in many scripts, and a page and an identify call",
        _batch(
            _track("ü-1", properties={"brand": "Zéntrova", "title": "Übersicht 日本語 🩺"}),
            {"type": "page", "messageId": "p-1", "userId": f"npi:{NPI}", "name": "Ärzte"},
            {
                "type": "identify",
                "messageId": "i-1",
                "userId": f"npi:{NPI}",
                "traits": {"email": "dr.muster@example.org", "firstName": "Zoë"},
            },
        ),
        None,
        None,
    ),
    ("no sentAt: no clock-skew correction", _batch(_track("s-1"), sent_at=None), None, None),
    ("an empty batch", _batch(), None, None),
    ("gzip", gzip.compress(_batch(_track("g-1"), _track("g-2"))), "gzip", None),
    ("a single track call", json.dumps(_track("t-1")).encode(), None, "track"),
]


@pytest.fixture(scope="module")
def pool() -> Iterator[MappingPool]:
    """One pool for the module: each test maps from its own event loop, as a pool outlives
    a closed loop."""
    started = MappingPool(2)
    started.start()
    yield started
    started.stop()


def _in_pool(pool: MappingPool, calls: list[tuple[bytes, str | None, str | None]]) -> list[Any]:
    async def run() -> list[Any]:
        out: list[Any] = []
        for body, encoding, implied in calls:
            try:
                out.append(await pool.map(_request(body, encoding, implied)))
            except CounterpointError as exc:
                out.append(exc)
        return out

    return asyncio.run(run())


@pytest.mark.parametrize(("name", "body", "encoding", "implied"), CASES, ids=[c[0] for c in CASES])
def test_a_mapped_request_equals_the_in_process_mapping(
    pool: MappingPool, name: str, body: bytes, encoding: str | None, implied: str | None
) -> None:
    expected = map_request(_request(body, encoding, implied))
    before = pool.mapped
    (got,) = _in_pool(pool, [(body, encoding, implied)])
    assert got.events.equals(events_to_arrow(expected.events)), name
    assert got.events.schema.equals(events_to_arrow(expected.events).schema)
    assert got.quarantine == expected.quarantine
    assert got.errors == expected.errors
    assert pool.mapped == before + 1


def test_many_requests_at_once_are_each_answered_with_their_own_events(
    pool: MappingPool,
) -> None:
    bodies = [_batch(*[_track(f"r{r}-e{e}") for e in range(r % 7)]) for r in range(60)]

    async def run() -> list[Any]:
        return await asyncio.gather(*[pool.map(_request(body)) for body in bodies])

    before = pool.mapped
    answers = asyncio.run(run())
    for r, answer in enumerate(answers):
        assert answer.events.column("message_id").to_pylist() == [
            f"r{r}-e{e}" for e in range(r % 7)
        ]
    assert pool.mapped == before + 60
    assert len(pool.pids()) == 2


BAD: list[tuple[str, bytes, str | None, str | None]] = [
    ("malformed JSON", b'{"batch": [', None, None),
    ("not a batch", b'{"batch": 7}', None, None),
    ("bad gzip", b"\x1f\x8bnot gzip at all", "gzip", None),
    ("truncated gzip", gzip.compress(_batch(_track("x")))[:-8], "gzip", None),
    ("an encoding nobody sends", b"{}", "br", None),
    ("too large once inflated", gzip.compress(b" " * (600 * 1024)), "gzip", None),
    ("a single call that is no object", b"[1, 2]", None, "track"),
]


@pytest.mark.parametrize(("name", "body", "encoding", "implied"), BAD, ids=[c[0] for c in BAD])
def test_errors_arrive_as_the_same_problems(
    pool: MappingPool, name: str, body: bytes, encoding: str | None, implied: str | None
) -> None:
    with pytest.raises(CounterpointError) as in_process:
        map_request(_request(body, encoding, implied))
    (got,) = _in_pool(pool, [(body, encoding, implied)])
    assert isinstance(got, CounterpointError), name
    assert type(got) is type(in_process.value)
    assert got.to_problem() == in_process.value.to_problem()
    # the process is still serving
    (after,) = _in_pool(pool, [(_batch(_track("after")), None, None)])
    assert after.events.num_rows == 1


def test_ctrl_c_leaves_the_processes_to_the_api_process(pool: MappingPool) -> None:
    """Ctrl+C reaches the terminal's whole process group; the API process then stops its pool
    in order, so the mapping processes themselves ignore it."""
    pids = pool.pids()
    for pid in pids:
        os.kill(pid, signal.SIGINT)
    time.sleep(0.5)
    assert pool.pids() == pids
    assert all(_alive(pid) for pid in pids)
    (after,) = _in_pool(pool, [(_batch(_track("after-ctrl-c")), None, None)])
    assert after.events.num_rows == 1


def test_stop_leaves_no_process_behind() -> None:
    started = MappingPool(2)
    started.start()
    pids = started.pids()
    assert len(pids) == 2
    assert all(_alive(pid) for pid in pids)
    started.stop()
    assert not started.running
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_stop_inside_the_event_loop_is_prompt(runner: str) -> None:
    """The API process stops its pool from its event loop (the lifespan's end); with uvloop,
    as `counterpoint serve` runs, the loop's copy of a socket closes only once the loop runs
    again, so stop must not wait for the processes to see the end of their input."""
    import uvloop

    async def run() -> float:
        started = MappingPool(2)
        started.start()
        await started.map(_request(_batch(_track("s"))))
        began = time.monotonic()
        started.stop()
        return time.monotonic() - began

    took = uvloop.run(run()) if runner == "uvloop" else asyncio.run(run())
    assert took < 5, f"stop took {took:.1f} s"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not running; ``stop`` reaps its children, so this is belt and braces
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[1].split()[0] != "Z"


def test_a_start_that_fails_says_how_to_see_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.executable", "/bin/false")
    with pytest.raises(RuntimeError, match="did not start"):
        MappingPool(1).start()


# --- through the API ------------------------------------------------------------------------


@pytest.fixture(params=[1], ids=["mapping-process"])
def mapping_processes(request: pytest.FixtureRequest) -> int:
    return int(request.param)


def test_the_api_maps_in_the_processes_and_survives_one_dying(
    container: Container, client: TestClient, basic: dict[str, str]
) -> None:
    pool = container.mapping
    assert pool is not None
    assert pool.running
    first = client.post("/v1/batch", content=_batch(_track("k-0")), headers=basic)
    assert first.status_code == 200, first.text
    assert pool.mapped == 1
    (pid,) = pool.pids()

    os.kill(pid, signal.SIGKILL)
    acknowledged = {"k-0"}
    refused = 0
    new_pid = None
    deadline = time.monotonic() + 60
    n = 0
    while new_pid is None and time.monotonic() < deadline:
        n += 1
        response = client.post("/v1/batch", content=_batch(_track(f"k-{n}")), headers=basic)
        if response.status_code == 200:
            assert response.json()["accepted"] == 1
            acknowledged.add(f"k-{n}")
        else:
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "mapping_unavailable"
            refused += 1
        pids = pool.pids()
        if pids and pids != [pid]:
            new_pid = pids[0]
        time.sleep(0.01)
    assert new_pid is not None, "no replacement process started"
    # the replacement maps again
    mapped_before = pool.mapped
    again = client.post("/v1/batch", content=_batch(_track("k-last")), headers=basic)
    assert again.status_code == 200, again.text
    acknowledged.add("k-last")
    assert pool.mapped == mapped_before + 1
    # every acknowledged event is stored, and nothing else
    stored = set(container.log.read_after(0, 10_000).column("message_id").to_pylist())
    assert stored == acknowledged


def test_a_write_key_inside_the_body_is_mapped_in_process(
    container: Container, client: TestClient, write_key: str
) -> None:
    pool = container.mapping
    assert pool is not None
    body = json.loads(_batch(_track("wk-1")))
    body["writeKey"] = write_key
    response = client.post("/v1/batch", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert pool.mapped == 0
    # and with the key in the header, the same request goes to a process
    header = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    response = client.post("/v1/batch", content=_batch(_track("wk-2")), headers=header)
    assert response.json()["accepted"] == 1
    assert pool.mapped == 1


def test_received_at_is_the_api_process_clock(
    container: Container, client: TestClient, basic: dict[str, str]
) -> None:
    response = client.post("/v1/batch", content=_batch(_track("clock-1")), headers=basic)
    assert response.status_code == 200
    row = container.log.read_after(0, 10).to_pylist()[0]
    assert row["received_at"] == NOW
    # sentAt is five seconds after the timestamp: the event occurred five seconds before
    # the API process received it (Segment's clock-skew correction)
    assert row["occurred_at"] == NOW - dt.timedelta(seconds=5)
