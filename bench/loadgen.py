"""A small HTTP/1.1 load generator for servers listening on the loopback interface.

Usable as a library::

    report = await run_load("127.0.0.1", port, [build_get("/hello")], connections=4, duration_s=5)
    print(report.rps, report.latencies_ms.p99, report.status_counts)

or from synchronous code with :func:`run_load_sync` (uses uvloop when installed) and
:func:`run_load_processes` (the client spread over several processes, figures aggregated).

Each connection is a keep-alive asyncio stream with one request in flight at a time (no
pipelining); requests are taken in turn from the given list of complete raw requests. Responses
are parsed just enough to be correct and cheap: status line, ``Content-Length``, chunked bodies,
``Connection: close`` (then the connection is reopened), interim 1xx responses, bodies that end
at EOF, and responses without a body (HEAD, 204, 304).

Only loopback is allowed: any host other than ``127.0.0.1``/``localhost`` raises ``ValueError``.
Every run is bounded: by ``duration_s`` and/or ``total`` requests, and always by
``max_duration_s`` plus ``request_timeout_s``, after which whatever is still in flight is
cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import queue
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Latencies",
    "LoadReport",
    "ProtocolError",
    "ResponseHead",
    "build_get",
    "build_post",
    "build_request",
    "check_loopback",
    "merge_reports",
    "parse_head",
    "read_response",
    "run_load",
    "run_load_processes",
    "run_load_sync",
]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})
_CONNECT_ADDRESS = "127.0.0.1"
_HEAD_END = b"\r\n\r\n"
_STREAM_LIMIT = 1 << 20  # longest response head accepted, in bytes
_MAX_CONSECUTIVE_FAILURES = 50


class ProtocolError(Exception):
    """The server sent something that is not a well-formed HTTP/1.x response."""


# What a worker survives by counting an error and reconnecting (TimeoutError is an OSError,
# asyncio.IncompleteReadError an EOFError).
_CONNECTION_TROUBLE = (OSError, EOFError, asyncio.LimitOverrunError, ProtocolError)


def check_loopback(host: str) -> str:
    """Return the address to connect to for ``host``; ``ValueError`` unless it is loopback."""
    if host not in LOOPBACK_HOSTS:
        raise ValueError(
            "loadgen only connects to the loopback interface (127.0.0.1 or localhost), "
            f"not {host!r}"
        )
    return _CONNECT_ADDRESS


# ---------------------------------------------------------------------------------------------
# Requests


def build_request(
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
) -> bytes:
    """A complete raw HTTP/1.1 keep-alive request (``Host`` and ``Content-Length`` added)."""
    if not path.startswith("/") or any(c in path for c in " \r\n"):
        raise ValueError(f"bad request path {path!r}")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    given = {name.lower() for name in (headers or {})}
    for name, value in (headers or {}).items():
        if any(c in name or c in value for c in "\r\n"):
            raise ValueError(f"bad header {name!r}")
        lines.append(f"{name}: {value}")
    if body is not None and "content-length" not in given:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


def build_get(path: str, headers: Mapping[str, str] | None = None) -> bytes:
    """A raw keep-alive ``GET`` request."""
    return build_request("GET", path, None, headers)


def build_post(path: str, body: bytes, headers: Mapping[str, str] | None = None) -> bytes:
    """A raw keep-alive ``POST`` request carrying ``body`` (set ``Content-Type`` in headers)."""
    return build_request("POST", path, body, headers)


# ---------------------------------------------------------------------------------------------
# Responses


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """What the load generator needs from a response head."""

    status: int
    content_length: int | None
    chunked: bool
    keep_alive: bool


def _header_value(head: bytes, lowered: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (given as ``b"\\r\\nname:"`` in lower case), or None."""
    start = lowered.find(name)
    if start < 0:
        return None
    start += len(name)
    return head[start : head.index(b"\r\n", start)].strip()


def parse_head(head: bytes) -> ResponseHead:
    """Parse a response head: status line and headers, ending with the blank line."""
    if not head.startswith(b"HTTP/1.") or len(head) < 12 or head[12:13] not in (b" ", b"\r"):
        raise ProtocolError(f"not an HTTP/1.x status line: {head[:40]!r}")
    try:
        status = int(head[9:12])
    except ValueError:
        raise ProtocolError(f"bad status code: {head[:40]!r}") from None
    lowered = head.lower()
    content_length: int | None = None
    raw_length = _header_value(head, lowered, b"\r\ncontent-length:")
    if raw_length is not None:
        try:
            content_length = int(raw_length)
        except ValueError:
            raise ProtocolError(f"bad Content-Length: {raw_length!r}") from None
        if content_length < 0:
            raise ProtocolError(f"bad Content-Length: {raw_length!r}")
    encoding = _header_value(head, lowered, b"\r\ntransfer-encoding:")
    chunked = encoding is not None and b"chunked" in encoding.lower()
    connection = _header_value(head, lowered, b"\r\nconnection:")
    if head[5:8] == b"1.0":
        keep_alive = connection is not None and b"keep-alive" in connection.lower()
    else:
        keep_alive = connection is None or b"close" not in connection.lower()
    return ResponseHead(status, content_length, chunked, keep_alive)


async def _read_chunked(reader: asyncio.StreamReader) -> int:
    """Consume a chunked body and its trailers; return the number of bytes read."""
    received = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        received += len(line)
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line: {line[:40]!r}") from None
        if size == 0:
            break
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
        received += size + 2
    while True:  # trailers, up to the blank line
        line = await reader.readuntil(b"\r\n")
        received += len(line)
        if line == b"\r\n":
            return received


async def read_response(
    reader: asyncio.StreamReader, *, is_head: bool = False
) -> tuple[int, bool, int]:
    """Read one whole response; return ``(status, connection reusable, bytes read)``.

    Interim 1xx responses are skipped. A response delimited by EOF makes the connection
    unusable afterwards.
    """
    received = 0
    while True:
        head = await reader.readuntil(_HEAD_END)
        received += len(head)
        parsed = parse_head(head)
        if not 100 <= parsed.status < 200 or parsed.status == 101:
            break
    status = parsed.status
    if is_head or status in (204, 304) or 100 <= status < 200:
        return status, parsed.keep_alive, received
    if parsed.chunked:
        received += await _read_chunked(reader)
        return status, parsed.keep_alive, received
    if parsed.content_length is not None:
        if parsed.content_length:
            await reader.readexactly(parsed.content_length)
            received += parsed.content_length
        return status, parsed.keep_alive, received
    received += len(await reader.read())  # body delimited by the end of the connection
    return status, False, received


# ---------------------------------------------------------------------------------------------
# Reports


@dataclass(frozen=True, slots=True)
class Latencies:
    """Latency percentiles in milliseconds (nearest-rank), plus mean and max."""

    p50: float
    p90: float
    p99: float
    mean: float
    max: float

    @classmethod
    def from_ns(cls, samples: Iterable[int]) -> Latencies:
        ordered = sorted(samples)
        if not ordered:
            nan = math.nan
            return cls(nan, nan, nan, nan, nan)

        def rank(p: float) -> float:
            index = max(0, math.ceil(p / 100 * len(ordered)) - 1)
            return ordered[index] / 1e6

        mean = sum(ordered) / len(ordered) / 1e6
        return cls(rank(50), rank(90), rank(99), mean, ordered[-1] / 1e6)


@dataclass(slots=True)
class LoadReport:
    """The outcome of a load run. ``requests_done`` counts complete responses of any status."""

    requests_done: int
    seconds: float
    latencies_ms: Latencies
    status_counts: dict[int, int]
    errors: int = 0
    connections: int = 0
    connects: int = 0
    bytes_received: int = 0
    latency_samples_ns: array[int] = field(default_factory=lambda: array("q"), repr=False)

    @property
    def rps(self) -> float:
        """Complete responses per second."""
        return self.requests_done / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lat = self.latencies_ms
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.status_counts.items()))
        return (
            f"{self.requests_done} requests in {self.seconds:.2f} s = {self.rps:,.0f} req/s over "
            f"{self.connections} connections; latency ms p50 {lat.p50:.3f} p90 {lat.p90:.3f} "
            f"p99 {lat.p99:.3f} max {lat.max:.3f}; statuses {{{statuses}}}; errors {self.errors}"
        )


def merge_reports(reports: Sequence[LoadReport]) -> LoadReport:
    """Aggregate reports of runs that went on at the same time (e.g. one per process)."""
    samples: array[int] = array("q")
    statuses: dict[int, int] = {}
    for report in reports:
        samples.extend(report.latency_samples_ns)
        for code, count in report.status_counts.items():
            statuses[code] = statuses.get(code, 0) + count
    return LoadReport(
        requests_done=sum(r.requests_done for r in reports),
        seconds=max((r.seconds for r in reports), default=0.0),
        latencies_ms=Latencies.from_ns(samples),
        status_counts=statuses,
        errors=sum(r.errors for r in reports),
        connections=sum(r.connections for r in reports),
        connects=sum(r.connects for r in reports),
        bytes_received=sum(r.bytes_received for r in reports),
        latency_samples_ns=samples,
    )


# ---------------------------------------------------------------------------------------------
# The load run


class _Run:
    """State shared by the connection workers of one run (all in one event loop)."""

    def __init__(
        self,
        address: str,
        port: int,
        requests: Sequence[bytes],
        total: int | None,
        connect_timeout_s: float,
    ) -> None:
        self.address = address
        self.port = port
        self.requests = list(requests)
        self.is_head = [r[:5] == b"HEAD " for r in self.requests]
        self.total = total
        self.connect_timeout_s = connect_timeout_s
        self.issued = 0
        self.dealt = 0
        self.done = 0
        self.errors = 0
        self.connects = 0
        self.bytes_received = 0
        self.deadline = math.inf
        self.samples: array[int] = array("q")
        self.status_counts: dict[int, int] = {}

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        opened = asyncio.open_connection(self.address, self.port, limit=_STREAM_LIMIT)
        reader, writer = await asyncio.wait_for(opened, self.connect_timeout_s)
        self.connects += 1
        return reader, writer

    async def worker(
        self,
        index: int,
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
        writers: set[asyncio.StreamWriter],
    ) -> None:
        requests = self.requests
        is_head = self.is_head
        count = len(requests)
        samples = self.samples
        statuses = self.status_counts
        total = self.total
        clock = time.perf_counter
        clock_ns = time.perf_counter_ns
        failures = 0
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        if stream is not None:
            reader, writer = stream
            writers.add(writer)
        while clock() < self.deadline:
            if total is not None:
                if self.issued >= total:
                    break
                self.issued += 1
            # requests are dealt out in turn across connections: each is sent once per pass
            position = self.dealt % count
            self.dealt += 1
            try:
                if writer is None or reader is None:
                    reader, writer = await self.connect()
                    writers.add(writer)
                started = clock_ns()
                writer.write(requests[position])
                status, reusable, size = await read_response(reader, is_head=is_head[position])
                samples.append(clock_ns() - started)
            except _CONNECTION_TROUBLE:
                self.errors += 1
                failures += 1
                if writer is not None:
                    writers.discard(writer)
                    writer.close()
                reader = writer = None
                if failures >= _MAX_CONSECUTIVE_FAILURES:
                    break
                await asyncio.sleep(min(0.001 * failures, 0.05))
                continue
            failures = 0
            self.done += 1
            self.bytes_received += size
            statuses[status] = statuses.get(status, 0) + 1
            if not reusable:
                writers.discard(writer)
                writer.close()
                reader = writer = None
        if writer is not None:
            writers.discard(writer)
            writer.close()


async def run_load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    connections: int,
    duration_s: float | None = None,
    total: int | None = None,
    *,
    max_duration_s: float = 300.0,
    request_timeout_s: float = 10.0,
    connect_timeout_s: float = 5.0,
    on_connected: Callable[[], None] | None = None,
) -> LoadReport:
    """Drive the HTTP/1.1 server at ``host:port`` (loopback only) and measure it.

    ``requests`` are complete raw requests (see :func:`build_get`, :func:`build_post`), sent in
    turn on ``connections`` keep-alive connections, one request in flight per connection. The
    run stops after ``duration_s`` seconds (requests in flight are completed) or once ``total``
    requests were issued, whichever comes first; at least one of them is required. In any case
    it stops after ``max_duration_s``, and anything still pending ``request_timeout_s`` later
    is cancelled. Connections are opened before the clock starts; ``on_connected`` is then
    called (e.g. to synchronise several client processes).
    """
    address = check_loopback(host)
    if not requests:
        raise ValueError("no requests to send")
    if connections < 1:
        raise ValueError("connections must be at least 1")
    if duration_s is None and total is None:
        raise ValueError("give duration_s or total (or both)")
    if duration_s is not None and duration_s <= 0:
        raise ValueError("duration_s must be positive")
    if total is not None and total < 0:
        raise ValueError("total must not be negative")
    if not 0 < port < 65536:
        raise ValueError(f"bad port {port}")
    run = _Run(address, port, requests, total, connect_timeout_s)
    writers: set[asyncio.StreamWriter] = set()
    opened = await asyncio.gather(
        *(run.connect() for _ in range(connections)), return_exceptions=True
    )
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = []
    for outcome in opened:
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, OSError):
                raise outcome
            run.errors += 1
            streams.append(None)
        else:
            streams.append(outcome)
    if on_connected is not None:
        on_connected()
    limit = max_duration_s if duration_s is None else min(duration_s, max_duration_s)
    started = time.perf_counter()
    run.deadline = started + limit
    tasks = [
        asyncio.ensure_future(run.worker(i, stream, writers)) for i, stream in enumerate(streams)
    ]
    try:
        _, pending = await asyncio.wait(tasks, timeout=limit + request_timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            run.errors += len(pending)
    finally:
        elapsed = time.perf_counter() - started
        for task in tasks:
            task.cancel()
        for writer in writers:
            writer.close()
    for task in tasks:
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            raise failure  # a bug in the worker rather than trouble with the server
    return LoadReport(
        requests_done=run.done,
        seconds=elapsed,
        latencies_ms=Latencies.from_ns(run.samples),
        status_counts=dict(run.status_counts),
        errors=run.errors,
        connections=connections,
        connects=run.connects,
        bytes_received=run.bytes_received,
        latency_samples_ns=run.samples,
    )


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_load_sync(
    host: str,
    port: int,
    requests: Sequence[bytes],
    connections: int,
    duration_s: float | None = None,
    total: int | None = None,
    **options: Any,
) -> LoadReport:
    """:func:`run_load` in a fresh event loop (uvloop when installed), for synchronous code."""
    check_loopback(host)
    with asyncio.Runner(loop_factory=_new_event_loop) as runner:
        return runner.run(run_load(host, port, requests, connections, duration_s, total, **options))


def _split(amount: int, parts: int) -> list[int]:
    return [amount // parts + (1 if i < amount % parts else 0) for i in range(parts)]


def _child(
    index: int,
    results: Any,
    barrier: Any,
    args: tuple[str, int, list[bytes], int, float | None, int | None],
    options: dict[str, Any],
) -> None:
    """Entry point of one client process of :func:`run_load_processes`."""

    def synchronise() -> None:
        with contextlib.suppress(Exception):  # a broken barrier only loses the alignment
            barrier.wait(timeout=60)

    try:
        report = run_load_sync(*args, on_connected=synchronise, **options)
    except BaseException as exc:  # reported to the parent, which raises
        results.put((index, None, f"{type(exc).__name__}: {exc}"))
        raise
    results.put((index, report, None))


def run_load_processes(
    host: str,
    port: int,
    requests: Sequence[bytes],
    connections: int,
    duration_s: float | None = None,
    total: int | None = None,
    *,
    processes: int = 2,
    **options: Any,
) -> LoadReport:
    """:func:`run_load` spread over ``processes`` client processes, figures aggregated.

    Connections (and ``total``) are shared out among the processes, which start their clocks
    together once all their connections are open. With ``processes=1`` this is
    :func:`run_load_sync` in the calling process.
    """
    check_loopback(host)
    if processes < 1:
        raise ValueError("processes must be at least 1")
    if processes == 1:
        return run_load_sync(host, port, requests, connections, duration_s, total, **options)
    if connections < processes:
        raise ValueError("need at least one connection per process")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    barrier = context.Barrier(processes)
    totals: list[int | None] = (
        [None] * processes if total is None else list(_split(total, processes))
    )
    children = [
        context.Process(
            target=_child,
            args=(
                i,
                results,
                barrier,
                (host, port, list(requests), share, duration_s, totals[i]),
                options,
            ),
            daemon=True,
        )
        for i, share in enumerate(_split(connections, processes))
    ]
    limit = options.get("max_duration_s", 300.0)
    if duration_s is not None:
        limit = min(limit, duration_s)
    wait_s = 60 + limit + options.get("request_timeout_s", 10.0) + 30  # spawn, run, grace
    reports: list[LoadReport] = []
    failures: list[str] = []
    try:
        for child in children:
            child.start()
        give_up = time.monotonic() + wait_s
        while len(reports) + len(failures) < processes:
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                failures.append("client processes did not finish in time")
                break
            try:
                _, report, failure = results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if not any(child.is_alive() for child in children) and results.empty():
                    failures.append("a client process died without a report")
                    break
                continue
            if failure is not None:
                failures.append(failure)
            else:
                reports.append(report)
    finally:
        for child in children:
            if child.pid is None:  # never started
                continue
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join(timeout=5)
        results.close()
    if failures:
        raise RuntimeError("load generation failed: " + "; ".join(failures))
    return merge_reports(reports)
