"""Exactly once under kill -9: real worker processes (``journey_worker.py``) run a journey
with sends, a rep task and timers for a few hundred synthetic HCPs, and are killed with
SIGKILL at random moments and restarted, until every HCP is through. Then every HCP reached
its final state, every expected send and task is in the outbox exactly once, and each was
delivered exactly once (the console file, the rep inbox).

Time: the workers share a simulated clock that runs ``SPEED`` times the wall clock from
fixed epochs (see ``journey_worker.SpeedClock``), so a journey of two simulated hours takes
a few wall seconds and a restarted worker continues the same timeline.

The negative control runs the same harness with a runtime that commits sends apart from the
state, with keys random per attempt: the kills must then produce duplicates. On PostgreSQL
two workers run at once (``FOR UPDATE SKIP LOCKED``): no step is taken twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from tests.conftest import NOW, PG_URL, TEST_ACTOR
from tests.integration.test_journey_runtime import add_content, add_hcps, manager

from counterpoint.channel.models import RepInboxItem
from counterpoint.container import open_container
from counterpoint.delivery.models import OutboxEntry
from counterpoint.event.log import TimelineQuery
from counterpoint.journey.models import JourneyEnrollment, JourneyPendingEvent, JourneyTransition
from counterpoint.kit.clock import FixedClock
from counterpoint.kit.db import make_engine
from counterpoint.settings import Settings

pytestmark = pytest.mark.slow

SPEED = 600.0
"""Simulated seconds per wall second (one wall second is ten simulated minutes)."""
HCPS = 240
WORKER = Path(__file__).with_name("journey_worker.py")
ROOT = Path(__file__).parents[2]

CRASH_JOURNEY = """\
journey: zen-crash
title: Zentrova sends and a visit (synthetic crash-test journey)
brand: ZENTROVA
markets: [DE]
map:
  stages: [awareness, consideration]
  touchpoints:
    - id: tp-email
      stage: awareness
      name: Two e-mails
      customer_goal: Learn about Zentrova
      business_reason: Awareness
      owner: {responsible: marketing_ops, accountable: brand_manager}
      channels: [campaign_email]
      content: [ZEN-EM-1, ZEN-EM-2]
    - id: tp-visit
      stage: consideration
      name: A visit
      customer_goal: Ask my questions
      business_reason: Interest
      owner: {responsible: sales_rep, accountable: brand_manager}
      channels: [f2f_call]
flow:
  nodes:
    - id: entry
      type: entry
      touchpoint: tp-email
      trigger: {condition: {attribute: {name: territory, op: eq, value: T1}}}
      next: send-a
    - {id: send-a, type: send, touchpoint: tp-email, channel: campaign_email,
       content: ZEN-EM-1, next: wait-1}
    - {id: wait-1, type: wait, touchpoint: tp-email, duration: {minutes: 30}, next: visit}
    - {id: visit, type: rep_task, touchpoint: tp-visit, channel: f2f_call,
       reason: Follow up the e-mail, due: {days: 3}, next: wait-2}
    - {id: wait-2, type: wait, touchpoint: tp-visit, duration: {minutes: 40}, next: send-b}
    - {id: send-b, type: send, touchpoint: tp-email, channel: campaign_email,
       content: ZEN-EM-2, next: mark}
    - {id: mark, type: update_attribute, touchpoint: tp-visit, attribute: adoption_stage,
       value: aware, next: done}
    - {id: done, type: goal, touchpoint: tp-visit, goal: Informed}
"""
EXPECTED_NODES = ("send-a", "visit", "send-b")


@dataclass
class Harness:
    settings: Settings
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kills: int = 0

    @property
    def engine(self) -> Engine:
        return make_engine(self.settings.resolved_database_url)

    spawned: int = 0

    def output(self, n: int | None = None) -> Path:
        return self.settings.data_dir / f"worker-{self.spawned if n is None else n}.log"

    def spawn(self) -> None:
        """Start a worker and wait until it runs (a kill while it starts tests nothing)."""
        self.spawned += 1
        path = self.output()
        with path.open("ab") as out:  # a file, never a pipe nobody reads
            worker = subprocess.Popen(
                [sys.executable, str(WORKER)],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.workers.append(worker)
        deadline = time.monotonic() + 60
        while b"ready" not in path.read_bytes():
            assert worker.poll() is None, self.tail()
            assert time.monotonic() < deadline, self.tail()
            time.sleep(0.05)

    def kill(self, worker: subprocess.Popen[bytes]) -> None:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        self.workers.remove(worker)
        self.kills += 1

    def done(self, engine: Engine) -> bool:
        """Every enrollment final, nothing left to deliver, no log event pending."""
        with engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(JourneyEnrollment))
            final = conn.scalar(
                select(func.count())
                .select_from(JourneyEnrollment)
                .where(JourneyEnrollment.status.in_(["completed", "exited"]))
            )
            open_entries = conn.scalar(
                select(func.count())
                .select_from(OutboxEntry)
                .where(OutboxEntry.status.in_(["pending", "sending"]))
            )
            pending = conn.scalar(select(func.count()).select_from(JourneyPendingEvent))
        return bool(total == HCPS and final == HCPS and open_entries == 0 and pending == 0)

    def duplicated(self, engine: Engine) -> bool:
        """Whether some send or task is in the outbox twice (what the negative control seeks)."""
        with engine.connect() as conn:
            contexts = conn.scalars(select(OutboxEntry.context)).all()
        return max(Counter((c["enrollment"], c["node"]) for c in contexts).values(), default=0) > 1

    def run(
        self,
        *,
        workers: int,
        kills: int,
        seed: int,
        deadline_s: float = 300.0,
        until: Callable[[Engine], bool] | None = None,
    ) -> None:
        """Kill and restart workers ``kills`` times, then let them run until ``until`` (by
        default: every HCP through, everything delivered)."""
        finished = until or self.done
        rng = random.Random(seed)
        engine = self.engine
        try:
            for _ in range(workers):
                self.spawn()
            started = time.monotonic()
            while self.kills < kills:
                time.sleep(rng.uniform(0.3, 2.5))
                self.kill(rng.choice(self.workers))
                self.spawn()
            while not finished(engine):
                assert time.monotonic() - started < deadline_s, self.tail()
                for w in self.workers:
                    assert w.poll() is None, self.tail()
                time.sleep(0.5)
        finally:
            for w in list(self.workers):
                self.kill(w)
            engine.dispose()

    def tail(self) -> str:
        lines = self.output().read_text(errors="replace").splitlines()
        return (
            "the workers did not finish:\n"
            + "\n".join(line for line in lines[-400:] if not line.startswith("console "))[-3000:]
        )


def _prepare(settings: Settings) -> None:
    """The world, as it is before the workers start (a fixed clock at the simulated epoch)."""
    built = open_container(settings, clock=FixedClock(NOW))
    try:
        built.contact.set_policy("DE", {"caps": []}, TEST_ACTOR, "crash test: no caps")
        add_content(built)
        add_content(built, "ZEN-EM-2")
        built.users.create("rep-t1", "sales_rep", TEST_ACTOR, territories=["T1"])
        add_hcps(built, HCPS)
        built.journeys.publish(CRASH_JOURNEY, manager(built), "tests")
    finally:
        built.close()


def _harness(settings: Settings, **extra: str) -> Harness:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTERPOINT_")}
    env.update(
        {
            "COUNTERPOINT_DATA_DIR": str(settings.data_dir),
            "COUNTERPOINT_ENVIRONMENT": "test",
            "COUNTERPOINT_JOURNEY_BATCH": "20",
            "COUNTERPOINT_JOURNEY_ENTRY_INTERVAL_S": "3600",
            "CRASH_SIM_EPOCH": NOW.isoformat(),
            "CRASH_REAL_EPOCH": repr(time.time()),
            "CRASH_SPEED": repr(SPEED),
            "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT),
            **extra,
        }
    )
    if settings.database_url:
        env["COUNTERPOINT_DATABASE_URL"] = settings.database_url
    return Harness(settings, env)


@dataclass(frozen=True)
class Findings:
    enrollments: Counter[str]
    sends: Counter[tuple[str, str]]
    """(enrollment, node) → outbox entries."""
    delivered: Counter[str]
    """Idempotency key → lines in the console file and rows in the rep inbox."""
    steps: Counter[tuple[str, str]]
    """(enrollment, kind:node) → transitions."""
    updates: int


def _findings(settings: Settings) -> Findings:
    built = open_container(settings, clock=FixedClock(NOW))
    try:
        with built.sessions() as session:
            states = Counter(
                f"{s}:{r}"
                for s, r in session.execute(
                    select(JourneyEnrollment.status, JourneyEnrollment.exit_reason)
                )
            )
            entries = list(session.execute(select(OutboxEntry.context, OutboxEntry.status)))
            inbox = list(session.scalars(select(RepInboxItem.id)))
            steps = Counter(
                (t.enrollment_id, f"{t.kind}:{t.node}")
                for t in session.scalars(select(JourneyTransition))
            )
            hcps = list(session.scalars(select(JourneyEnrollment.hcp_id)))
        sends = Counter((c["enrollment"], c["node"]) for c, _ in entries)
        console = settings.data_dir / "outbox" / "console.jsonl"
        lines = console.read_text().splitlines() if console.exists() else []
        keys = [json.loads(line)["idempotency_key"] for line in lines]
        delivered = Counter(keys) + Counter(inbox)
        updates = 0
        for hcp_id in hcps:
            ref = built.profiles.resolve(hcp_id)
            found = built.log.timeline(TimelineQuery(ref.identifiers, limit=100))
            updates += sum(1 for s in found if s.event.message_id.endswith(":updated"))
        return Findings(states, sends, delivered, steps, updates)
    finally:
        built.close()


def _check_exactly_once(found: Findings) -> None:
    assert found.enrollments == Counter({"completed:completed": HCPS})
    assert len(found.sends) == HCPS * len(EXPECTED_NODES)
    assert {node for _, node in found.sends} == set(EXPECTED_NODES)
    assert set(found.sends.values()) == {1}, "a send or task in the outbox twice"
    assert len(found.delivered) == HCPS * len(EXPECTED_NODES)
    assert set(found.delivered.values()) == {1}, "a message delivered twice"
    assert set(found.steps.values()) == {1}
    assert found.updates == HCPS  # one adoption-stage event per HCP in the log


@pytest.fixture
def embedded(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", environment="test", run_delivery=False)
    _prepare(settings)
    return settings


def test_kill_9_at_random_moments_loses_and_repeats_nothing(embedded: Settings) -> None:
    harness = _harness(embedded)
    harness.run(workers=1, kills=6, seed=11)
    assert harness.kills >= 6
    _check_exactly_once(_findings(embedded))


def test_negative_control_without_the_guarantees_reports_duplicates(embedded: Settings) -> None:
    harness = _harness(embedded, CRASH_UNSAFE="1", COUNTERPOINT_JOURNEY_BATCH="1")
    # the same kills; the run may stop as soon as a send is repeated (a slow machine need
    # not wait for every HCP to get through one step at a time)
    harness.run(
        workers=1, kills=12, seed=5, until=lambda e: harness.done(e) or harness.duplicated(e)
    )
    found = _findings(embedded)
    assert max(found.sends.values()) > 1, "the kills should have repeated committed sends"
    with pytest.raises(AssertionError):
        _check_exactly_once(found)


@pytest.mark.postgres
@pytest.mark.skipif(
    PG_URL is None, reason="set COUNTERPOINT_TEST_DATABASE_URL to run on PostgreSQL"
)
def test_two_workers_on_postgres_never_take_a_step_twice(tmp_path: Path, pg_database: str) -> None:
    from tests.conftest import _reset_postgres

    from counterpoint.kit import migrate

    engine = make_engine(pg_database)
    migrate.upgrade(engine)
    engine.dispose()
    _reset_postgres(pg_database)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=pg_database,
        environment="test",
        run_delivery=False,
    )
    _prepare(settings)
    harness = _harness(settings)
    harness.run(workers=2, kills=4, seed=3)
    _check_exactly_once(_findings(settings))
