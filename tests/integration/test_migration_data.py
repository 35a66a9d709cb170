"""Migrations that change stored rows, not only the schema: run from the revision before
them over rows written as that revision left them, on both deployments."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text
from tests.conftest import PG_URL

from counterpoint.kit import migrate
from counterpoint.kit.db import make_engine


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "server":
        if PG_URL is None:
            pytest.skip("set COUNTERPOINT_TEST_DATABASE_URL to run on PostgreSQL")
        url = request.getfixturevalue("pg_database")
    else:
        url = f"sqlite:///{tmp_path / 'migrate.db'}"
    built = make_engine(url)
    migrate.upgrade(built)
    yield built
    with built.begin() as conn:
        conn.execute(text("DELETE FROM identity_observation WHERE fingerprint LIKE 'm-%'"))
    migrate.upgrade(built)
    built.dispose()


def _downgrade(engine: Engine, target: str) -> None:
    with engine.begin() as conn:
        cfg = migrate.alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, target)


def test_0012_stores_page_screen_and_group_evidence_as_track(engine: Engine) -> None:
    _downgrade(engine, "0011")
    at = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    sources = {"m-1": "page", "m-2": "screen", "m-3": "group", "m-4": "identify", "m-5": "track"}
    with engine.begin() as conn:
        for n, (fingerprint, source) in enumerate(sources.items()):
            conn.execute(
                text(
                    "INSERT INTO identity_observation "
                    "(fingerprint, identifiers, observed_at, seq, source) "
                    "VALUES (:f, :ids, :at, :seq, :source)"
                ),
                {"f": fingerprint, "ids": '["anon:a", "npi:1234567893"]', "at": at, "seq": n,
                 "source": source},
            )  # fmt: skip
    migrate.upgrade(engine)
    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                text(
                    "SELECT fingerprint, source FROM identity_observation "
                    "WHERE fingerprint LIKE 'm-%'"
                )
            ).all()
        )
    assert stored == {
        "m-1": "track", "m-2": "track", "m-3": "track", "m-4": "identify", "m-5": "track",
    }  # fmt: skip
