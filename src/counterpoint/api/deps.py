"""Dependencies shared by routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from counterpoint.container import Container
from counterpoint.policy.tokens import TokenInfo

__all__ = ["Caller", "Services", "caller", "services"]


def services(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def caller(request: Request) -> TokenInfo:
    """Every management endpoint needs a valid API token (deny by default)."""
    return services(request).tokens.authenticate(request.headers.get("authorization"))


Services = Annotated[Container, Depends(services)]
Caller = Annotated[TokenInfo, Depends(caller)]
