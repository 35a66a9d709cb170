"""Helpers shared by every benchmark script in ``bench/``.

Conventions every benchmark follows:

* a module-level ``TINY_SUPPORTED = True`` when the script accepts ``--tiny`` (a run of a few
  seconds that CI uses to keep the script working; ``bench/run_all.py`` discovers it);
* ``--json PATH`` writes the figures with :func:`write_json` next to the printed lines;
* each figure is a median of repeated measurements (:func:`median_of`), printed with
  :meth:`Result.print` as a human line plus a markdown table row to paste into RESULTS.md.

Scripts are run as files (``.venv/bin/python bench/calibrate.py``), so they put the repository
root on ``sys.path`` before importing ``bench.*``; see :func:`repo_root`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Result",
    "add_common_args",
    "command_line",
    "format_figure",
    "free_port",
    "machine_info",
    "median_of",
    "median_time",
    "repo_root",
    "stop_process",
    "uvicorn_server",
    "wait_until_serving",
    "write_json",
]


def repo_root() -> Path:
    """The repository root (the parent of ``bench/``)."""
    return Path(__file__).resolve().parent.parent


def median_of(fn: Callable[[], float], repeats: int) -> float:
    """Call ``fn`` ``repeats`` times and return the median of the figures it returns.

    ``fn`` performs one complete measurement and returns its figure (a rate, a duration...).
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    return statistics.median(fn() for _ in range(repeats))


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall-clock duration, in seconds, of ``repeats`` calls of ``fn``."""

    def once() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return median_of(once, repeats)


def format_figure(value: float | None) -> str:
    """A figure with about four significant digits and thousands separators."""
    if value is None:
        return "–"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 10:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:#.3g}"


@dataclass
class Result:
    """One benchmark figure, optionally compared with a baseline figure.

    ``ratio`` is ``figure / baseline_figure`` (computed when left ``None`` and a baseline is
    given); whether higher is better depends on the unit, so say it in ``extra`` or the name.
    """

    name: str
    figure: float
    unit: str
    baseline_name: str | None = None
    baseline_figure: float | None = None
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline_figure:
            self.ratio = self.figure / self.baseline_figure

    def human_line(self) -> str:
        line = f"{self.name}: {format_figure(self.figure)} {self.unit}"
        if self.baseline_name is not None:
            line += (
                f" (baseline {self.baseline_name}: {format_figure(self.baseline_figure)}"
                f" {self.unit}, ratio {format_figure(self.ratio)}x)"
            )
        if self.extra:
            details = ", ".join(
                f"{key}={_format_extra(value)}" for key, value in self.extra.items()
            )
            line += f" [{details}]"
        return line

    @staticmethod
    def markdown_header() -> str:
        return (
            "| Figure | Value | Unit | Baseline | Baseline value | Ratio |\n"
            "|---|---:|---|---|---:|---:|"
        )

    def markdown_row(self) -> str:
        ratio = "–" if self.ratio is None else f"{format_figure(self.ratio)}x"
        cells = [
            self.name,
            format_figure(self.figure),
            self.unit,
            self.baseline_name or "–",
            format_figure(self.baseline_figure),
            ratio,
        ]
        return "| " + " | ".join(cells) + " |"

    def print(self) -> None:
        """Print the human line, then the markdown table row."""
        print(self.human_line())
        print(self.markdown_row(), flush=True)


def _format_extra(value: object) -> str:
    if isinstance(value, float):
        return format_figure(value)
    return str(value)


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"model name", "Model", "cpu model", "Hardware"} and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            return int(parts[1]) * 1024  # the kernel reports kB
    return None


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _cpu_pressure() -> float | None:
    """Share of the last minute (%) some runnable task waited for a CPU (Linux PSI)."""
    try:
        first = Path("/proc/pressure/cpu").read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError):
        return None
    for item in first.split():
        key, _, value = item.partition("=")
        if key == "avg60":
            return float(value)
    return None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; all cores where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, Python, OS, UTC date/time and how busy the machine is.

    ``load_average_1min`` and ``cpu_pressure_avg60`` (Linux PSI: % of the last minute some task
    waited for a CPU) tell whether other work competed with the benchmark.
    """
    memory = _memory_bytes()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gib": None if memory is None else round(memory / 2**30, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_average_1min": _load_average(),
        "cpu_pressure_avg60": _cpu_pressure(),
    }


def write_json(
    path: str | Path, results: Sequence[Result], *, extra: dict[str, Any] | None = None
) -> None:
    """Write ``{"machine": ..., "results": [...], **extra}`` as indented JSON to ``path``."""
    document: dict[str, Any] = {
        "machine": machine_info(),
        "results": [asdict(result) for result in results],
    }
    if extra:
        document.update(extra)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``--tiny`` and ``--json PATH`` options every benchmark accepts."""
    parser.add_argument(
        "--tiny", action="store_true", help="a few seconds in all, to check the script runs (CI)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    return parser


def command_line() -> str:
    """The command that started this process, with the interpreter relative to the cwd."""
    interpreter = Path(sys.executable)
    with contextlib.suppress(ValueError):
        interpreter = interpreter.relative_to(Path.cwd())
    return shlex.join([str(interpreter), *sys.argv])


# ---------------------------------------------------------------------------------------------
# Servers under test (loopback only)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int, request: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(request)
            return conn.recv(16).startswith((b"HTTP/1.1 2", b"HTTP/1.0 2"))
    except OSError:
        return False


def wait_until_serving(
    port: int, path: str, server: subprocess.Popen[bytes], timeout_s: float = 30.0
) -> None:
    """Poll ``GET path`` on 127.0.0.1 until it answers 2xx; raise if ``server`` exits first."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    deadline = time.monotonic() + timeout_s
    while not _answers(port, request):
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer GET {path} within {timeout_s:.0f} s")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """Terminate ``process`` (a child we started), killing it if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace_s)


@contextlib.contextmanager
def uvicorn_server(
    app: str,
    *,
    app_dir: Path | None = None,
    probe_path: str = "/",
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout_s: float = 30.0,
    attempts: int = 3,
) -> Iterator[int]:
    """Serve the ASGI ``app`` ("module:attribute") with uvicorn in a subprocess; yield its port.

    One worker on a free 127.0.0.1 port, ``--log-level warning``, no access log (uvloop and
    httptools when installed, uvicorn's defaults). Waits until ``GET probe_path`` answers 2xx,
    retrying on another port if the chosen one was taken meanwhile. The server is stopped when
    the block exits, however it exits. ``env`` is added to this process's environment.
    """
    for attempt in range(1, attempts + 1):
        port = free_port()
        command = [
            sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", *extra_args,
        ]  # fmt: skip
        if app_dir is not None:
            command += ["--app-dir", str(app_dir)]
        environment = {**os.environ, **(env or {})}
        # Same process group as ours: run_all's timeout kills the group, server included.
        server = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=environment)
        try:
            try:
                wait_until_serving(port, probe_path, server, startup_timeout_s)
            except RuntimeError:
                if server.poll() is not None and attempt < attempts:
                    continue  # probably lost the port to someone else; try another
                raise
            yield port
            return
        finally:
            stop_process(server)
    raise AssertionError("unreachable")
