"""Fixtures: every storage-touching test runs on the embedded deployment (SQLite + DuckDB files)
and, when COUNTERPOINT_TEST_DATABASE_URL names a PostgreSQL server, on the server deployment.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from counterpoint.api.app import create_app
from counterpoint.container import Container, open_container
from counterpoint.kit.clock import FixedClock
from counterpoint.policy.audit import Actor
from counterpoint.settings import Settings

PG_URL = os.environ.get("COUNTERPOINT_TEST_DATABASE_URL")
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
TEST_ACTOR = Actor("tests", "admin", "tests")


def _admin(statement: str) -> None:
    assert PG_URL is not None
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(statement))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_database(worker_id: str, testrun_uid: str) -> Iterator[str]:
    """One database per test run and xdist worker, so that concurrent runs on one server
    never share a database; dropped at the end of the run."""
    assert PG_URL is not None
    name = f"counterpoint_test_{testrun_uid[:10]}_{worker_id}"
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = (
            conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            )
            .scalars()
            .all()
        )
        if tables:
            conn.execute(
                text(
                    "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
                )
            )
    engine.dispose()


@pytest.fixture
def mapping_processes() -> int:
    """``Settings.mapping_processes`` of the tests' settings: in-process. Modules that run the
    tracking API both ways override this fixture with parameters."""
    return 0


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("server", marks=pytest.mark.postgres),
    ]
)
def settings(request: pytest.FixtureRequest, tmp_path: Path, mapping_processes: int) -> Settings:
    if request.param == "server":
        if PG_URL is None:
            pytest.skip("set COUNTERPOINT_TEST_DATABASE_URL to run on PostgreSQL")
        url = request.getfixturevalue("pg_database")
        from counterpoint.kit import migrate
        from counterpoint.kit.db import make_engine

        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        _reset_postgres(url)
        return Settings(
            data_dir=tmp_path / "data",
            database_url=url,
            environment="test",
            run_delivery=False,
            run_journeys=False,
            mapping_processes=mapping_processes,
        )
    # tests deliver the outbox (``container.delivery_worker.drain()``) and run journeys
    # (``container.journey_runtime.drain()``) explicitly
    return Settings(
        data_dir=tmp_path / "data",
        environment="test",
        run_delivery=False,
        run_journeys=False,
        mapping_processes=mapping_processes,
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def container(settings: Settings, clock: FixedClock) -> Iterator[Container]:
    built = open_container(settings, clock=clock)
    yield built
    built.close()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container)) as test_client:
        yield test_client


@pytest.fixture
def write_key(container: Container) -> str:
    return container.write_keys.create("tests")[1]


@pytest.fixture
def basic(write_key: str) -> dict[str, str]:
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer_for(container: Container, name: str, role: str, **scopes: list[str]) -> dict[str, str]:
    """A user with ``role`` and ``scopes`` (markets, brands, territories), and its header."""
    container.users.create(name, role, TEST_ACTOR, **scopes)
    return {"Authorization": f"Bearer {container.tokens.create(name, TEST_ACTOR)[1]}"}


@pytest.fixture
def bearer(container: Container) -> dict[str, str]:
    """An administrator's token."""
    return bearer_for(container, "tests-admin", "admin")
