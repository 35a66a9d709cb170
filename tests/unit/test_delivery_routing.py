"""The channels document: instances, routes, environment secrets, errors naming the path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from counterpoint.channel.base import (
    AdapterConfig,
    AdapterContext,
    DeliveryError,
    OutboundMessage,
    Receipt,
    UnknownAdapterError,
)
from counterpoint.delivery.routing import DEFAULT_DOCUMENT, parse_routes
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Channel


class _MailConfig(AdapterConfig):
    host: str
    password: SecretStr | None = None


class _Mail:
    name: ClassVar[str] = "mail"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.CAMPAIGN_EMAIL})
    idempotent: ClassVar[bool] = False
    Config: ClassVar[type[AdapterConfig]] = _MailConfig

    def __init__(self, config: _MailConfig, context: AdapterContext) -> None:
        self.config = config

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[Receipt | DeliveryError]:
        return [Receipt() for _ in messages]

    def close(self) -> None:
        pass


CLASSES: dict[str, Any] = {"mail": _Mail}


def test_routes_map_channels_to_configured_instances_and_read_secrets_from_the_env() -> None:
    routes = parse_routes(
        {
            "adapters": {"m": {"adapter": "mail", "config": {"host": "h", "password": "${PW}"}}},
            "routes": {"campaign_email": "m"},
        },
        env={"PW": "s3cret"},
        classes=CLASSES,
    )
    instance = routes.instance_of(Channel.CAMPAIGN_EMAIL)
    assert instance.adapter == "mail"
    assert instance.config.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(instance.config)
    assert routes.idempotent(Channel.CAMPAIGN_EMAIL) is False
    with pytest.raises(UnknownAdapterError):
        routes.instance_of(Channel.SMS)


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"adapters": {"m": {"adapter": "nope"}}}, "adapters.m.adapter"),
        ({"adapters": {"m": {"adapter": "mail", "config": {}}}}, "adapters.m.config.host"),
        ({"adapters": {"m": {"adapter": "mail", "config": {"host": 1, "x": 2}}}}, "adapters.m"),
        ({"adapters": {"m": {"adapter": "mail", "config": {"host": "${NOPE}"}}}}, "host"),
        (
            {"adapters": {"m": {"adapter": "mail", "config": {"host": "h"}}}, "routes": {"x": "m"}},
            "routes.x",
        ),
        (
            {
                "adapters": {"m": {"adapter": "mail", "config": {"host": "h"}}},
                "routes": {"sms": "m"},
            },
            "routes.sms",
        ),
        ({"routes": {"sms": "missing"}}, "routes.sms"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_documents_name_the_path_and_the_fix(document: dict[str, Any], path: str) -> None:
    with pytest.raises((ValidationFailedError, UnknownAdapterError)) as caught:
        parse_routes(document, env={}, classes=CLASSES)
    assert path in (caught.value.field or "")
    assert caught.value.fix


def test_the_default_routing_keeps_everything_on_the_machine() -> None:
    routes = parse_routes(DEFAULT_DOCUMENT, env={})
    adapters = {routes.instance_of(c).adapter for c in Channel}
    assert adapters <= {"console", "rep_inbox", "print_export"}
    assert routes.instance_of(Channel.F2F_CALL).adapter == "rep_inbox"
    assert routes.instance_of(Channel.DIRECT_MAIL).adapter == "print_export"
