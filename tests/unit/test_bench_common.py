"""The benchmark infrastructure: bench/common.py, bench/loadgen.py, bench/run_all.py.

The load generator is checked against a small asyncio HTTP/1.1 server started by the tests on
127.0.0.1 (keep-alive, Content-Length, chunked, interim and EOF-delimited responses).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench`

import pytest
from bench import run_all
from bench.common import Result, format_figure, machine_info, median_of, median_time, write_json
from bench.loadgen import (
    Latencies,
    LoadReport,
    ProtocolError,
    build_get,
    build_post,
    check_loopback,
    merge_reports,
    parse_head,
    run_load,
    run_load_processes,
    run_load_sync,
)

# ---------------------------------------------------------------------------------------------
# A tiny HTTP/1.1 server


@dataclass
class ServerStats:
    connections: int = 0
    requests: int = 0
    bodies: list[bytes] = field(default_factory=list)


def _response(status: int, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} Whatever", *headers]
    if body or status not in (204, 304):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _handle(
    stats: ServerStats, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    stats.connections += 1
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
            length = 0
            for line in head.decode().split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            stats.requests += 1
            if method == "POST":
                stats.bodies.append(body)
            if path == "/hang":  # never answer; wait for the client to go away
                await reader.read()
                return
            if not await _respond(path, body, writer):
                return
    finally:
        writer.close()


async def _respond(path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
    """Write the response for ``path``; False when the connection must then be closed."""
    parts = path.strip("/").split("/")
    if parts[0] == "cl":
        writer.write(_response(200, b"x" * int(parts[1]), "Content-Type: text/plain"))
    elif parts[0] == "status":
        writer.write(_response(int(parts[1]), b'{"detail":"status"}'))
    elif parts[0] == "empty":
        writer.write(_response(204, b""))
    elif parts[0] == "echo":
        writer.write(_response(201, body))
    elif parts[0] == "chunked":
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
            b"5\r\nhello\r\n"
            b"1;ext=1\r\n \r\n"
            b"a\r\n0123456789\r\n"
            b"0\r\nX-Trailer: yes\r\n\r\n"
        )
    elif parts[0] == "split":  # a chunked response arriving in small pieces
        pieces = [
            b"HTTP/1.1 200 OK\r\nTrans",
            b"fer-Encoding: chunked\r\n",
            b"\r\n3\r",
            b"\nabc\r\n",
            b"10\r\n0123456789abcdef\r\n0\r\n",
            b"\r\n",
        ]
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.001)
    elif parts[0] == "continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + _response(200, b"after"))
    elif parts[0] == "close":
        writer.write(_response(200, b"bye", "Connection: close"))
        await writer.drain()
        return False
    elif parts[0] == "eof":  # HTTP/1.0 style: the body ends with the connection
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        await writer.drain()
        return False
    elif parts[0] == "garbage":
        writer.write(b"SPDY/9 200 OK\r\n\r\n")
    else:
        writer.write(_response(404, b"no such path"))
    await writer.drain()
    return True


@asynccontextmanager
async def http_server() -> AsyncIterator[tuple[int, ServerStats]]:
    stats = ServerStats()
    server = await asyncio.start_server(
        lambda r, w: _handle(stats, r, w), "127.0.0.1", 0, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, stats
    finally:
        server.close()
        await server.wait_closed()


def load(
    requests: list[bytes], connections: int = 1, **kwargs: Any
) -> tuple[LoadReport, ServerStats]:
    async def go() -> tuple[LoadReport, ServerStats]:
        async with http_server() as (port, stats):
            report = await run_load("127.0.0.1", port, requests, connections, **kwargs)
            return report, stats

    return asyncio.run(go())


# ---------------------------------------------------------------------------------------------
# loadgen against the server


def test_keep_alive_with_content_length() -> None:
    requests = [build_get("/cl/10"), build_get("/cl/0"), build_get("/cl/200000")]
    report, stats = load(requests, connections=2, total=60)
    assert report.requests_done == 60
    assert report.status_counts == {200: 60}
    assert report.errors == 0
    assert stats.connections == 2  # both connections kept alive throughout
    assert report.connects == 2
    assert stats.requests == 60
    assert report.bytes_received > 20 * 200_000
    assert len(report.latency_samples_ns) == 60
    assert 0 < report.latencies_ms.p50 <= report.latencies_ms.p90 <= report.latencies_ms.p99


def test_chunked_responses_keep_the_connection() -> None:
    report, stats = load([build_get("/chunked"), build_get("/split")], connections=1, total=20)
    assert report.status_counts == {200: 20}
    assert report.errors == 0
    assert stats.connections == 1


def test_status_counts_are_exact() -> None:
    requests = [
        build_get("/status/404"),
        build_get("/status/500"),
        build_get("/cl/5"),
        build_get("/empty"),
        build_get("/status/429"),
    ]
    report, stats = load(requests, connections=1, total=50)
    assert report.status_counts == {404: 10, 500: 10, 200: 10, 204: 10, 429: 10}
    assert report.requests_done == 50
    assert report.errors == 0
    assert stats.connections == 1


def test_post_bodies_arrive_whole() -> None:
    body = json.dumps({"type": "track", "event": "Email Opened", "pad": "x" * 5000}).encode()
    request = build_post("/echo", body, {"Content-Type": "application/json"})
    report, stats = load([request], connections=3, total=30)
    assert report.status_counts == {201: 30}
    assert stats.bodies == [body] * 30
    assert stats.connections == 3


def test_connection_close_makes_it_reconnect() -> None:
    report, stats = load([build_get("/close"), build_get("/eof")], connections=1, total=6)
    assert report.status_counts == {200: 6}
    assert report.errors == 0
    assert report.connects == 6
    assert stats.connections == 6


def test_interim_responses_are_skipped() -> None:
    report, _ = load([build_get("/continue"), build_get("/cl/3")], connections=1, total=10)
    assert report.status_counts == {200: 10}
    assert report.errors == 0


def test_duration_mode_stops_by_itself() -> None:
    started = time.perf_counter()
    report, _ = load([build_get("/cl/20")], connections=2, duration_s=0.3)
    assert time.perf_counter() - started < 5
    assert 0.3 <= report.seconds < 2
    assert report.requests_done > 10
    assert report.rps == pytest.approx(report.requests_done / report.seconds)


def test_a_server_that_hangs_cannot_hold_the_run() -> None:
    started = time.perf_counter()
    report, _ = load(
        [build_get("/hang")], connections=2, total=100, max_duration_s=0.2, request_timeout_s=0.2
    )
    assert time.perf_counter() - started < 5
    assert report.requests_done == 0
    assert report.errors == 2  # the two requests in flight were cancelled


def test_malformed_responses_count_as_errors() -> None:
    report, _ = load([build_get("/garbage")], connections=1, total=3)
    assert report.requests_done == 0
    assert report.errors == 3
    assert report.status_counts == {}


def test_run_load_sync_and_processes() -> None:
    async def start() -> tuple[int, ServerStats, asyncio.Server]:
        stats = ServerStats()
        server = await asyncio.start_server(lambda r, w: _handle(stats, r, w), "127.0.0.1", 0)
        return server.sockets[0].getsockname()[1], stats, server

    # The server runs in a thread of its own so that the synchronous clients can reach it.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        port, stats, server = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
        report = run_load_sync("127.0.0.1", port, [build_get("/cl/7")], 2, total=40)
        assert report.status_counts == {200: 40}
        merged = run_load_processes(
            "127.0.0.1", port, [build_get("/cl/7")], 3, total=31, processes=2
        )
        assert merged.requests_done == 31
        assert merged.status_counts == {200: 31}
        assert merged.connections == 3
        assert stats.connections == 5
        server.close()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.mark.parametrize("host", ["example.com", "10.0.0.1", "0.0.0.0", "192.168.1.20", "::1"])
def test_refuses_hosts_other_than_loopback(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(run_load(host, 80, [build_get("/")], 1, total=1))
    with pytest.raises(ValueError, match="loopback"):
        run_load_sync(host, 80, [build_get("/")], 1, total=1)
    with pytest.raises(ValueError, match="loopback"):
        run_load_processes(host, 80, [build_get("/")], 2, total=1, processes=2)
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(host)


def test_loopback_names_are_accepted() -> None:
    assert check_loopback("localhost") == "127.0.0.1"
    assert check_loopback("127.0.0.1") == "127.0.0.1"


def test_a_run_must_be_bounded() -> None:
    with pytest.raises(ValueError, match="duration_s or total"):
        asyncio.run(run_load("127.0.0.1", 8000, [build_get("/")], 1))


# ---------------------------------------------------------------------------------------------
# Parsing and building


def test_parse_head() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: x\r\n\r\n")
    assert (head.status, head.content_length, head.chunked, head.keep_alive) == (
        200,
        12,
        False,
        True,
    )
    head = parse_head(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: gzip, Chunked\r\n\r\n")
    assert (head.status, head.content_length, head.chunked) == (404, None, True)
    assert not parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keep_alive
    assert not parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert parse_head(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n").keep_alive
    assert parse_head(b"HTTP/1.1 204\r\n\r\n").status == 204  # no reason phrase
    for bad in (
        b"garbage\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    ):
        with pytest.raises(ProtocolError):
            parse_head(bad)


def test_build_requests() -> None:
    assert build_get("/hello", {"Accept": "application/json"}) == (
        b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"
    )
    post = build_post("/v1/track", b'{"a":1}', {"Content-Type": "application/json"})
    assert post == (
        b"POST /v1/track HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 7\r\n\r\n{"a":1}'
    )
    with pytest.raises(ValueError, match="header"):
        build_get("/", {"X-Evil": "a\r\nInjected: 1"})
    with pytest.raises(ValueError, match="path"):
        build_get("no-slash")


def test_latencies_and_merge() -> None:
    lat = Latencies.from_ns(ms * 1_000_000 for ms in range(1, 101))
    assert (lat.p50, lat.p90, lat.p99, lat.max) == (50.0, 90.0, 99.0, 100.0)
    assert lat.mean == pytest.approx(50.5)
    one = LoadReport(2, 1.0, Latencies.from_ns([1, 2]), {200: 2}, connections=1)
    one.latency_samples_ns.extend([1_000_000, 2_000_000])
    two = LoadReport(1, 2.0, Latencies.from_ns([3]), {200: 1, 503: 0}, errors=1, connections=1)
    two.latency_samples_ns.append(3_000_000)
    merged = merge_reports([one, two])
    assert merged.requests_done == 3
    assert merged.seconds == 2.0
    assert merged.status_counts == {200: 3, 503: 0}
    assert merged.errors == 1
    assert merged.latencies_ms.max == 3.0


# ---------------------------------------------------------------------------------------------
# common


def test_median_of_and_median_time() -> None:
    figures = iter([5.0, 1.0, 3.0])
    assert median_of(lambda: next(figures), 3) == 3.0
    assert 0 <= median_time(lambda: None, 3) < 0.1
    with pytest.raises(ValueError, match="repeats"):
        median_of(lambda: 1.0, 0)


def test_result_lines(capsys: pytest.CaptureFixture[str]) -> None:
    result = Result("msgspec decode", 800_000.0, "events/s", "json.loads", 200_000.0)
    assert result.ratio == 4.0
    result.print()
    human, row = capsys.readouterr().out.splitlines()
    assert human.startswith("msgspec decode: 800,000 events/s")
    assert "ratio 4.00x" in human
    assert row == "| msgspec decode | 800,000 | events/s | json.loads | 200,000 | 4.00x |"
    header = Result.markdown_header().splitlines()[0]
    assert header.count("|") == row.count("|")
    plain = Result("bandwidth", 7.5, "GB/s")
    assert plain.ratio is None
    assert plain.markdown_row() == "| bandwidth | 7.50 | GB/s | – | – | – |"


def test_format_figure() -> None:
    assert [format_figure(v) for v in (12345.6, 123.45, 12.345, 8.0, 0.0, None)] == [
        "12,346",
        "123.5",
        "12.35",
        "8.00",
        "0",
        "–",
    ]


def test_write_json_and_machine_info(tmp_path: Path) -> None:
    info = machine_info()
    assert {"cpu_model", "cores", "memory_gib", "python", "date_utc"} <= info.keys()
    assert info["date_utc"].endswith("Z")
    target = tmp_path / "out" / "cal.json"
    write_json(target, [Result("a", 1.0, "x", extra={"k": 2})], extra={"command": "cmd"})
    document = json.loads(target.read_text())
    assert document["command"] == "cmd"
    assert document["results"][0]["name"] == "a"
    assert document["results"][0]["extra"] == {"k": 2}
    assert document["machine"]["python"] == info["python"]


# ---------------------------------------------------------------------------------------------
# run_all discovery


def test_run_all_discovers_scripts_by_their_constant(tmp_path: Path) -> None:
    (tmp_path / "yes.py").write_text("TINY_SUPPORTED = True\n")
    (tmp_path / "typed.py").write_text("TINY_SUPPORTED: bool = True\n")
    (tmp_path / "no.py").write_text("TINY_SUPPORTED = False\n")
    (tmp_path / "docstring.py").write_text('"""\nTINY_SUPPORTED = True\n"""\n')
    (tmp_path / "nested.py").write_text("def f():\n    TINY_SUPPORTED = True\n")
    (tmp_path / "broken.py").write_text("TINY_SUPPORTED = True\n(((\n")
    assert [p.name for p in run_all.discover(tmp_path)] == ["typed.py", "yes.py"]
    assert "calibrate.py" in [p.name for p in run_all.discover()]
