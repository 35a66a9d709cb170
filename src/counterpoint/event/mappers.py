"""Mapping processes: the Segment requests' decoding and mapping, off the API process's lock.

One API process serves HTTP, appends to the log (the embedded log's file admits one writing
process) and runs the consumers. Decoding a request's events, mapping them to canonical
events and building the log's Arrow table is pure work of about 10 µs per event, all of it
under the interpreter lock that the event loop and the group committer share. A pool of
mapping processes takes that work: the API process sends a request's body and receives the
Arrow table, the quarantine entries and the response's errors.

Each process is ``python -m counterpoint.event.mappers FD``, connected to the API process by
a socket pair. Frames are a 4-byte length and a pickle. The event loop writes and reads them
itself (an ``asyncio.Protocol``): no helper threads in the API process, which would compete
for its lock. A process answers its requests in order, one at a time; the pool sends each
request to the process with the fewest in flight. When a process dies, its requests in flight
fail with a 503 (never acknowledged, so a client's retry loses nothing), the pool starts a
replacement in the background, and the API process maps in-process while none is running.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa

from counterpoint.errors import CounterpointError
from counterpoint.event.requests import ArrowRequest, RequestToMap, map_request_arrow

__all__ = ["MappingPool", "MappingUnavailableError"]

_log = logging.getLogger(__name__)
_HEADER = struct.Struct("!I")
_READY = b"ready"


class MappingUnavailableError(CounterpointError):
    status = 503
    code = "mapping_unavailable"


# --- the mapping process ---------------------------------------------------------------------


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return bytes(buffer)


def _send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _answer(request: RequestToMap) -> tuple[Any, ...]:
    try:
        mapped = map_request_arrow(request)
    except Exception as exc:  # raised again in the API process: a 4xx, or a bug's 500
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        return ("error", exc)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, mapped.events.schema) as writer:
        writer.write_table(mapped.events)
    return ("ok", sink.getvalue().to_pybytes(), mapped.quarantine, mapped.errors)


def serve(fd: int) -> None:
    """A mapping process's life: answer framed requests on ``fd`` until the other end closes."""
    from counterpoint.kit.heap import settle_after_start_up

    # Ctrl+C in a terminal reaches the whole process group: the API process then stops its
    # pool in order (the end of this socket's input), rather than see its processes vanish
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settle_after_start_up()
    sock = socket.socket(fileno=fd)
    _send_frame(sock, _READY)
    while True:
        header = _read_exactly(sock, _HEADER.size)
        if header is None:
            return
        frame = _read_exactly(sock, _HEADER.unpack(header)[0])
        if frame is None:
            return
        _send_frame(sock, pickle.dumps(_answer(pickle.loads(frame)), protocol=5))  # noqa: S301 - the API process, over a private socket pair


# --- the API process's side ------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """The event loop's end of one process's socket: frames out, answers back in order."""

    def __init__(self, on_lost: Callable[[_Connection], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[asyncio.Future[tuple[Any, ...]]] = collections.deque()
        self._buffer = bytearray()
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            end = _HEADER.size + size
            if len(buffer) < end:
                return
            answer = pickle.loads(memoryview(buffer)[_HEADER.size : end])  # noqa: S301 - our own child
            del buffer[:end]
            future = self.waiting.popleft()
            if not future.done():
                future.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(
                    MappingUnavailableError(
                        "the process mapping this request stopped",
                        field=None,
                        fix="send the request again",
                    )
                )
        self._on_lost(self)

    def send(self, payload: bytes) -> asyncio.Future[tuple[Any, ...]]:
        assert self.transport is not None  # checked by the caller, in the same loop step
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        self.transport.write(_HEADER.pack(len(payload)) + payload)
        return future


@dataclass
class _Process:
    popen: subprocess.Popen[bytes]
    sock: socket.socket
    """The API process's end of the socket pair; event loops get duplicates of it."""
    loop: asyncio.AbstractEventLoop | None = None
    """The event loop this process's requests come from (the first that mapped)."""
    connecting: asyncio.Future[_Connection] | None = None
    handed: socket.socket | None = None
    """The duplicate of ``sock`` that ``loop``'s transport reads and writes."""
    alive: bool = True

    def in_flight(self) -> int:
        made = self.connecting
        if made is None or not made.done() or made.cancelled() or made.exception():
            return 0
        return len(made.result().waiting)

    def release(self) -> None:
        """Close this process's sockets on the API side; the process then sees the end of
        its input and exits."""
        made = self.connecting
        loop = self.loop
        if made is not None and made.done() and not made.cancelled() and not made.exception():
            transport = made.result().transport
            if transport is not None and loop is not None and not loop.is_closed():
                if _running_loop() is loop:
                    transport.abort()
                else:
                    loop.call_soon_threadsafe(transport.abort)
        for sock in (self.handed, self.sock):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class MappingPool:
    """``processes`` mapping processes behind ``map`` (awaitable from one event loop at a
    time: the API process's)."""

    def __init__(self, processes: int, *, start_timeout_s: float = 60.0) -> None:
        if processes < 1:
            raise ValueError("a mapping pool needs at least one process")
        self.processes = processes
        self._timeout = start_timeout_s
        self._running: list[_Process] = []
        self._lock = threading.Lock()
        self._stopping = False
        self.mapped = 0
        """Requests mapped in the processes so far."""

    @property
    def running(self) -> bool:
        return any(p.alive for p in self._running)

    def pids(self) -> list[int]:
        """The running mapping processes' ids."""
        with self._lock:
            return [p.popen.pid for p in self._running if p.alive]

    def start(self) -> None:
        """Start every process and wait until each has loaded the mapping code (they load
        side by side)."""
        with self._lock:
            self._stopping = False
            missing = self.processes - len(self._running)
        launched: list[_Process] = []
        try:
            for _ in range(missing):
                launched.append(self._launch())
            for process in launched:
                self._handshake(process)
        except BaseException:
            for process in launched:
                process.release()
                if process.popen.poll() is None:
                    process.popen.kill()
                process.popen.wait()
            raise
        with self._lock:
            self._running.extend(launched)

    def _launch(self) -> _Process:
        ours, theirs = socket.socketpair()
        try:
            popen = subprocess.Popen(  # noqa: S603 - this interpreter, this module
                [sys.executable, "-m", "counterpoint.event.mappers", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return _Process(popen, ours)

    def _handshake(self, process: _Process) -> None:
        """Wait for the process's ready frame."""
        ours = process.sock
        ours.settimeout(self._timeout)
        try:
            ready = _read_exactly(ours, _HEADER.size)
            frame = None if ready is None else _read_exactly(ours, _HEADER.unpack(ready)[0])
        except OSError:
            frame = None
        if frame != _READY:
            process.release()
            if process.popen.poll() is None:
                process.popen.kill()
            process.popen.wait()
            raise RuntimeError(
                f"a mapping process did not start (exit status {process.popen.returncode}); "
                "run `python -m counterpoint.event.mappers` to see why"
            )
        ours.setblocking(False)

    def _spawn(self) -> _Process:
        process = self._launch()
        self._handshake(process)
        return process

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            running, self._running = self._running, []
        for process in running:
            process.alive = False
            process.release()
            # A process holds nothing to save. Under uvloop the transport's own copy of the
            # socket closes only when the event loop runs again, which this call blocks, so
            # the end of input might not reach the process: terminate it.
            if process.popen.poll() is None:
                process.popen.terminate()
        for process in running:
            try:
                process.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()

    def _retire(self, process: _Process, why: str) -> None:
        """Take a process out of service (killing it if it still runs), and start a
        replacement in the background."""
        with self._lock:
            if self._stopping or not process.alive:
                return
            process.alive = False
            self._running = [p for p in self._running if p is not process]
        process.release()
        if process.popen.poll() is None:
            process.popen.kill()
        _log.warning("mapping process %d %s; starting a replacement", process.popen.pid, why)
        threading.Thread(target=self._replace, args=(process,), daemon=True).start()

    def _replace(self, retired: _Process) -> None:
        retired.popen.wait()
        try:
            process = self._spawn()
        except Exception:
            _log.exception("a replacement mapping process did not start")
            return
        with self._lock:
            if not self._stopping:
                self._running.append(process)
                return
        process.release()
        process.popen.wait()

    async def _connect(self, process: _Process, handed: socket.socket) -> _Connection:
        made = _Connection(lambda _c: self._retire(process, "stopped"))
        await asyncio.get_running_loop().create_connection(lambda: made, sock=handed)
        return made

    async def _connection(self, process: _Process) -> _Connection:
        loop = asyncio.get_running_loop()
        if process.loop is not loop:
            if process.loop is not None:
                if not process.loop.is_closed():
                    raise RuntimeError("a mapping pool serves one event loop at a time")
                if process.in_flight():
                    # answers to the closed loop's requests would reach the new connection
                    self._retire(process, "had requests of a closed event loop in flight")
                    raise MappingUnavailableError(
                        "the mapping process was replaced", fix="send the request again"
                    )
                if process.handed is not None:
                    with contextlib.suppress(OSError):
                        process.handed.close()
            process.loop = loop
            process.handed = process.sock.dup()
            process.connecting = loop.create_task(self._connect(process, process.handed))
        assert process.connecting is not None
        return await asyncio.shield(process.connecting)

    async def map(self, request: RequestToMap) -> ArrowRequest:
        """``requests.map_request_arrow`` in a mapping process; its errors are raised here."""
        candidates = [p for p in self._running if p.alive]
        if not candidates:
            raise MappingUnavailableError(
                "no mapping process is running", fix="send the request again"
            )
        process = min(candidates, key=_Process.in_flight)
        connection = await self._connection(process)
        if connection.transport is None:
            raise MappingUnavailableError(
                "the process mapping this request stopped", fix="send the request again"
            )
        answer = await connection.send(pickle.dumps(request, protocol=5))
        if answer[0] == "error":
            raise answer[1]
        _, ipc, quarantine, errors = answer
        self.mapped += 1
        return ArrowRequest(pa.ipc.open_stream(ipc).read_all(), quarantine, errors)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: python -m counterpoint.event.mappers FD (started by the API process)")
    serve(int(sys.argv[1]))
    os._exit(0)  # nothing left to flush: skip the interpreter's teardown
