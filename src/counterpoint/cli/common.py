"""What every ``counterpoint`` sub-command shares: settings, the container, the consoles."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError
from rich.console import Console

from counterpoint.container import Container, open_container
from counterpoint.errors import CounterpointError
from counterpoint.settings import Settings

__all__ = ["console", "container", "reset_consoles", "settings"]

_consoles: list[Console] = [Console()]


def reset_consoles() -> None:
    """One console per invocation, sized for its own terminal."""
    _consoles[0] = Console()


def console() -> Console:
    return _consoles[0]


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "COUNTERPOINT_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise CounterpointError(
            f"{name}: {first['msg']}", field=name, fix="correct the setting"
        ) from None


@contextmanager
def container() -> Iterator[Container]:
    built = open_container(settings())
    try:
        yield built
    finally:
        built.close()
