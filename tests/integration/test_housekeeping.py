"""Housekeeping jobs: content past its valid-until shows as expired without anyone asking."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from tests.conftest import NOW
from tests.content_rows import add_items, content_row

from counterpoint.container import Container
from counterpoint.kit.clock import FixedClock
from counterpoint.kit.periodic import Periodic


def test_the_expiry_job_expires_approved_content_past_its_valid_until(
    container: Container, clock: FixedClock
) -> None:
    [soon] = add_items(
        container, content_row("ZEN-DE-EM-EXP", valid_until=NOW + dt.timedelta(hours=1))
    )
    [job] = [j for j in container.housekeeping if j.name == "content-expiry"]
    job.run_once()
    assert container.content.get(soon)["state"] == "approved"  # not yet
    clock.advance(dt.timedelta(hours=2))
    job.run_once()
    assert container.content.get(soon)["state"] == "expired"
    assert (job.runs, job.failures) == (2, 0)


def test_a_failing_job_is_logged_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    ran_twice = threading.Event()

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the database was busy")
        ran_twice.set()

    job = Periodic("flaky", 0.01, flaky)
    job.start()
    try:
        assert ran_twice.wait(5)
    finally:
        job.stop()
    assert job.failures == 1
    assert job.runs >= 1
    assert "flaky failed" in caplog.text
    with pytest.raises(ValueError, match="positive"):
        Periodic("never", 0, flaky)
