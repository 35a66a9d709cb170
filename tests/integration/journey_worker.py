"""A worker process for the kill -9 tests of the journey runtime (``test_journey_crash``).

Runs what ``counterpoint worker`` runs (log consumers, the delivery worker, the journey
runtime) on the deployment the ``COUNTERPOINT_*`` environment names, with a clock that
moves ``CRASH_SPEED`` times faster than the wall clock from ``CRASH_SIM_EPOCH`` (simulated)
at ``CRASH_REAL_EPOCH`` (wall clock, seconds). The test process fixes both epochs once, so
every restarted worker continues the same simulated timeline: a kill -9 and a restart lose
no simulated time and repeat none. (A ``FixedClock`` cannot be shared between processes;
short real waits would make the journey itself unrealistic.)

``CRASH_UNSAFE=1`` is the negative control: a runtime that commits the outbox entries of a
batch in a transaction of their own, before the enrollments' new state, with keys made
random per attempt, i.e. without the runtime's two guarantees (state and sends in one
transaction, keys stable across attempts). A kill between the two commits then repeats a
step whose sends are already stored: duplicates.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
import uuid
from dataclasses import replace

from sqlalchemy.orm import Session

from counterpoint.container import open_container
from counterpoint.delivery.outbox import enqueue
from counterpoint.journey.engine import RepTask, Send
from counterpoint.journey.runtime import JourneyRuntime, _Batch
from counterpoint.settings import Settings


class SpeedClock:
    """Simulated time: ``sim_epoch + (wall - real_epoch) * speed``."""

    def __init__(self, sim_epoch: dt.datetime, real_epoch: float, speed: float) -> None:
        self._sim = sim_epoch
        self._real = real_epoch
        self._speed = speed

    def now(self) -> dt.datetime:
        return self._sim + dt.timedelta(seconds=(time.time() - self._real) * self._speed)


class UnsafeRuntime(JourneyRuntime):
    """The negative control (see the module doc). Not a way to run journeys."""

    def _write(self, session: Session, batch: _Batch, now: dt.datetime) -> int:
        with self._sessions.begin() as own:  # the sends first, committed on their own …
            for outcome in batch.outcomes:
                for effect in outcome.step.effects:
                    if outcome.document is None or not isinstance(effect, Send | RepTask):
                        continue
                    contact = batch.answers.contacts[effect.key]
                    action = self.outbound(
                        outcome.before, outcome.document, effect, contact, batch.answers
                    )
                    random_key = f"{action.idempotency_key}:{uuid.uuid4().hex[:8]}"
                    enqueue(own, replace(action, idempotency_key=random_key), now)
        time.sleep(0.02)  # … then, a moment later, the state (a kill in between repeats)
        return super()._write(session, batch, now)

    def _enqueue(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        return None  # done above


def main() -> None:
    sim_epoch = dt.datetime.fromisoformat(os.environ["CRASH_SIM_EPOCH"])
    clock = SpeedClock(
        sim_epoch, float(os.environ["CRASH_REAL_EPOCH"]), float(os.environ["CRASH_SPEED"])
    )
    built = open_container(Settings(), clock=clock)
    if os.environ.get("CRASH_UNSAFE") == "1":
        built.journey_runtime.__class__ = UnsafeRuntime
    built.journey_runtime.poll_s = 0.05
    built.delivery_worker.poll_s = 0.1
    built.delivery_worker.start()
    built.journey_runtime.start()
    print("ready", flush=True)
    try:
        while True:
            if not built.catch_up():
                time.sleep(0.05)
    except KeyboardInterrupt:  # pragma: no cover - the tests kill it
        built.close()
        sys.exit(0)


if __name__ == "__main__":
    main()
