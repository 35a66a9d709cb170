"""Typed settings, read from the environment (prefix ``COUNTERPOINT_``), validated at start."""

from __future__ import annotations

import enum
import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Deployment", "Environment", "Settings"]

_MEMORY_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B)", re.IGNORECASE)
"""An amount of memory as DuckDB's ``memory_limit`` takes it."""
_DEV_SECRET = "development-only-secret-change-me"  # noqa: S105 - refused outside development


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Deployment(enum.StrEnum):
    EMBEDDED = "embedded"
    """SQLite for operational state, DuckDB for the event log; one process, no server."""
    SERVER = "server"
    """PostgreSQL for operational state and the event log; several processes."""


class Settings(BaseSettings):
    """Every setting of a Counterpoint process. Environment variables win over defaults."""

    model_config = SettingsConfigDict(env_prefix="COUNTERPOINT_", extra="forbid")

    environment: Environment = Field(
        Environment.DEVELOPMENT, description="development, test or production."
    )
    data_dir: Path = Field(
        Path(".counterpoint"), description="Where the embedded deployment keeps its files."
    )
    database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the operational store. Unset: a SQLite file in data_dir "
            "(embedded). A postgresql+psycopg:// URL selects the server deployment, whose "
            "event log then lives in the same database."
        ),
    )
    secret_key: SecretStr = Field(
        SecretStr(_DEV_SECRET), description="Key for signed links; required in production."
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Base URL of the public pages (confirmation, unsubscribe and preference "
        "links in messages), without a trailing slash.",
    )
    sms_webhook_secret: SecretStr | None = Field(
        None,
        description="Shared secret the SMS gateway signs inbound webhooks with (HMAC-SHA256); "
        "inbound SMS is refused while it is unset.",
    )
    preference_wording: str = Field(
        "I agree that the company may contact me on the channels and for the purposes I tick "
        "below, and I know that I can change or withdraw this at any time on this page or "
        "through the link in every message.",
        min_length=20,
        max_length=4000,
        description="The consent wording shown in the HCP preference centre; grants made there "
        "keep its version and SHA-256.",
    )
    preference_wording_version: str = Field(
        "preference-centre-1",
        pattern=r"^[\w.\-]{1,64}$",
        description="Version of preference_wording: change it whenever the wording changes.",
    )
    host: str = Field("127.0.0.1", description="Address `counterpoint serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `counterpoint serve` binds.")
    max_event_bytes: int = Field(32 * 1024, gt=0, description="Largest accepted event, bytes.")
    max_batch_bytes: int = Field(500 * 1024, gt=0, description="Largest accepted batch, bytes.")
    commit_window_ms: float = Field(
        2.0, ge=0, le=1000, description="How long the group committer gathers requests."
    )
    mapping_processes: int = Field(
        default_factory=lambda: min(8, max(0, (os.cpu_count() or 1) - 1)),
        ge=0,
        le=64,
        description="Processes that decode and map the tracking API's requests beside an API "
        "process (`counterpoint serve`); 0 maps them in the API process itself. Default: one "
        "per CPU core but one, at most 8.",
    )
    run_consumers: bool = Field(
        True,
        description=(
            "Whether an API process also applies the event log to profiles. Turn it off when "
            "`counterpoint worker` processes do that (server deployment)."
        ),
    )
    run_delivery: bool = Field(
        True,
        description=(
            "Whether an API process also delivers the outbox. Turn it off when "
            "`counterpoint worker` processes deliver (server deployment)."
        ),
    )
    run_journeys: bool = Field(
        True,
        description=(
            "Whether an API process also runs journeys (entry, timers, events). Turn it off "
            "when `counterpoint worker` processes run them (server deployment)."
        ),
    )
    journey_entry_interval_s: float = Field(
        300.0,
        gt=0,
        description="Seconds between evaluations of a running journey's audience (segment or "
        "condition entry); a journey is also evaluated when published or resumed.",
    )
    segment_refresh_s: float = Field(
        900.0,
        gt=0,
        description="Seconds between refreshes of every stored segment in SQL, so that HCPs "
        "leave when a time window slides past their events (arrivals are evaluated at once).",
    )
    journey_batch: int = Field(
        500, ge=1, le=100_000, description="Enrollments a journey pass steps at once."
    )
    channels_file: Path | None = Field(
        None,
        description=(
            "YAML or JSON document routing channels to adapters (docs/delivery.md). Unset: "
            "field channels to the rep inbox, direct mail to the print export, everything "
            "else to the console adapter: nothing leaves the machine."
        ),
    )
    extra_specialties: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Specialty codes accepted beside the built-in list, comma-separated.",
    )
    duckdb_memory_limit: str | None = Field(
        None,
        description="Most memory the embedded event log's DuckDB may use for its buffers, "
        "e.g. 4GB or 512MiB. Unset: DuckDB's own default, 80 % of the machine's memory. The "
        "log's set of stored message-id hashes (16 bytes per event) comes on top.",
    )
    duckdb_checkpoint_threshold: str = Field(
        "256MB",
        description="Size of the embedded event log's write-ahead log at which a commit also "
        "writes the log's file through (a checkpoint). Larger: fewer, longer checkpoints and "
        "faster small appends (HTTP ingestion); the un-checkpointed rows are held in memory "
        "and replayed from the write-ahead log after a crash.",
    )
    medical_visible_to_commercial: bool = Field(
        default=True,
        description="Whether commercial roles see that a medical interaction happened (never "
        "its content). False hides medical interactions from them entirely.",
    )

    @field_validator("extra_specialties", mode="before")
    @classmethod
    def _split_codes(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("duckdb_memory_limit", "duckdb_checkpoint_threshold")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        if value is None:
            return None
        found = _MEMORY_SIZE.fullmatch(value.strip())
        if found is None:
            raise ValueError(
                f"{value!r} is not an amount of memory: write a number and a unit, "
                "e.g. 4GB or 512MiB (units KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            )
        return f"{found[1]}{found[2]}"

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if (
            self.environment is Environment.PRODUCTION
            and self.secret_key.get_secret_value() == _DEV_SECRET
        ):
            raise ValueError(
                "COUNTERPOINT_SECRET_KEY must be set in production (a long random string)"
            )
        if self.database_url is not None and not self.database_url.startswith(
            ("sqlite", "postgresql")
        ):
            raise ValueError(
                "COUNTERPOINT_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL"
            )
        return self

    @property
    def deployment(self) -> Deployment:
        url = self.resolved_database_url
        return Deployment.SERVER if url.startswith("postgresql") else Deployment.EMBEDDED

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'counterpoint.db').resolve()}"

    @property
    def event_log_path(self) -> Path:
        """The DuckDB file holding the event log in the embedded deployment."""
        return (self.data_dir / "events.duckdb").resolve()
