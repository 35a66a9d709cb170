"""ASGI entry point: ``uvicorn --factory counterpoint.api.main:app_factory``."""

from __future__ import annotations

from fastapi import FastAPI

from counterpoint.api.app import create_app
from counterpoint.container import open_container
from counterpoint.settings import Settings

__all__ = ["app_factory"]


def app_factory() -> FastAPI:
    """Build the app from the environment's settings (validated here, at start-up)."""
    return create_app(open_container(Settings()), settle_heap=True)
