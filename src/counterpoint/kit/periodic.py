"""A job run every few seconds on a background thread (housekeeping: content expiry, …).

Failures are logged and the job runs again at its next tick; ``stop`` ends the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Periodic"]

_log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, every_s: float, job: Callable[[], object]) -> None:
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        self.name = name
        self.every_s = every_s
        self._job = job
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.failures = 0

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def run_once(self) -> None:
        try:
            self._job()
            self.runs += 1
        except Exception:  # logged; tried again at the next tick
            self.failures += 1
            _log.exception("%s failed; will run again in %.0f s", self.name, self.every_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.every_s)
