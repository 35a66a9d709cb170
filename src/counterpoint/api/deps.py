"""Dependencies shared by routers: the container, authentication and authorisation.

Every route declares who may call it, deny by default: either ``Allow(resource, verb)``
(a bearer token whose user's role holds that permission) or ``Public(reason)`` (the route
authenticates otherwise: a write key, a signed link). A test walks the route table and fails
for a route that declares neither.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from counterpoint.container import Container
from counterpoint.errors import CounterpointError
from counterpoint.policy.access import Principal, Resource, Verb, is_allowed, within_brands
from counterpoint.policy.audit import Actor

__all__ = [
    "Allow",
    "ForbiddenError",
    "Public",
    "Services",
    "actor_of",
    "container_of",
    "origin_of",
    "require_brand",
    "services",
]


class ForbiddenError(CounterpointError):
    status = 403
    code = "forbidden"


def require_brand(principal: Principal, brand: str | None, field: str = "brand") -> None:
    """403 when ``brand`` is outside the caller's brands (brand-scoped users)."""
    if not within_brands(principal, brand):
        raise ForbiddenError(
            f"the brand {brand} is outside your brands",
            field=field,
            fix="act only for the brands you are responsible for: "
            + ", ".join(sorted(principal.brands)),
        )


def container_of(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def services(request: Request) -> Container:
    """The container (async: resolved on the event loop, no thread hop)."""
    return container_of(request)


def origin_of(request: Request) -> str:
    """Where a request came from, for the audit trail: client address and user agent."""
    host = request.client.host if request.client else "unknown"
    agent = (request.headers.get("user-agent") or "")[:200]
    return f"{host} {agent}".strip()[:300]


def actor_of(request: Request, principal: Principal) -> Actor:
    return Actor.of(principal, origin_of(request))


class Allow:
    """Authenticate the bearer token, then require ``resource``/``verb`` for the user's role."""

    def __init__(self, resource: Resource, verb: Verb) -> None:
        self.resource = resource
        self.verb = verb

    def __call__(self, request: Request) -> Principal:
        principal = container_of(request).tokens.authenticate(request.headers.get("authorization"))
        if not is_allowed(principal.role, self.resource, self.verb):
            raise ForbiddenError(
                f"the role {principal.role.value} may not {self.verb.value} {self.resource.value}",
                extra={"resource": self.resource.value, "verb": self.verb.value},
                fix="ask an administrator for a user with a role that holds this permission",
            )
        request.state.principal = principal
        return principal

    def __repr__(self) -> str:
        return f"Allow({self.resource.value}, {self.verb.value})"


class Public:
    """A route outside bearer-token access; ``reason`` says how it authenticates instead."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def __call__(self) -> None:  # async: no thread hop on the ingestion hot path
        return None

    def __repr__(self) -> str:
        return f"Public({self.reason!r})"


Services = Annotated[Container, Depends(services)]
